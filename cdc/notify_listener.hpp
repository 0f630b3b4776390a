#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <set>
#include <string>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>

#include "cdc/reconnect.hpp"

namespace pgpush::cdc {

namespace net = boost::asio;

struct notification {
    std::string channel;
    std::string payload;
    int sender_pid = 0;
};

struct notify_stats {
    std::atomic<std::uint64_t> notifications{0};
    std::atomic<std::uint64_t> reconnects{0};
    std::atomic<bool> connected{false};
};

// LISTENs on channels over one ordinary connection, on the caller's event loop (no thread per
// listener). NOTIFY is not durable: what is sent while the connection is down is gone, so after
// every reconnect on_gap runs and the owner can tell its listeners.
class notify_listener {
public:
    struct handlers {
        std::function<void(const notification&)> on_notify;
        std::function<void()> on_gap;
    };

    notify_listener(net::any_io_executor ex, std::string conninfo, handlers h,
                    std::chrono::milliseconds reconnect_min = std::chrono::milliseconds(100),
                    std::chrono::milliseconds reconnect_max = std::chrono::milliseconds(10'000));
    ~notify_listener();

    // Adds a channel; takes effect at once when connected, else on connect.
    void listen(const std::string& channel);

    // Runs until stop(), reconnecting with backoff.
    net::awaitable<void> run();
    void stop();

    const notify_stats& stats() const { return stats_; }

private:
    struct session;
    net::awaitable<void> run_once(backoff& delay);

    net::any_io_executor ex_;
    std::string conninfo_;
    handlers handlers_;
    std::set<std::string> channels_;
    std::set<std::string> listening_; // on the current connection
    notify_stats stats_;
    bool stopping_ = false;
    bool connected_before_ = false;
    session* current_ = nullptr;
    reconnector reconnect_;
};

} // namespace pgpush::cdc
