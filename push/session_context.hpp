#pragma once

// What every connection shares: limits, metrics, the JWT verifier, the hub; and the registries a
// server needs across connections (connections per user, live sessions for a graceful shutdown).
// Thread-safe.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "push/metrics.hpp"

namespace pgpush::push {

class hub;
class jwt_verifier;
class ws_session;

struct session_limits {
    std::size_t max_message_bytes = 64 * 1024;
    std::size_t send_budget_bytes = 4 * 1024 * 1024;
    std::size_t max_connections_per_user = 20;
    double subscribe_per_second = 20;
    double subscribe_burst = 40;
    std::chrono::seconds auth_timeout{10};
    std::chrono::seconds idle_timeout{60}; // a silent peer gets pings, then is dropped
};

// What every session shares; thread-safe.
struct session_context {
    session_context(session_limits l, metrics& m, const jwt_verifier& j, hub& h)
        : limits(l), stats(m), jwt(j), the_hub(h) {}

    session_limits limits;
    metrics& stats;
    const jwt_verifier& jwt;
    hub& the_hub;

    // Connections per user (`sub` claim).
    bool admit_user(const std::string& user);
    void release_user(const std::string& user);

    // Every live session, for a graceful shutdown.
    void add(const std::shared_ptr<ws_session>& s);
    void remove(std::uint64_t id);
    void close_all(const std::string& reason);
    // Waits until every session is gone or `timeout` passed; true when all are gone.
    bool wait_closed(std::chrono::milliseconds timeout);

    std::atomic<std::uint64_t> next_id{1};

private:
    std::mutex mu_;
    std::condition_variable closed_;
    std::unordered_map<std::string, std::size_t> users_;
    std::unordered_map<std::uint64_t, std::weak_ptr<ws_session>> sessions_;
};

} // namespace pgpush::push
