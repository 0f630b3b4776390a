#include "push/outbox.hpp"

#include <algorithm>
#include <utility>

#include <boost/asio/post.hpp>

namespace pgpush::push {

namespace net = boost::asio;

void outbox::send(const std::weak_ptr<client>& to, frame f) {
    auto c = to.lock();
    if (!c) return;
    auto& p = pending_[c.get()];
    p.to = to;
    p.frames.push_back(std::move(f));
    ++pending_frames_;
}

void outbox::flush() {
    if (pending_.empty()) return;
    using batch = std::vector<std::pair<std::shared_ptr<client>, std::vector<frame>>>;
    std::vector<std::pair<net::any_io_executor, batch>> by_thread;
    for (auto& [ptr, p] : pending_) {
        auto c = p.to.lock();
        if (!c) continue;
        auto ex = c->executor();
        auto it = std::find_if(by_thread.begin(), by_thread.end(),
                               [&](const auto& g) { return g.first == ex; });
        if (it == by_thread.end()) {
            by_thread.emplace_back(ex, batch{});
            it = std::prev(by_thread.end());
        }
        it->second.emplace_back(std::move(c), std::move(p.frames));
    }
    pending_.clear();
    pending_frames_ = 0;
    for (auto& [ex, b] : by_thread) {
        net::post(ex, [b = std::move(b)]() mutable {
            for (auto& [c, frames] : b)
                c->enqueue_frames(frames);
        });
    }
}

} // namespace pgpush::push
