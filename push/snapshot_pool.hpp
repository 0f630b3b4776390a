#pragma once

// Threads that take subscriptions' initial snapshots on their own database connections, so that
// a slow or large snapshot never holds up the stream or other clients.
//
// For each job: BEGIN REPEATABLE READ READ ONLY; read pg_current_snapshot() and
// pg_current_wal_insert_lsn(); stream the rows through a cursor in chunks, waiting for the client
// to drain its queue between chunks; COMMIT; then emit the logical message "sync:<key>" (prefix
// "pgpush") so the hub learns when the stream has passed the snapshot.
//
// The race this closes: a transaction can be decoded and streamed a moment before it stops being
// "in progress" to new snapshots (its commit record is written before the proc array is updated).
// If such a transaction was streamed before the subscription was registered, neither the stream
// nor the snapshot would give it to the subscriber. So the job carries the xids the hub streamed
// just before registering, and a snapshot listing one of them as in progress is taken again.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "cdc/lsn.hpp"
#include "cdc/pgoutput.hpp"
#include "push/client.hpp"
#include "push/metrics.hpp"
#include "push/protocol.hpp"

namespace pgpush::push {

struct snapshot_meta {
    bool taken = false; // false: no snapshot (subscribe without one): it contains nothing
    std::uint64_t xmin = 0;
    std::uint64_t xmax = 0;
    std::vector<std::uint64_t> xip; // sorted
    cdc::lsn lsn;                   // pg_current_wal_insert_lsn() inside the snapshot

    // Whether a transaction (its 32-bit xid, as the stream gives it) committed before the
    // snapshot was taken, i.e. the snapshot already contains its changes.
    bool contains(cdc::transaction_id xid) const;
};

struct snapshot_result {
    std::uint64_t key = 0;
    bool ok = false;
    protocol::error_code code = protocol::error_code::internal;
    std::string message; // for the client: never SQL, never a server's internal error text
    snapshot_meta meta;
    std::size_t row_count = 0;
    // collect jobs: the rows themselves, each column's text (nullopt: NULL).
    std::vector<std::vector<std::optional<std::string>>> rows;
};

struct snapshot_job {
    std::uint64_t key = 0;
    std::shared_ptr<const std::string> id;
    std::weak_ptr<client> to;
    bool with_rows = true; // false: subscribe without a snapshot (only the sync message)
    // The rows come back in the result (snapshot_result::rows) instead of going to a client: a
    // lookup table being loaded. Paced by nobody; bounded by max_rows.
    bool collect = false;
    std::string sql; // SELECT ... (columns and filter rendered by rules/)
    std::vector<std::string> params;
    std::vector<std::string> column_names;
    std::vector<cdc::oid> column_types;
    std::size_t max_rows = 100'000;
    std::vector<cdc::transaction_id> recent_xids; // sorted
    std::function<void(snapshot_result)> done;    // called on the worker thread
};

// Where the hub sends snapshot jobs (the pool; a fake in unit tests).
class snapshot_runner {
public:
    virtual ~snapshot_runner() = default;
    virtual void submit(snapshot_job job) = 0;
    // The subscription is gone: stop its snapshot now (the query is cancelled, the transaction
    // rolled back, so it holds no snapshot and no xmin horizon). `done` is not called.
    virtual void cancel(std::uint64_t key) = 0;
};

struct snapshot_options {
    std::size_t workers = 4;
    std::size_t chunk_rows = 500;
    std::size_t window_bytes = 256 * 1024; // a snapshot runs at most this far ahead of its client
    // The longest a snapshot may take, waiting for its client included: a client that stops
    // reading cannot keep a REPEATABLE READ transaction (and the xmin horizon) open for ever.
    std::chrono::milliseconds timeout{120'000};
};

class snapshot_pool final : public snapshot_runner {
public:
    snapshot_pool(std::string conninfo, snapshot_options options, metrics& m);
    ~snapshot_pool() override; // stop()

    void submit(snapshot_job job) override;
    void cancel(std::uint64_t key) override;
    // Cancels every job and joins the workers. Idempotent.
    void stop();

private:
    struct worker;
    void run(worker& w);
    snapshot_result take(snapshot_job& job, worker& w);

    std::string conninfo_;
    snapshot_options options_;
    metrics& metrics_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<snapshot_job> jobs_;
    bool stopping_ = false;
    std::vector<std::unique_ptr<worker>> workers_;
    std::vector<std::thread> threads_;
};

} // namespace pgpush::push
