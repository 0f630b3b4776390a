#include "push/metrics.hpp"

#include <chrono>

#include <fmt/format.h>

namespace pgpush::push {

const char* to_string(refusal r) {
    switch (r) {
    case refusal::connection_limit:
        return "connection_limit";
    case refusal::header_too_large:
        return "header_too_large";
    case refusal::uri_too_long:
        return "uri_too_long";
    case refusal::body_too_large:
        return "body_too_large";
    case refusal::bad_request:
        return "bad_request";
    case refusal::method_not_allowed:
        return "method_not_allowed";
    case refusal::bad_handshake:
        return "bad_handshake";
    case refusal::websocket_version:
        return "websocket_version";
    case refusal::request_timeout:
        return "request_timeout";
    }
    return "unknown";
}

void metrics::count_error(const std::string& code) {
    std::lock_guard lock(mu_);
    ++errors_[code];
}

void metrics::count_table_change(const std::string& table) {
    std::lock_guard lock(mu_);
    ++table_changes_[table];
}

std::string metrics::prometheus() const {
    std::string out;
    auto metric = [&](const char* name, const char* type, const char* help, auto value) {
        out +=
            fmt::format("# HELP {} {}\n# TYPE {} {}\n{} {}\n", name, help, name, type, name, value);
    };
    metric("pgpush_connections", "gauge", "Open WebSocket connections.", connections.load());
    metric("pgpush_connections_total", "counter", "WebSocket connections accepted.",
           connections_total.load());
    metric("pgpush_subscriptions", "gauge", "Active subscriptions.", subscriptions.load());
    metric("pgpush_listens", "gauge", "Active NOTIFY listens.", listens.load());
    metric("pgpush_changes_total", "counter", "Row changes decoded from the replication stream.",
           changes_in.load());
    metric("pgpush_transactions_total", "counter", "Transactions decoded.", transactions_in.load());
    metric("pgpush_events_total", "counter", "Change events queued to subscribers.",
           events_out.load());
    metric("pgpush_messages_sent_total", "counter", "WebSocket messages written.",
           frames_out.load());
    metric("pgpush_bytes_sent_total", "counter", "Bytes of WebSocket messages written.",
           bytes_out.load());
    metric("pgpush_notifications_total", "counter", "NOTIFY payloads received.",
           notifications_in.load());
    metric("pgpush_notifications_sent_total", "counter", "NOTIFY payloads delivered.",
           notifications_out.load());
    metric("pgpush_queue_bytes", "gauge", "Bytes waiting in send queues.", queued_bytes.load());
    metric("pgpush_slow_consumer_disconnects_total", "counter",
           "Connections closed because their send queue exceeded its budget.",
           slow_consumer_disconnects.load());
    metric("pgpush_auth_failures_total", "counter", "Tokens refused.", auth_failures.load());
    metric("pgpush_snapshots_total", "counter", "Initial snapshots taken.", snapshots.load());
    metric("pgpush_snapshot_rows_total", "counter", "Rows sent in snapshots.",
           snapshot_rows.load());
    metric("pgpush_snapshot_retries_total", "counter",
           "Snapshots retaken because a transaction was between commit and visibility.",
           snapshot_retries.load());
    metric("pgpush_snapshots_running", "gauge", "Snapshots in progress.", snapshots_running.load());
    metric("pgpush_resumes_total", "counter", "Subscriptions resumed after a position.",
           resumes.load());
    metric("pgpush_resyncs_total", "counter", "resync_required errors sent.", resyncs.load());
    metric("pgpush_events_replayed_total", "counter", "Change events sent from the change log.",
           events_replayed.load());
    metric("pgpush_log_enabled", "gauge", "1 when changes are logged durably before confirming.",
           log_enabled.load() ? 1 : 0);
    metric("pgpush_log_bytes", "gauge", "Bytes of change log on disk.", log_bytes.load());
    metric("pgpush_log_segments", "gauge", "Change log segments on disk.", log_segments.load());
    metric("pgpush_log_syncs_total", "counter", "Change log fdatasync calls (group commits).",
           log_syncs.load());
    metric("pgpush_log_durable_lsn", "gauge", "WAL position the change log holds durably.",
           log_durable_lsn.load());
    metric("pgpush_heartbeats_total", "counter", "Heartbeat messages written to advance the slot.",
           heartbeats.load());
    metric("pgpush_database_up", "gauge", "1 when the last database probe succeeded.",
           db_up.load() ? 1 : 0);
    metric("pgpush_replication_connected", "gauge", "1 while the replication stream is connected.",
           stream_connected.load() ? 1 : 0);
    metric("pgpush_replication_reconnects_total", "counter", "Replication stream reconnects.",
           stream_reconnects.load());
    metric("pgpush_replication_slot_ok", "gauge", "1 when the slot exists and is not invalidated.",
           slot_ok.load() ? 1 : 0);
    const auto server = server_lsn.load(), received = received_lsn.load(),
               confirmed = slot_confirmed_lsn.load();
    metric("pgpush_replication_lag_bytes", "gauge",
           "WAL written by the server and not yet received.",
           server > received ? server - received : 0);
    const auto restart = slot_restart_lsn.load();
    const auto retained = server > restart && restart ? server - restart : 0;
    metric("pgpush_slot_retained_wal_bytes", "gauge",
           "WAL the slot keeps (server position - restart_lsn).", retained);
    metric("pgpush_slot_unconfirmed_bytes", "gauge",
           "WAL between the slot's confirmed position and the server's.",
           server > confirmed ? server - confirmed : 0);
    const auto alarm = retained_wal_alarm_bytes.load();
    metric("pgpush_slot_retained_wal_alarm", "gauge",
           "1 when retained WAL is over --max-retained-wal (or the slot is invalidated).",
           (alarm && retained > alarm) || !slot_ok.load() ? 1 : 0);
    metric("pgpush_stream_paused", "gauge",
           "1 while the stream does not read because the change log cannot keep up.",
           stream_paused.load() ? 1 : 0);
    metric("pgpush_log_state", "gauge",
           "The change log writer: 0 ok, 1 stalled (a write failed: retrying), 2 failed (a sync "
           "failed: the engine stops).",
           log_state.load());
    metric("pgpush_log_stalls_total", "counter", "Times the change log writer stalled.",
           log_stalls.load());
    metric("pgpush_publication_missing_tables", "gauge",
           "Tables of the rules the publication does not carry (their changes are not streamed).",
           publication_missing_tables.load());
    metric("pgpush_lookup_changes_total", "counter",
           "Lookup results that changed (one subscriber key of one lookup).",
           lookup_changes.load());
    metric("pgpush_lookup_resets_total", "counter",
           "Subscriptions reset (a fresh snapshot) because a lookup result they read changed.",
           lookup_resets.load());
    metric("pgpush_publication_gaps_total", "counter",
           "Times a table was found missing from the publication (a hole in its history).",
           publication_gaps.load());
    const auto last = last_commit_time_us.load();
    double lag_seconds = 0;
    if (last > 0 && server > received) {
        auto now = std::chrono::duration_cast<std::chrono::microseconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
        lag_seconds = static_cast<double>(now - last) / 1e6;
    }
    metric("pgpush_replication_lag_seconds", "gauge",
           "Age of the last transaction handled, while there is WAL not yet received.",
           lag_seconds);
    metric("pgpush_connection_limit", "gauge",
           "Client connections (HTTP and WebSocket) served at once (--max-connections).",
           connection_limit.load());
    metric("pgpush_tcp_connections", "gauge",
           "Client connections open, HTTP and WebSocket, counted against the limit.",
           tcp_connections.load());
    metric("pgpush_connections_evicted_total", "counter",
           "Idle HTTP connections closed to make room at the connection limit.",
           connections_evicted.load());
    out += "# HELP pgpush_accept_paused_total Times accepting paused, by reason.\n# TYPE "
           "pgpush_accept_paused_total counter\n";
    out += fmt::format("pgpush_accept_paused_total{{reason=\"out_of_descriptors\"}} {}\n",
                       accept_paused_fds.load());
    out += fmt::format("pgpush_accept_paused_total{{reason=\"connection_limit\"}} {}\n",
                       accept_paused_limit.load());
    out += fmt::format("pgpush_accept_paused_total{{reason=\"error\"}} {}\n",
                       accept_paused_error.load());
    out += "# HELP pgpush_connections_refused_total Requests answered with an error status or "
           "connections not served, by reason.\n# TYPE pgpush_connections_refused_total counter\n";
    for (std::size_t i = 0; i < refusal_count; ++i) {
        out += fmt::format("pgpush_connections_refused_total{{reason=\"{}\"}} {}\n",
                           to_string(static_cast<refusal>(i)), refused[i].load());
    }
    std::lock_guard lock(mu_);
    out += "# HELP pgpush_errors_total Errors sent to clients, by code.\n# TYPE "
           "pgpush_errors_total counter\n";
    for (const auto& [code, n] : errors_)
        out += fmt::format("pgpush_errors_total{{code=\"{}\"}} {}\n", code, n);
    out += "# HELP pgpush_table_changes_total Row changes by table.\n# TYPE "
           "pgpush_table_changes_total counter\n";
    for (const auto& [t, n] : table_changes_) {
        out += fmt::format("pgpush_table_changes_total{{table=\"{}\"}} {}\n", t, n);
    }
    return out;
}

} // namespace pgpush::push
