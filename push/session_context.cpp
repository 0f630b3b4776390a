#include "push/session_context.hpp"

#include "push/ws_session.hpp"

namespace pgpush::push {

bool session_context::admit_user(const std::string& user) {
    std::lock_guard lock(mu_);
    auto& n = users_[user];
    if (n >= limits.max_connections_per_user) return false;
    ++n;
    return true;
}

void session_context::release_user(const std::string& user) {
    std::lock_guard lock(mu_);
    auto it = users_.find(user);
    if (it != users_.end() && --it->second == 0) users_.erase(it);
}

void session_context::add(const std::shared_ptr<ws_session>& s) {
    std::lock_guard lock(mu_);
    sessions_[s->connection_id()] = s;
}

void session_context::remove(std::uint64_t id) {
    std::lock_guard lock(mu_);
    sessions_.erase(id);
    if (sessions_.empty()) closed_.notify_all();
}

bool session_context::wait_closed(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu_);
    return closed_.wait_for(lock, timeout, [&] { return sessions_.empty(); });
}

void session_context::close_all(const std::string& reason) {
    std::vector<std::shared_ptr<ws_session>> live;
    {
        std::lock_guard lock(mu_);
        for (auto& [id, w] : sessions_) {
            if (auto s = w.lock()) live.push_back(std::move(s));
        }
    }
    for (auto& s : live)
        s->shut_down(reason);
}

} // namespace pgpush::push
