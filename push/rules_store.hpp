#pragma once

// The rules in force, and how they change: the file is compiled whole, and only a file without
// errors replaces the running rules (one pointer swap). A bad file keeps the old rules and says
// why, file:line:col.

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

#include "rules/rule_set.hpp"

namespace pgpush::push {

namespace net = boost::asio;

struct reload_result {
    bool replaced = false;           // new rules are in force
    bool unchanged = false;          // the file's content did not change: nothing done
    std::vector<std::string> errors; // "file:line:col: message"; the old rules stay
};

class rules_store {
public:
    // `validate` (optional) runs on every candidate rule set, e.g. checking it against the live
    // schema; its diagnostics count as errors.
    using validator = std::function<std::vector<rules::diagnostic>(const std::string& text)>;

    explicit rules_store(std::string path, validator validate = {});

    const std::string& path() const { return path_; }

    // Reads and compiles the file. At start-up, the caller exits on errors; later, the running
    // rules stay.
    reload_result reload();

    // The rules in force (null before the first successful load). Take it once per operation:
    // a subscription keeps the snapshot it was planned with.
    std::shared_ptr<const rules::rule_set> current() const;

    // Incremented on every replacement.
    std::uint64_t generation() const;

private:
    std::string path_;
    validator validate_;
    mutable std::mutex mu_;
    std::shared_ptr<const rules::rule_set> current_;
    std::string text_; // of the rules in force
    std::uint64_t generation_ = 0;
};

// Reloads a rules_store on SIGHUP and whenever its file changes (inotify on the directory, so an
// editor that saves by renaming a new file over the old one is seen too). Changes are coalesced
// for `settle` so that a save in several writes is read once.
class rules_watcher {
public:
    rules_watcher(net::io_context& io, rules_store& store,
                  std::function<void(const reload_result&)> on_reload,
                  std::chrono::milliseconds settle = std::chrono::milliseconds(100));
    ~rules_watcher();

    void start();
    void stop();

private:
    void wait_signal();
    void read_events();
    void schedule();
    void run_reload(const char* why);

    rules_store& store_;
    std::function<void(const reload_result&)> on_reload_;
    std::chrono::milliseconds settle_;
    net::signal_set signals_;
    net::steady_timer timer_;
    std::unique_ptr<net::posix::stream_descriptor> inotify_;
    std::string file_name_;
    std::vector<char> buffer_;
    bool stopped_ = false;
};

} // namespace pgpush::push
