#include "cdc/notify_listener.hpp"

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include "cdc/backoff.hpp"
#include "cdc/pg_async.hpp"

namespace pgpush::cdc {

struct notify_listener::session {
    pg::connection conn;
    pg::socket_waiter socket;
    session(pg::connection c, const net::any_io_executor& ex)
        : conn(std::move(c)), socket(ex, PQsocket(conn.get())) {}
};

notify_listener::notify_listener(net::any_io_executor ex, std::string conninfo, handlers h,
                                 std::chrono::milliseconds reconnect_min,
                                 std::chrono::milliseconds reconnect_max)
    : ex_(std::move(ex)), conninfo_(std::move(conninfo)), handlers_(std::move(h)),
      reconnect_(ex_, reconnect_min, reconnect_max, "notify listener") {}

notify_listener::~notify_listener() = default;

void notify_listener::listen(const std::string& channel) {
    if (!channels_.insert(channel).second) return;
    // Wake the session so it sends LISTEN now.
    if (current_) {
        boost::system::error_code ignored;
        current_->socket.descriptor().cancel(ignored);
    }
}

void notify_listener::stop() {
    stopping_ = true;
    if (current_) {
        boost::system::error_code ignored;
        current_->socket.descriptor().cancel(ignored);
    }
    reconnect_.stop();
}

net::awaitable<void> notify_listener::run() {
    co_await reconnect_.run([&] { return run_once(reconnect_.delay()); },
                            [&](const std::string&) {
                                stats_.connected = false;
                                listening_.clear();
                                ++stats_.reconnects;
                            });
    stats_.connected = false;
}

net::awaitable<void> notify_listener::run_once(backoff& delay) {
    pg::connect_options options;
    options.conninfo = conninfo_;
    options.application_name = "pgpush-listen";
    session s(co_await pg::async_connect(options), ex_);
    current_ = &s;
    struct clear_current {
        session** p;
        ~clear_current() { *p = nullptr; }
    } clear{&current_};

    bool announced = false;
    while (!stopping_) {
        // LISTEN every channel not yet listened to on this connection (new ones, or all after a
        // reconnect).
        for (const auto& ch : channels_) {
            if (listening_.count(ch)) continue;
            co_await pg::async_exec(s.conn.get(), s.socket, "LISTEN " + pg::quote_identifier(ch));
            listening_.insert(ch);
        }
        if (!announced) {
            announced = true;
            delay.reset();
            stats_.connected = true;
            spdlog::info("listening on {} channel(s)", listening_.size());
            if (connected_before_ && handlers_.on_gap) handlers_.on_gap();
            connected_before_ = true;
        }
        while (PGnotify* n = PQnotifies(s.conn.get())) {
            notification note{n->relname, n->extra ? n->extra : "", n->be_pid};
            PQfreemem(n);
            stats_.notifications.fetch_add(1, std::memory_order_relaxed);
            if (handlers_.on_notify) handlers_.on_notify(note);
        }
        if (!s.socket.has_pending_input()) {
            try {
                co_await s.socket.readable();
            } catch (const boost::system::system_error& e) {
                if (e.code() == net::error::operation_aborted) continue; // listen() or stop()
                throw;
            }
        }
        if (PQconsumeInput(s.conn.get()) == 0) throw pg::error(pg::last_error(s.conn.get()));
    }
}

} // namespace pgpush::cdc
