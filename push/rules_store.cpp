#include "push/rules_store.hpp"

#include <csignal>
#include <fstream>
#include <sstream>
#include <sys/inotify.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

namespace pgpush::push {

rules_store::rules_store(std::string path, validator validate)
    : path_(std::move(path)), validate_(std::move(validate)) {}

reload_result rules_store::reload() {
    reload_result r;
    std::ifstream in(path_);
    if (!in) {
        r.errors.push_back(path_ + ":1:1: cannot read the file");
        return r;
    }
    std::stringstream ss;
    ss << in.rdbuf();
    std::string text = ss.str();
    {
        std::lock_guard lock(mu_);
        if (current_ && text == text_) {
            r.unchanged = true;
            return r;
        }
    }
    auto loaded = rules::load_rules(text);
    std::vector<rules::diagnostic> problems = loaded.errors;
    if (problems.empty() && validate_) problems = validate_(text);
    if (!problems.empty()) {
        for (const auto& d : problems)
            r.errors.push_back(rules::format(d, path_));
        return r;
    }
    std::lock_guard lock(mu_);
    current_ = std::move(loaded.rules);
    text_ = std::move(text);
    ++generation_;
    r.replaced = true;
    return r;
}

std::shared_ptr<const rules::rule_set> rules_store::current() const {
    std::lock_guard lock(mu_);
    return current_;
}

std::uint64_t rules_store::generation() const {
    std::lock_guard lock(mu_);
    return generation_;
}

rules_watcher::rules_watcher(net::io_context& io, rules_store& store,
                             std::function<void(const reload_result&)> on_reload,
                             std::chrono::milliseconds settle)
    : store_(store), on_reload_(std::move(on_reload)), settle_(settle), signals_(io, SIGHUP),
      timer_(io), buffer_(64 * 1024) {
    const std::string& path = store_.path();
    auto slash = path.rfind('/');
    const std::string dir =
        slash == std::string::npos ? "." : path.substr(0, slash == 0 ? 1 : slash);
    file_name_ = slash == std::string::npos ? path : path.substr(slash + 1);
    int fd = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (fd < 0 || ::inotify_add_watch(fd, dir.c_str(),
                                      IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE) < 0) {
        if (fd >= 0) ::close(fd);
        spdlog::warn("cannot watch {} for changes ({}); rules reload on SIGHUP only", dir,
                     std::strerror(errno));
        return;
    }
    inotify_ = std::make_unique<net::posix::stream_descriptor>(io, fd);
}

rules_watcher::~rules_watcher() = default;

void rules_watcher::start() {
    wait_signal();
    if (inotify_) read_events();
}

void rules_watcher::stop() {
    stopped_ = true;
    boost::system::error_code ignored;
    signals_.cancel(ignored);
    timer_.cancel();
    if (inotify_) inotify_->cancel(ignored);
}

void rules_watcher::wait_signal() {
    signals_.async_wait([this](const boost::system::error_code& ec, int) {
        if (ec || stopped_) return;
        run_reload("SIGHUP");
        wait_signal();
    });
}

void rules_watcher::read_events() {
    inotify_->async_read_some(
        net::buffer(buffer_), [this](const boost::system::error_code& ec, std::size_t n) {
            if (ec || stopped_) return;
            bool ours = false;
            for (std::size_t off = 0; off + sizeof(inotify_event) <= n;) {
                const auto* ev = reinterpret_cast<const inotify_event*>(buffer_.data() + off);
                if (ev->len > 0 && file_name_ == ev->name) ours = true;
                off += sizeof(inotify_event) + ev->len;
            }
            if (ours) schedule();
            read_events();
        });
}

void rules_watcher::schedule() {
    // Restarting the timer on each event reads the file once, after the writes settle.
    timer_.expires_after(settle_);
    timer_.async_wait([this](const boost::system::error_code& ec) {
        if (ec || stopped_) return;
        run_reload("file change");
    });
}

void rules_watcher::run_reload(const char* why) {
    auto r = store_.reload();
    if (r.replaced) {
        spdlog::info("rules reloaded from {} ({}), generation {}", store_.path(), why,
                     store_.generation());
    } else if (!r.unchanged) {
        spdlog::error(
            "rules in {} not reloaded ({}): {} error(s); the previous rules stay in force",
            store_.path(), why, r.errors.size());
        for (const auto& e : r.errors)
            spdlog::error("{}", e);
    }
    if (on_reload_) on_reload_(r);
}

} // namespace pgpush::push
