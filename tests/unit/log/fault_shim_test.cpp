// The fault shim (tests/support/fault_shim.cpp) on plain programs: the shell and coreutils' sync,
// so that the serve tests that preload it into pgpush can trust what it injects.

#include "tests/support/fault_shim.hpp"

#include <fcntl.h>
#include <iterator>
#include <string>
#include <sys/wait.h>
#include <unistd.h>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

namespace pgpush::testing {
namespace {

namespace fs = std::filesystem;

struct run_result {
    int status = -1; // exit status, 128+N for signal N
    std::string err; // what it wrote to stderr
};

// Runs `/bin/sh -c script` with `env` added to ours, stderr captured through a file.
run_result run_shell(const std::string& script,
                     const std::vector<std::pair<std::string, std::string>>& env,
                     const fs::path& scratch) {
    const auto err_path = scratch / "stderr";
    const pid_t pid = ::fork();
    if (pid == 0) {
        for (const auto& [k, v] : env)
            ::setenv(k.c_str(), v.c_str(), 1);
        const int fd = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) ::dup2(fd, 2);
        ::execl("/bin/sh", "sh", "-c", script.c_str(), static_cast<char*>(nullptr));
        ::_exit(127);
    }
    run_result r;
    int status = 0;
    if (pid > 0 && ::waitpid(pid, &status, 0) == pid) {
        r.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    std::ifstream in(err_path);
    r.err.assign(std::istreambuf_iterator<char>(in), {});
    return r;
}

std::string slurp(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), {}};
}

class fault_shim_test : public ::testing::Test {
protected:
    void SetUp() override {
        scratch_ = fs::temp_directory_path() /
                   ("pgpush-shim-test-" + std::to_string(::getpid()) + "-" +
                    ::testing::UnitTest::GetInstance()->current_test_info()->name());
        fs::remove_all(scratch_);
        dir_ = scratch_ / "data";
        fs::create_directories(dir_);
        control_ = scratch_ / "faults";
        set_faults(control_, "");
    }
    void TearDown() override { fs::remove_all(scratch_); }

    run_result run(const std::string& script) {
        auto env = fault_env(dir_, control_);
        env.emplace_back("OUTSIDE", scratch_.string());
        return run_shell(script, env, scratch_);
    }

    fs::path scratch_, dir_, control_;
};

TEST_F(fault_shim_test, without_faults_files_are_written_as_usual) {
    ASSERT_TRUE(fs::exists(fault_shim_library())) << fault_shim_library();
    auto r = run(R"(printf data > "$PGPUSH_FAULT_DIR/f" && sync -d "$PGPUSH_FAULT_DIR/f")");
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(slurp(dir_ / "f"), "data");
}

TEST_F(fault_shim_test, a_write_fault_hits_files_under_the_directory_only) {
    set_faults(control_, "write=ENOSPC\n");
    auto r = run(R"(printf outside > "$OUTSIDE/g" || exit 3
                    printf data > "$PGPUSH_FAULT_DIR/f" || exit 4)");
    // dash says "I/O error" whatever the errno; the exit status says which write failed.
    EXPECT_EQ(r.status, 4) << r.err;
    EXPECT_EQ(slurp(scratch_ / "g"), "outside");
    EXPECT_EQ(slurp(dir_ / "f"), "");
}

TEST_F(fault_shim_test, an_open_fault_and_a_sync_fault) {
    set_faults(control_, "open=EMFILE\n");
    auto r = run(R"(: > "$PGPUSH_FAULT_DIR/f")");
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.err.find("Too many open files"), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(dir_ / "f"));

    // coreutils' `sync -d FILE` opens FILE and fdatasyncs it.
    set_faults(control_, "fdatasync=EIO\n");
    r = run(R"(printf data > "$PGPUSH_FAULT_DIR/f" && sync -d "$PGPUSH_FAULT_DIR/f")");
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.err.find("Input/output error"), std::string::npos) << r.err;
    EXPECT_EQ(slurp(dir_ / "f"), "data");
}

// The control file is looked at on every call: one program sees a fault come and go.
TEST_F(fault_shim_test, faults_switch_while_the_program_runs) {
    // The script itself rewrites the control file between two writes, the way a test does while
    // pgpush runs (a rename over it, as set_faults does).
    auto r = run(R"(printf one > "$PGPUSH_FAULT_DIR/a" || exit 3
                    printf 'write=EIO\n' > "$PGPUSH_FAULT_CONTROL.tmp"
                    mv "$PGPUSH_FAULT_CONTROL.tmp" "$PGPUSH_FAULT_CONTROL"
                    printf two > "$PGPUSH_FAULT_DIR/b" && exit 4
                    : > "$PGPUSH_FAULT_CONTROL.tmp"
                    mv "$PGPUSH_FAULT_CONTROL.tmp" "$PGPUSH_FAULT_CONTROL"
                    printf three > "$PGPUSH_FAULT_DIR/c" || exit 5)");
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(slurp(dir_ / "a"), "one");
    EXPECT_EQ(slurp(dir_ / "b"), "");
    EXPECT_EQ(slurp(dir_ / "c"), "three");
}

} // namespace
} // namespace pgpush::testing
