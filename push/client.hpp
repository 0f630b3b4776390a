#pragma once

// What the hub and the snapshot workers see of a client connection: somewhere to deliver frames,
// from any thread, and how full its send queue is.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <vector>

#include <boost/asio/any_io_executor.hpp>

#include "push/frame.hpp"

namespace pgpush::push {

// Lets a snapshot worker wait for a client to drain its queue before sending more rows, so a
// large initial result never trips the slow-consumer budget.
struct flow_gate {
    std::atomic<std::size_t> queued{0};
    std::atomic<bool> closed{false};
    std::mutex mu;
    std::condition_variable drained;

    // Waits until the queue is below `bytes` (true) or the client is gone / the deadline passed.
    bool wait_below(std::size_t bytes, std::chrono::milliseconds timeout) {
        std::unique_lock lock(mu);
        return drained.wait_for(lock, timeout, [&] { return closed || queued < bytes; }) && !closed;
    }
    void notify() {
        std::lock_guard lock(mu); // so a waiter cannot miss a wake-up between check and wait
        drained.notify_all();
    }
};

class client {
public:
    virtual ~client() = default;
    // Thread-safe: hands the frames to the connection's own thread, which sends them in order.
    virtual void post_frames(std::vector<frame> frames) = 0;
    // The connection's own thread, and queueing on it (only there): lets the hub post once per
    // thread for all the connections it serves instead of once per connection.
    virtual boost::asio::any_io_executor executor() const = 0;
    virtual void enqueue_frames(std::vector<frame>& frames) = 0;
    virtual std::uint64_t connection_id() const = 0;
    virtual flow_gate& flow() = 0;
};

} // namespace pgpush::push
