#pragma once

// Counters and gauges for /metrics (Prometheus text format). Updated with relaxed atomics from
// any thread; per-table and per-code counters live behind a mutex (they change rarely).

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>

namespace pgpush::push {

// Why a request or connection was answered with an error status (or not served), for
// pgpush_connections_refused_total{reason}.
enum class refusal : std::uint8_t {
    connection_limit,   // 503: over --max-connections
    header_too_large,   // 431: header section or field count over the limit
    uri_too_long,       // 414
    body_too_large,     // 413
    bad_request,        // 400: unparsable request line or header, missing Host
    method_not_allowed, // 405
    bad_handshake,      // 400: a WebSocket upgrade RFC 6455 does not allow
    websocket_version,  // 426: Sec-WebSocket-Version other than 13
    request_timeout,    // closed: a request started but not finished in time
};
inline constexpr std::size_t refusal_count = 9;
const char* to_string(refusal r);

struct metrics {
    std::atomic<std::int64_t> connections{0}; // open WebSocket connections
    std::atomic<std::uint64_t> connections_total{0};
    std::atomic<std::int64_t> subscriptions{0}; // active subscriptions
    std::atomic<std::int64_t> listens{0};
    std::atomic<std::uint64_t> changes_in{0}; // row changes decoded
    std::atomic<std::uint64_t> transactions_in{0};
    std::atomic<std::uint64_t> events_out{0}; // change events queued to clients
    std::atomic<std::uint64_t> frames_out{0}; // WebSocket messages written
    std::atomic<std::uint64_t> bytes_out{0};
    std::atomic<std::uint64_t> notifications_in{0};
    std::atomic<std::uint64_t> notifications_out{0};
    std::atomic<std::int64_t> queued_bytes{0}; // in all send queues
    std::atomic<std::uint64_t> slow_consumer_disconnects{0};
    std::atomic<std::uint64_t> auth_failures{0};
    std::atomic<std::uint64_t> snapshots{0};
    std::atomic<std::uint64_t> snapshot_rows{0};
    std::atomic<std::uint64_t> snapshot_retries{0};
    std::atomic<std::int64_t> snapshots_running{0};
    // Resumes (subscribe with `after`) and the change log.
    std::atomic<std::uint64_t> resumes{0};
    std::atomic<std::uint64_t> resyncs{0}; // resync_required sent
    std::atomic<std::uint64_t> events_replayed{0};
    std::atomic<bool> log_enabled{false};
    std::atomic<std::uint64_t> log_bytes{0}; // on disk
    std::atomic<std::uint64_t> log_segments{0};
    std::atomic<std::uint64_t> log_syncs{0};
    std::atomic<std::uint64_t> log_durable_lsn{0};
    std::atomic<std::uint64_t> heartbeats{0};
    std::atomic<std::uint64_t> retained_wal_alarm_bytes{0}; // threshold; 0: off
    // From the stream and the database probe.
    std::atomic<bool> db_up{false};
    std::atomic<bool> stream_connected{false};
    std::atomic<std::uint64_t> stream_reconnects{0};
    std::atomic<std::uint64_t> received_lsn{0};
    std::atomic<std::uint64_t> flushed_lsn{0};
    std::atomic<std::uint64_t> server_lsn{0}; // pg_current_wal_lsn() at the last probe
    std::atomic<std::uint64_t> slot_confirmed_lsn{0};
    std::atomic<std::int64_t> last_commit_time_us{0}; // of the last transaction handled (Unix)
    std::atomic<bool> slot_ok{false};
    std::atomic<std::uint64_t> slot_restart_lsn{0};
    std::atomic<bool> stream_paused{false}; // not reading: the change log cannot keep up
    // The change log's writer: 0 ok, 1 stalled (retrying a failed write), 2 failed (a sync).
    std::atomic<int> log_state{0};
    std::atomic<std::uint64_t> log_stalls{0};
    // Tables of the rules the publication does not carry (altered from outside), and how often
    // a table was found missing (each a hole in its history).
    std::atomic<std::uint64_t> publication_missing_tables{0};
    std::atomic<std::uint64_t> publication_gaps{0};
    // Lookups: results that changed (a subscriber's key), and subscriptions reset by one.
    std::atomic<std::uint64_t> lookup_changes{0};
    std::atomic<std::uint64_t> lookup_resets{0};

    // Client connections (HTTP and WebSocket sockets) against the listener's limit.
    std::atomic<std::uint64_t> connection_limit{0};
    std::atomic<std::int64_t> tcp_connections{0};
    std::atomic<std::uint64_t> connections_evicted{0}; // idle HTTP connections closed for room
    std::atomic<std::uint64_t> accept_paused_fds{0};   // accept failed: descriptors or memory
    std::atomic<std::uint64_t> accept_paused_limit{0}; // at the limit with nothing to evict
    std::atomic<std::uint64_t> accept_paused_error{0}; // any other accept error
    std::array<std::atomic<std::uint64_t>, refusal_count> refused{};

    void count_refused(refusal r) { ++refused[static_cast<std::size_t>(r)]; }
    void count_error(const std::string& code); // errors sent to clients, by code
    void count_table_change(const std::string& table);

    std::string prometheus() const;

private:
    mutable std::mutex mu_;
    std::map<std::string, std::uint64_t> errors_;
    std::map<std::string, std::uint64_t> table_changes_;
};

} // namespace pgpush::push
