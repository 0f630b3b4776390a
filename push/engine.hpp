#pragma once

// `pgpush serve`: the engine. Owns every part (replication stream, hub, snapshot workers, database
// workers, NOTIFY listener, rules reloading, change log, WebSocket server, prober) as members
// declared in the order they depend on each other, starts them in that order and stops them in
// the reverse one (`stop`), so no part outlives what it calls.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>

#include "push/hub.hpp"
#include "push/jwt_verifier.hpp"
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
    std::chrono::milliseconds snapshot_timeout{120'000};
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
    // The stream pauses while the log has this much appended but not yet written (a slow disk).
    std::uint64_t log_backlog_bytes = 64u << 20;
    // A logical message on this period moves the slot while the published tables are idle; the
    // prober (lag, slot health, the publication's tables) runs at least this often too.
    std::chrono::milliseconds heartbeat_interval{10'000};
    std::uint64_t max_retained_wal_bytes = 1ull << 30; // alarm (log + metric) above this
    std::size_t max_connections = 0;                   // 0: from the open-file limit
    // Start-up waits this long for a database that is down or restarting (0: for ever).
    std::chrono::seconds startup_timeout{0};
    jwt_config jwt;
    session_limits limits;
    hub_limits hub;
};

// Exit codes of `pgpush serve` (docs/serve.md lists them).
enum class exit_code : int {
    stopped = 0,    // SIGTERM or SIGINT: everything sent was confirmed
    failed = 1,     // the engine failed while running (slot lost, change log unusable, ...)
    bad_config = 2, // flags, rules or keys that cannot work
    setup = 3,      // the database refuses what pgpush needs (wal_level, privileges, slot)
    resources = 4,  // cannot listen, cannot use the data directory
};

// What keeps the engine from starting; main/ prints "pgpush serve: <code>: <message>".
class engine_error : public std::runtime_error {
public:
    engine_error(std::string code, const std::string& message, exit_code exit)
        : std::runtime_error(message), code_(std::move(code)), exit_(exit) {}
    const std::string& code() const { return code_; }
    exit_code exit() const { return exit_; }

private:
    std::string code_;
    exit_code exit_;
};

class engine {
public:
    explicit engine(serve_config config);
    ~engine();
    engine(const engine&) = delete;
    engine& operator=(const engine&) = delete;

    // Starts, serves until SIGTERM/SIGINT or a fatal error, stops; returns the exit code. Throws
    // engine_error when it cannot start.
    exit_code run();

private:
    struct parts;
    serve_config config_;
    std::unique_ptr<parts> parts_;
};

} // namespace pgpush::push
