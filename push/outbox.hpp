#pragma once

// Frames on their way from the hub to connections. The hub's thread queues frames per client and
// flushes them with one post per I/O thread (carrying every connection of that thread): at
// fan-out, waking threads costs more than writing. Posts to one thread run in order, so each
// connection's frames stay in order.

#include <cstddef>
#include <memory>
#include <unordered_map>
#include <vector>

#include "push/client.hpp"
#include "push/frame.hpp"

namespace pgpush::push {

class outbox {
public:
    // Queues `f` for `to` (dropped when the client is gone).
    void send(const std::weak_ptr<client>& to, frame f);
    // Hands everything queued to the clients' threads.
    void flush();
    // Frames queued since the last flush.
    std::size_t pending() const { return pending_frames_; }

private:
    struct queued {
        std::weak_ptr<client> to;
        std::vector<frame> frames;
    };
    std::unordered_map<const client*, queued> pending_;
    std::size_t pending_frames_ = 0;
};

} // namespace pgpush::push
