#pragma once

// The loop both long-lived connections (the replication stream, the NOTIFY listener) live in:
// try; when the connection is lost (a pg::error or a socket error), say why, wait a jittered
// backoff and try again; until an attempt ends normally or stop() is called. Anything else an
// attempt throws ends the loop and reaches the caller.

#include <chrono>
#include <string>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include "cdc/backoff.hpp"
#include "cdc/pg_async.hpp"

namespace pgpush::cdc {

namespace net = boost::asio;

class reconnector {
public:
    reconnector(net::any_io_executor ex, std::chrono::milliseconds min,
                std::chrono::milliseconds max, std::string what)
        : delay_(min, max), pause_(std::move(ex)), what_(std::move(what)) {}

    // Attempts call reset() once connected, so the next loss waits the shortest delay again.
    backoff& delay() { return delay_; }
    bool stopped() const { return stopped_; }
    // From the loop's thread: no more attempts; a pending wait ends now.
    void stop() {
        stopped_ = true;
        pause_.cancel();
    }

    // Runs `attempt()` (an awaitable) until it returns (true) or stop() (false). After each lost
    // connection `lost(why)` runs before the wait; it may throw to give up.
    template <class Attempt, class Lost>
    net::awaitable<bool> run(Attempt attempt, Lost lost) {
        while (!stopped_) {
            std::string why;
            try {
                co_await attempt();
                co_return true;
            } catch (const pg::error& e) {
                why = e.what();
            } catch (const boost::system::system_error& e) {
                why = e.what();
            }
            if (stopped_) break;
            lost(why);
            const auto d = delay_.next();
            spdlog::warn("{}: {}; reconnecting in {} ms", what_, why, d.count());
            pause_.expires_after(d);
            boost::system::error_code ec;
            co_await pause_.async_wait(net::redirect_error(net::use_awaitable, ec));
        }
        co_return false;
    }

private:
    backoff delay_;
    net::steady_timer pause_;
    std::string what_;
    bool stopped_ = false;
};

} // namespace pgpush::cdc
