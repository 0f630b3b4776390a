#pragma once

// Counters and gauges for /metrics (Prometheus text format). Updated with relaxed atomics from
// any thread; per-table and per-code counters live behind a mutex (they change rarely).

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>

namespace pgpush::push {

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

    void count_error(const std::string& code); // errors sent to clients, by code
    void count_table_change(const std::string& table);

    std::string prometheus() const;

private:
    mutable std::mutex mu_;
    std::map<std::string, std::uint64_t> errors_;
    std::map<std::string, std::uint64_t> table_changes_;
};

} // namespace pgpush::push
