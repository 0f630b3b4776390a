#pragma once

// Serves one HTTP connection: /healthz, /metrics, and the upgrade to a WebSocket (on /ws or /).
//
// Every request is checked before it is served, as nginx checks them: a header section over
// `header_bytes` or with more than `max_fields` fields gets 431, a request line over
// `target_bytes` 414, a body over `body_bytes` 413, anything unparsable 400, a method a path does
// not serve 405, and a WebSocket upgrade that RFC 6455 section 4.2.1 does not allow 400 (426 for
// a version other than 13). Error responses close the connection with a lingering close, so the
// client reads the answer instead of a reset.
//
// Each connection holds a `connection_slot` from the listener's `connection_budget` until its
// socket closes (a WebSocket session takes the slot over). While it waits for a request, at the
// limit the listener may close it to make room for a new one.

#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "push/metrics.hpp"
#include "push/session_context.hpp"

namespace pgpush::push {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;

class connection_slot;

// Counts client connections (HTTP and WebSocket sockets) against a limit, and keeps the HTTP
// connections that wait for a request in the order they started waiting, so that at the limit
// the one idle longest can make room (nginx reuses idle keep-alive connections the same way).
// WebSocket sessions are never in that list. Thread-safe; every slot shares ownership of it.
class connection_budget {
public:
    connection_budget(std::size_t limit, metrics& stats);
    connection_budget(const connection_budget&) = delete;
    connection_budget& operator=(const connection_budget&) = delete;

    std::size_t limit() const { return limit_; }
    std::size_t open() const { return open_.load(std::memory_order_relaxed); }
    std::size_t idle() const;

    // One more connection. Never refuses: the listener decides whether to accept.
    static connection_slot acquire(const std::shared_ptr<connection_budget>& budget);

    // Closes up to `n` of the connections that have waited longest for a request (through the
    // `evict` each gave to connection_slot::idle); returns how many.
    std::size_t evict_oldest(std::size_t n);

    // `wake` runs once, on the thread that releases it, when the next slot is released (a
    // connection closed); replaces an earlier one. nullptr: none. Ignored after stop_waking().
    void on_release(std::function<void()> wake);
    // No wake-up runs from now on (the listener stops; its executor may go before the slots).
    void stop_waking();

private:
    friend class connection_slot;
    struct node {
        std::function<void()> evict;
        std::list<node*>::iterator at;
        bool listed = false;  // in idle_
        bool evicted = false; // chosen to make room: close
    };
    void release(node& n);

    const std::size_t limit_;
    metrics& stats_;
    std::atomic<std::size_t> open_{0};
    mutable std::mutex mu_;
    std::list<node*> idle_; // oldest first
    std::function<void()> wake_;
    bool waking_stopped_ = false;
};

// One client connection's place in a connection_budget, held until its socket is closed.
class connection_slot {
public:
    connection_slot() = default;
    connection_slot(connection_slot&&) noexcept = default;
    connection_slot& operator=(connection_slot&& other) noexcept;
    ~connection_slot() { reset(); }

    explicit operator bool() const { return node_ != nullptr; }
    std::size_t limit() const { return budget_ ? budget_->limit() : 0; }

    // The connection waits for a request: until busy(), the budget may close it by calling
    // `evict` (on the listener's thread: it must post to the connection's own).
    void idle(std::function<void()> evict);
    // The connection has a request to serve. False if it was chosen to make room meanwhile:
    // then it must close instead.
    bool busy();
    // Gives the place back (the socket is closed).
    void reset();

private:
    friend class connection_budget;
    std::shared_ptr<connection_budget> budget_;
    std::unique_ptr<connection_budget::node> node_;
};

// What an HTTP request may be, and how long it may take.
struct http_limits {
    std::size_t header_bytes = 16 * 1024; // request line and fields (431; 414 for the line)
    std::size_t max_fields = 100;         // 431
    std::size_t target_bytes = 8 * 1024;  // 414
    std::size_t body_bytes = 8 * 1024;    // 413 (no endpoint takes a body)
    // For the whole header of a request, from when the connection is accepted or its previous
    // response written (keep-alive idle time included, as HAProxy's timeout http-request): a
    // client that trickles its header (slowloris) is cut off at this deadline.
    std::chrono::milliseconds header_timeout{10'000};
    // For a connection over the limit: its only request must arrive within this.
    std::chrono::milliseconds over_limit_timeout{2'000};
    std::chrono::seconds retry_after{5}; // in 503 answers over the limit
    // A closing connection reads and discards what the client still sends, for up to this long
    // and this many bytes, before it closes: closing with unread data would reset the connection
    // and could destroy the response before the client reads it.
    std::chrono::milliseconds linger_timeout{2'000};
    std::size_t linger_bytes = 4 * 1024 * 1024;
};

class http_session : public std::enable_shared_from_this<http_session> {
public:
    using health_fn = std::function<std::pair<bool, std::string>()>; // (healthy, JSON body)

    // `over_limit`: accepted beyond the connection limit. Such a connection is served one
    // request within `over_limit_timeout`: /healthz and /metrics are answered, anything else
    // (a WebSocket upgrade too) gets 503 with Retry-After.
    http_session(net::ip::tcp::socket&& socket, session_context& ctx, health_fn health,
                 connection_slot slot, const http_limits& limits = {}, bool over_limit = false);
    void run();

private:
    void read_header();
    void on_header(beast::error_code ec, std::size_t);
    void on_body(beast::error_code ec, std::size_t);
    void refuse(beast::error_code ec);
    void handle();
    void upgrade(http::request<http::string_body> req);
    void error(http::status status, refusal why, std::string text, unsigned version = 11);
    void send(bool keep_alive, bool head = false);
    void on_write(bool keep_alive, beast::error_code ec, std::size_t);
    void linger();
    void on_linger(beast::error_code ec, std::size_t bytes);
    void evict();

    connection_slot slot_; // first: given back after the socket (below) is closed
    beast::tcp_stream stream_;
    beast::flat_buffer buffer_;
    std::optional<http::request_parser<http::string_body>> parser_;
    http::response<http::string_body> response_;
    session_context& ctx_;
    health_fn health_;
    const http_limits limits_;
    const bool over_limit_;
    std::size_t lingered_ = 0;
};

} // namespace pgpush::push
