// Reloading rules.yaml: a file change or SIGHUP swaps in the new rules; a bad file keeps the old
// ones and reports every error. Real files, real inotify and signals; no database.

#include <csignal>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <string>
#include <unistd.h>

#include <gtest/gtest.h>

#include "push/rules_store.hpp"

namespace pgpush::testing {
namespace {

using namespace std::chrono_literals;

class temp_dir {
public:
    temp_dir() {
        std::string t = "/tmp/pgpush-rules-XXXXXX";
        path = ::mkdtemp(t.data());
    }
    ~temp_dir() { std::system(("rm -rf " + path).c_str()); }
    std::string path;
};

void write(const std::string& file, const std::string& text) {
    std::ofstream(file, std::ios::trunc) << text;
}

const char* good_a = "tables:\n  a:\n    rows: \"true\"\n    columns: \"*\"\n";
const char* good_b = "tables:\n  b:\n    rows: \"true\"\n    columns: \"*\"\n";
const char* bad = "tables:\n  c:\n    rows: \"row.x ==\"\n    colums: [x]\n";

struct watched {
    temp_dir dir;
    std::string file = dir.path + "/rules.yaml";
    boost::asio::io_context io;
    push::rules_store store{file};
    std::optional<push::reload_result> last;
    push::rules_watcher watcher{io, store, [this](const push::reload_result& r) { last = r; },
                                std::chrono::milliseconds(20)};

    watched() {
        write(file, good_a);
        EXPECT_TRUE(store.reload().replaced);
        watcher.start();
    }

    // Runs the event loop until the watcher reports a reload (or 10 s pass).
    std::optional<push::reload_result> next_reload() {
        last.reset();
        io.restart();
        const auto deadline = std::chrono::steady_clock::now() + 10s;
        while (!last && std::chrono::steady_clock::now() < deadline)
            io.run_one_for(100ms);
        return last;
    }
};

TEST(rules_reload, a_changed_file_replaces_the_rules) {
    watched w;
    ASSERT_NE(w.store.current()->table("public.a"), nullptr);
    write(w.file, good_b);
    auto r = w.next_reload();
    ASSERT_TRUE(r);
    EXPECT_TRUE(r->replaced);
    EXPECT_EQ(w.store.current()->table("public.a"), nullptr);
    EXPECT_NE(w.store.current()->table("public.b"), nullptr);
    EXPECT_EQ(w.store.generation(), 2u);
}

TEST(rules_reload, a_bad_file_keeps_the_old_rules_and_says_why) {
    watched w;
    auto before = w.store.current();
    write(w.file, bad);
    auto r = w.next_reload();
    ASSERT_TRUE(r);
    EXPECT_FALSE(r->replaced);
    ASSERT_EQ(r->errors.size(), 3u); // the bad expression, the typo, the missing columns
    EXPECT_EQ(r->errors[0].rfind(w.file + ":3:", 0), 0u) << r->errors[0];
    EXPECT_EQ(w.store.current(), before) << "the running rules must not change";
    EXPECT_EQ(w.store.generation(), 1u);
}

TEST(rules_reload, an_editor_renaming_a_new_file_over_the_old_one_is_seen) {
    watched w;
    write(w.file + ".tmp", good_b);
    ASSERT_EQ(std::rename((w.file + ".tmp").c_str(), w.file.c_str()), 0);
    auto r = w.next_reload();
    ASSERT_TRUE(r);
    EXPECT_TRUE(r->replaced);
    EXPECT_NE(w.store.current()->table("public.b"), nullptr);
}

TEST(rules_reload, sighup_reloads) {
    watched w;
    w.watcher.stop();
    // Written before the next watcher exists, so no file event can trigger its reload: only the
    // signal can.
    write(w.file, good_b);
    push::rules_watcher by_signal(w.io, w.store, [&](const push::reload_result& r) { w.last = r; });
    by_signal.start();
    ::raise(SIGHUP);
    auto r = w.next_reload();
    ASSERT_TRUE(r);
    EXPECT_TRUE(r->replaced);
    EXPECT_NE(w.store.current()->table("public.b"), nullptr);
}

TEST(rules_reload, saving_the_same_content_does_nothing) {
    watched w;
    write(w.file, good_a);
    auto r = w.next_reload();
    ASSERT_TRUE(r);
    EXPECT_TRUE(r->unchanged);
    EXPECT_EQ(w.store.generation(), 1u);
}

} // namespace
} // namespace pgpush::testing
