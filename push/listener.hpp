#pragma once

// Accepts connections and hands each to the next I/O thread in turn, within a connection budget.
//
// Every client connection (HTTP or WebSocket) holds a slot until its socket closes. At
// `max_connections`, a new connection closes the HTTP connection that has waited longest for a
// request (WebSocket sessions are never closed for room); with none to close, up to `overflow`
// more are accepted but only served /healthz and /metrics (anything else gets 503), and beyond
// that accepting pauses until a connection closes. When accept fails for lack of descriptors or
// memory (EMFILE, ENFILE, ENOBUFS, ENOMEM: other descriptors of the process may run out first),
// idle connections make room and accepting pauses with backoff instead of spinning; such events
// are logged at most once per `log_interval`, with counts, and counted in /metrics.

#include <chrono>
#include <cstddef>
#include <memory>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include "push/http_session.hpp"

namespace pgpush::push {

struct listener_options {
    // Client connections served at once; 0: default_max_connections(default_fd_reserve).
    std::size_t max_connections = 0;
    // Accepted beyond max_connections when no idle connection can make room, each served one
    // request within http.over_limit_timeout (/healthz and /metrics answered, 503 otherwise).
    std::size_t overflow = 32;
    // After an accept error, accepting waits this long, doubling up to the max (and resumes as
    // soon as a connection closes).
    std::chrono::milliseconds backoff_min{10};
    std::chrono::milliseconds backoff_max{1'000};
    std::chrono::milliseconds log_interval{10'000};
    http_limits http;
};

// Descriptors the engine keeps for itself besides client connections: the change log, Postgres
// connections (replication, NOTIFY, snapshot workers, probe), epoll and wake-up descriptors, the
// rules watcher, and some to spare.
inline constexpr std::size_t default_fd_reserve = 128;

// The soft RLIMIT_NOFILE less `reserve` (half the limit when the reserve would leave less).
std::size_t default_max_connections(std::size_t reserve = default_fd_reserve);

class listener : public std::enable_shared_from_this<listener> {
public:
    listener(net::io_context& accept_on, std::vector<net::io_context*> workers,
             net::ip::tcp::endpoint endpoint, session_context& ctx, http_session::health_fn health,
             listener_options options = {});
    void run();
    // From any thread: stop accepting (connections already accepted carry on).
    void stop();
    net::ip::tcp::endpoint local_endpoint() const { return acceptor_.local_endpoint(); }
    std::size_t max_connections() const { return budget_->limit(); }

private:
    enum class pause_reason { out_of_descriptors, connection_limit, error };

    void accept();
    bool room() const;
    void on_accept(beast::error_code ec, net::ip::tcp::socket socket);
    void pause(pause_reason why, std::chrono::milliseconds backoff);
    void resume();
    void report(bool force = false);

    net::ip::tcp::acceptor acceptor_;
    net::steady_timer timer_;        // the end of a pause
    net::steady_timer report_timer_; // the next log line, when one is due
    std::vector<net::io_context*> workers_;
    std::size_t next_ = 0;
    session_context& ctx_;
    http_session::health_fn health_;
    listener_options options_;
    std::shared_ptr<connection_budget> budget_;
    bool stopped_ = false;
    bool paused_ = false;
    bool full_ = false; // paused at the limit and its overflow since the last accept
    std::chrono::milliseconds backoff_;
    // Counts since the last log line (at most one per log_interval).
    std::chrono::steady_clock::time_point last_report_{};
    std::chrono::steady_clock::time_point first_event_{}; // counted since the last line
    bool report_armed_ = false;
    std::size_t fd_errors_ = 0;
    std::size_t other_errors_ = 0;
    std::size_t evicted_ = 0;
    std::size_t over_limit_ = 0;
    std::size_t limit_pauses_ = 0;
    beast::error_code last_error_;
};

} // namespace pgpush::push
