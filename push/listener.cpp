#include "push/listener.hpp"

#include <algorithm>
#include <cerrno>
#include <string>
#include <sys/resource.h>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace pgpush::push {

namespace {

std::size_t open_file_limit() {
    rlimit r{};
    if (::getrlimit(RLIMIT_NOFILE, &r) != 0) return 1024;
    // Linux caps the limit at fs.nr_open (1,048,576 by default) whatever rlimit says.
    if (r.rlim_cur == RLIM_INFINITY || r.rlim_cur > (1u << 20)) return 1u << 20;
    return static_cast<std::size_t>(r.rlim_cur);
}

// Errors that end one pending connection, not the listener: it was reset or refused before we
// took it, or (accept(2) on Linux) it carries a pending network error. The next accept has
// nothing to do with them.
bool ends_one_connection(const beast::error_code& ec) {
    if (ec.category() != boost::system::system_category()) return false;
    switch (ec.value()) {
    case ECONNABORTED:
    case ECONNRESET:
    case EPROTO:
    case EPERM: // refused by a firewall rule
    case EINTR:
    case EAGAIN:
    case ENETDOWN:
    case ENOPROTOOPT:
    case EHOSTDOWN:
    case ENONET:
    case EHOSTUNREACH:
    case EOPNOTSUPP:
    case ENETUNREACH:
        return true;
    default:
        return false;
    }
}

// Errors that say the process or the system ran out of something a new connection needs.
bool out_of_resources(const beast::error_code& ec) {
    if (ec.category() != boost::system::system_category()) return false;
    const int e = ec.value();
    return e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM;
}

} // namespace

std::size_t default_max_connections(std::size_t reserve) {
    const std::size_t limit = open_file_limit();
    return limit > 2 * reserve ? limit - reserve : std::max<std::size_t>(limit / 2, 1);
}

listener::listener(net::io_context& accept_on, std::vector<net::io_context*> workers,
                   net::ip::tcp::endpoint endpoint, session_context& ctx,
                   http_session::health_fn health, listener_options options)
    : acceptor_(accept_on), timer_(accept_on), report_timer_(accept_on),
      workers_(std::move(workers)), ctx_(ctx), health_(std::move(health)), options_(options),
      budget_(std::make_shared<connection_budget>(
          options.max_connections ? options.max_connections : default_max_connections(),
          ctx.stats)),
      backoff_(options.backoff_min) {
    acceptor_.open(endpoint.protocol());
    acceptor_.set_option(net::socket_base::reuse_address(true));
    acceptor_.bind(endpoint);
    acceptor_.listen(net::socket_base::max_listen_connections);
    ctx_.stats.connection_limit = budget_->limit();
}

void listener::run() {
    net::dispatch(acceptor_.get_executor(), [self = shared_from_this()] { self->accept(); });
}

void listener::stop() {
    budget_->stop_waking();
    net::post(acceptor_.get_executor(), [self = shared_from_this()] {
        self->stopped_ = true;
        beast::error_code ignored;
        self->acceptor_.close(ignored);
        self->timer_.cancel();
        self->report_timer_.cancel();
        self->report(true);
    });
}

void listener::accept() {
    if (stopped_ || paused_) return;
    if (!room()) {
        // Counted once until a connection is accepted again (the pause re-checks every
        // backoff_max: a busy connection may become idle, which wakes nobody).
        if (!full_) {
            full_ = true;
            ++limit_pauses_;
            ++ctx_.stats.accept_paused_limit;
            report();
        }
        return pause(pause_reason::connection_limit, options_.backoff_max);
    }
    auto& io = *workers_[next_++ % workers_.size()];
    acceptor_.async_accept(io, beast::bind_front_handler(&listener::on_accept, shared_from_this()));
}

// Room for one more: under the limit and its overflow, or an idle connection to close for it.
bool listener::room() const {
    return budget_->open() < budget_->limit() + options_.overflow || budget_->idle() > 0;
}

void listener::on_accept(beast::error_code ec, net::ip::tcp::socket socket) {
    if (ec == net::error::operation_aborted || stopped_) return;
    if (ec) {
        if (ends_one_connection(ec)) return accept();
        last_error_ = ec;
        if (out_of_resources(ec)) {
            ++fd_errors_;
            ++ctx_.stats.accept_paused_fds;
            // Each idle connection closed gives a descriptor back; as nginx does, a few at a
            // time (an eighth of them, 1 to 32).
            const auto n = std::clamp<std::size_t>(budget_->idle() / 8, 1, 32);
            evicted_ += budget_->evict_oldest(n);
        } else {
            ++other_errors_;
            ++ctx_.stats.accept_paused_error;
        }
        report();
        const auto wait = backoff_;
        backoff_ = std::min(backoff_ * 2, options_.backoff_max);
        return pause(out_of_resources(ec) ? pause_reason::out_of_descriptors : pause_reason::error,
                     wait);
    }
    backoff_ = options_.backoff_min;
    full_ = false;
    beast::error_code ignored;
    socket.set_option(net::ip::tcp::no_delay(true), ignored);
    auto slot = connection_budget::acquire(budget_);
    bool over_limit = false;
    if (budget_->open() > budget_->limit()) {
        if (budget_->evict_oldest(1) == 1) {
            ++evicted_;
        } else {
            over_limit = true;
            ++over_limit_;
        }
        report();
    }
    std::make_shared<http_session>(std::move(socket), ctx_, health_, std::move(slot), options_.http,
                                   over_limit)
        ->run();
    accept();
}

// Stops accepting until a connection closes or `wait` passes, whichever comes first. Never
// spins: every resume either accepts a connection or pauses again for longer.
void listener::pause(pause_reason why, std::chrono::milliseconds wait) {
    paused_ = true;
    std::weak_ptr<listener> weak = weak_from_this();
    budget_->on_release([weak, ex = acceptor_.get_executor()] {
        net::post(ex, [weak] {
            if (auto self = weak.lock()) self->resume();
        });
    });
    timer_.expires_after(wait);
    timer_.async_wait([weak](beast::error_code ec) {
        if (ec) return;
        if (auto self = weak.lock()) self->resume();
    });
    // A connection that closed before the wake-up was armed would not wake us.
    if (why == pause_reason::connection_limit && room()) resume();
}

void listener::resume() {
    if (!paused_ || stopped_) return;
    paused_ = false;
    budget_->on_release(nullptr);
    timer_.cancel();
    accept();
}

// At most one line per log_interval, with what was counted since the last one; what is counted
// after a line is reported when the interval has passed.
void listener::report(bool force) {
    if (fd_errors_ + other_errors_ + evicted_ + over_limit_ + limit_pauses_ == 0) return;
    const auto now = std::chrono::steady_clock::now();
    if (first_event_ == std::chrono::steady_clock::time_point{}) first_event_ = now;
    if (!force && last_report_ != std::chrono::steady_clock::time_point{} &&
        now - last_report_ < options_.log_interval) {
        if (!report_armed_) {
            report_armed_ = true;
            report_timer_.expires_at(last_report_ + options_.log_interval);
            report_timer_.async_wait([weak = weak_from_this()](beast::error_code ec) {
                if (ec) return;
                if (auto self = weak.lock()) {
                    self->report_armed_ = false;
                    self->report(true);
                }
            });
        }
        return;
    }
    auto times = [](std::size_t n) {
        return n == 1 ? std::string("once") : fmt::format("{} times", n);
    };
    auto connections = [](std::size_t n) {
        return fmt::format("{} connection{}", n, n == 1 ? "" : "s");
    };
    std::string what;
    auto add = [&](std::size_t n, const std::string& text) {
        if (n == 0) return;
        if (!what.empty()) what += "; ";
        what += text;
    };
    add(fd_errors_, fmt::format("accept paused: out of file descriptors or memory ({}), {}",
                                last_error_.message(), times(fd_errors_)));
    add(other_errors_,
        fmt::format("accept paused: {}, {}", last_error_.message(), times(other_errors_)));
    add(evicted_, fmt::format("{} idle HTTP connection{} closed to make room", evicted_,
                              evicted_ == 1 ? "" : "s"));
    add(over_limit_, fmt::format("{} over the limit served /healthz and /metrics only (503 "
                                 "otherwise)",
                                 connections(over_limit_)));
    add(limit_pauses_,
        fmt::format("accepting paused {} with the overflow full too", times(limit_pauses_)));
    const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(now - first_event_);
    const std::string window =
        seconds.count() >= 1 ? fmt::format(" in the last {} s", seconds.count()) : "";
    spdlog::warn("{}{}; {} open, connection limit {}", what, window, connections(budget_->open()),
                 budget_->limit());
    fd_errors_ = other_errors_ = evicted_ = over_limit_ = limit_pauses_ = 0;
    first_event_ = {};
    last_report_ = now;
}

} // namespace pgpush::push
