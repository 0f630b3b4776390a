#include "main/serve_command.hpp"

#include <algorithm>

#include <CLI/CLI.hpp>

#include "main/common.hpp"

namespace pgpush {

CLI::App* add_serve_command(CLI::App& app, serve_options& o) {
    auto& c = o.config;
    auto* cmd =
        app.add_subcommand("serve", "Run the engine: WebSocket subscriptions to live queries");
    cmd->add_option("--db", c.db, "PostgreSQL URL or conninfo string")
        ->envname("PGPUSH_DB")
        ->required();
    cmd->add_option("--rules", c.rules_path,
                    "The rules file (reloaded on SIGHUP and when it changes)")
        ->envname("PGPUSH_RULES")
        ->capture_default_str();
    cmd->add_option("--listen", c.listen, "HOST:PORT for WebSocket (/ws), /healthz and /metrics")
        ->envname("PGPUSH_LISTEN")
        ->capture_default_str();
    cmd->add_option("--threads", c.threads, "I/O threads (0: one per core)")
        ->envname("PGPUSH_THREADS");
    cmd->add_option("--slot", c.slot, "Replication slot (created if missing)")
        ->envname("PGPUSH_SLOT")
        ->capture_default_str();
    cmd->add_option("--publication", c.publication, "Publication (kept equal to the rules' tables)")
        ->envname("PGPUSH_PUBLICATION")
        ->capture_default_str();
    cmd->add_flag("!--no-manage-publication", c.manage_publication,
                  "Leave the publication alone (it must already publish the rules' tables)");
    cmd->add_flag(
        "!--no-replica-identity-full", c.replica_identity_full,
        "Do not set REPLICA IDENTITY FULL on the rules' tables (rows leaving a result are "
        "then not sent as deletes)");
    cmd->add_option("--jwt-alg", c.jwt.algorithm,
                    "Accepted JWT algorithm (HS256, RS256, ES256, ...)")
        ->envname("PGPUSH_JWT_ALG")
        ->capture_default_str();
    cmd->add_option("--jwt-secret", c.jwt.secret, "HMAC secret for HS* (at least 32 bytes)")
        ->envname("PGPUSH_JWT_SECRET");
    cmd->add_option("--jwt-public-key", o.jwt_public_key_file, "PEM public key file for RS*/ES*")
        ->envname("PGPUSH_JWT_PUBLIC_KEY");
    cmd->add_option("--jwt-jwks", o.jwt_jwks_file, "JWKS file for RS*/ES* (keys chosen by kid)")
        ->envname("PGPUSH_JWT_JWKS");
    cmd->add_option("--jwt-audience", c.jwt.audience, "Required `aud`")
        ->envname("PGPUSH_JWT_AUDIENCE");
    cmd->add_option("--jwt-issuer", c.jwt.issuer, "Required `iss`")->envname("PGPUSH_JWT_ISSUER");
    cmd->add_option("--jwt-leeway", o.jwt_leeway_seconds,
                    "Seconds of clock skew allowed on exp/nbf")
        ->capture_default_str();
    auto& l = c.limits;
    cmd->add_option("--max-message-bytes", l.max_message_bytes, "Largest client message")
        ->capture_default_str();
    cmd->add_option("--send-budget-bytes", l.send_budget_bytes,
                    "Per-connection send queue; a client over it is disconnected (slow consumer)")
        ->capture_default_str();
    cmd->add_option("--max-connections-per-user", l.max_connections_per_user, "By the token's sub")
        ->capture_default_str();
    cmd->add_option("--max-connections", c.max_connections,
                    "Client connections (HTTP and WebSocket) served at once; 0: the open-file "
                    "limit less a reserve")
        ->envname("PGPUSH_MAX_CONNECTIONS")
        ->capture_default_str();
    cmd->add_option("--max-subscriptions", c.hub.max_subscriptions_per_connection, "Per connection")
        ->capture_default_str();
    cmd->add_option("--subscribe-rate", l.subscribe_per_second,
                    "Subscribe/listen requests per second per connection")
        ->capture_default_str();
    cmd->add_option("--subscribe-burst", l.subscribe_burst, "Burst allowed above the rate")
        ->capture_default_str();
    cmd->add_option("--auth-timeout", o.auth_timeout_seconds,
                    "Seconds a connection may stay unauthenticated")
        ->capture_default_str();
    cmd->add_option("--snapshot-workers", c.snapshot_workers, "Threads taking initial snapshots")
        ->capture_default_str();
    cmd->add_option("--snapshot-max-rows", c.hub.snapshot_max_rows, "Largest initial result")
        ->capture_default_str();
    cmd->add_option("--lookup-max-rows", c.hub.lookup_max_rows,
                    "Most rows of one lookup's table held in memory (more: the lookup cannot be "
                    "used; a start-up error)")
        ->envname("PGPUSH_LOOKUP_MAX_ROWS")
        ->capture_default_str();
    cmd->add_option("--snapshot-timeout", o.snapshot_timeout_seconds,
                    "Seconds a snapshot may take, waiting for its client included")
        ->capture_default_str();
    cmd->add_option("--startup-timeout", o.startup_timeout_seconds,
                    "Seconds to wait at start for a database that is down or restarting (0: for "
                    "ever)")
        ->envname("PGPUSH_STARTUP_TIMEOUT")
        ->capture_default_str();
    cmd->add_option("--data-dir", c.data_dir,
                    "Where the change log lives (DIR/SLOT.log); keep it on durable local disk")
        ->envname("PGPUSH_DATA_DIR")
        ->capture_default_str();
    cmd->add_flag("!--no-log", c.log_enabled,
                  "Run without the durable change log: no resumes, and a crash may lose changes "
                  "for clients");
    cmd->add_option("--log-segment-bytes", c.log_segment_bytes, "Size at which a segment rolls")
        ->capture_default_str();
    cmd->add_option("--log-retain-bytes", c.log_retain_bytes,
                    "Keep at most this much change log (oldest segments go first)")
        ->envname("PGPUSH_LOG_RETAIN_BYTES")
        ->capture_default_str();
    cmd->add_option("--log-retain-hours", o.log_retain_hours,
                    "Drop segments older than this; resumes from before get resync_required")
        ->envname("PGPUSH_LOG_RETAIN_HOURS")
        ->capture_default_str();
    cmd->add_flag("!--no-fsync", c.log_fsync,
                  "Do not fdatasync the change log (benchmarks only: a power loss loses changes)");
    cmd->add_option("--heartbeat-interval", o.heartbeat_interval_ms,
                    "Milliseconds between heartbeat messages that move an idle slot on")
        ->capture_default_str();
    cmd->add_option("--max-retained-wal", c.max_retained_wal_bytes,
                    "Bytes of WAL the slot may hold before pgpush warns (0: never)")
        ->capture_default_str();
    // Hidden: fault injection for the durability tests.
    cmd->add_option("--test-log-sync-delay-ms", o.log_sync_delay_ms)->group("");
    cmd->add_option("--status-interval", o.status_interval_ms,
                    "Milliseconds between replication status updates")
        ->capture_default_str();
    return cmd;
}

int run_serve(serve_options& o) {
    auto& c = o.config;
    try {
        if (!o.jwt_public_key_file.empty()) c.jwt.public_key_pem = read_file(o.jwt_public_key_file);
        if (!o.jwt_jwks_file.empty()) c.jwt.jwks_json = read_file(o.jwt_jwks_file);
    } catch (const std::exception& e) {
        return fail("serve", "bad_option", e.what(), 2);
    }
    c.jwt.leeway = std::chrono::seconds(o.jwt_leeway_seconds);
    c.limits.auth_timeout = std::chrono::seconds(o.auth_timeout_seconds);
    c.status_interval = std::chrono::milliseconds(o.status_interval_ms);
    c.log_sync_delay = std::chrono::milliseconds(o.log_sync_delay_ms);
    c.log_retain_age = std::chrono::seconds(static_cast<long>(o.log_retain_hours * 3600));
    c.heartbeat_interval = std::chrono::milliseconds(std::max(100, o.heartbeat_interval_ms));
    c.snapshot_timeout = std::chrono::milliseconds(
        static_cast<long>(std::max(0.1, o.snapshot_timeout_seconds) * 1000));
    c.startup_timeout = std::chrono::seconds(std::max(0, o.startup_timeout_seconds));
    try {
        push::engine e(c);
        return static_cast<int>(e.run());
    } catch (const push::engine_error& e) {
        return fail("serve", e.code(), e.what(), static_cast<int>(e.exit()));
    } catch (const std::exception& e) {
        return fail("serve", "internal", e.what(), 1);
    }
}

} // namespace pgpush
