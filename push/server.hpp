#pragma once

// `pgpush serve`: the engine. Wires the replication stream, the hub, the snapshot workers, the
// NOTIFY listener, rules reloading and the WebSocket server, and shuts them down in order.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "push/hub.hpp"
#include "push/jwt_verifier.hpp"
#include "push/listener.hpp"
#include "push/session_context.hpp"

namespace pgpush::push {

struct serve_config {
    std::string db;
    std::string rules_path = "rules.yaml";
    std::string listen = "127.0.0.1:8080";
    std::size_t threads = 0; // I/O threads; 0: one per core
    std::string slot = "pgpush";
    std::string publication = "pgpush";
    bool manage_publication = true;    // keep the publication's tables equal to the rules'
    bool replica_identity_full = true; // set REPLICA IDENTITY FULL on tables in the rules
    std::size_t snapshot_workers = 4;
    std::chrono::milliseconds status_interval{10'000};
    // The durable change log (docs/architecture.md). Off: the slot is confirmed as changes are
    // handed to clients, and resumes get resync_required.
    bool log_enabled = true;
    std::string data_dir = "pgpush-data";
    std::size_t log_segment_bytes = 64u << 20;
    std::uint64_t log_retain_bytes = 1ull << 30;
    std::chrono::seconds log_retain_age{24 * 3600};
    bool log_fsync = true;
    std::chrono::milliseconds log_sync_delay{0}; // tests only (fault injection)
    // A logical message on this period moves the slot while the published tables are idle.
    std::chrono::milliseconds heartbeat_interval{10'000};
    std::uint64_t max_retained_wal_bytes = 1ull << 30; // alarm (log + metric) above this
    jwt_config jwt;
    session_limits limits;
    hub_limits hub;
};

// Runs until SIGTERM/SIGINT (exit 0) or an unrecoverable error (exit 1, with a one-line reason).
int serve(const serve_config& config);

} // namespace pgpush::push
