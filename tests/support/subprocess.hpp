#pragma once

// Runs a program with piped stdout/stderr for black-box tests. Reads are line-based with a
// deadline: a test waits for the event it needs (a line), never sleeps. The child is killed
// if the test process dies.

#include <chrono>
#include <optional>
#include <string>
#include <sys/types.h>
#include <utility>
#include <vector>

namespace pgpush::testing {

using namespace std::chrono_literals;

// Limits the child starts with.
struct subprocess_limits {
    // RLIMIT_NOFILE, soft and hard. A child started with it also starts with no descriptors but
    // stdin, stdout and stderr, so that what the test process has open does not count.
    std::optional<unsigned long> open_files;
};

class subprocess {
public:
    explicit subprocess(std::vector<std::string> argv,
                        std::vector<std::pair<std::string, std::string>> env = {},
                        subprocess_limits limits = {});
    ~subprocess();
    subprocess(const subprocess&) = delete;
    subprocess& operator=(const subprocess&) = delete;

    pid_t pid() const { return pid_; }

    // Next stdout line (without '\n'), or nullopt at the deadline or when stdout closed.
    std::optional<std::string> read_line(std::chrono::milliseconds timeout = 30s);

    // Reads stderr until `needle` has appeared `count` times in all of it so far (true), or the
    // deadline / EOF (false). Counting from the start makes the order of two awaited lines moot.
    bool wait_for_stderr(const std::string& needle, int count = 1,
                         std::chrono::milliseconds timeout = 30s);

    // All stderr read so far.
    const std::string& stderr_text() const { return err_all_; }

    void signal(int sig);

    // Waits for exit; returns the exit status (128+N for signal N), or nullopt at the deadline.
    // Drains and keeps both pipes meanwhile.
    std::optional<int> wait(std::chrono::milliseconds timeout = 30s);

private:
    // Reads whatever is available on both pipes, waiting up to `timeout`; false if nothing more
    // can come (both closed) or the deadline passed without input.
    bool pump(std::chrono::milliseconds timeout);

    pid_t pid_ = -1;
    int out_ = -1;
    int err_ = -1;
    std::string out_buf_;
    std::string err_all_;
    std::optional<int> status_;
};

// Path of the pgpush binary under test (set by CMake).
std::string pgpush_binary();

} // namespace pgpush::testing
