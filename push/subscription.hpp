#pragma once

// One live query of one connection, and the phase it is in:
//
//   snapshot: a worker reads the rows; live changes are buffered unless the snapshot already
//             holds them; at the stream's sync marker the buffer goes out, then `ready` (live).
//   replay:   resuming after a position: the change log is read in batches; live changes skip it
//             (it reads them from the log); at the log's end it is live, with no hand-over gap.
//   live:     every matching change is sent (one event, or into its transaction's batch).
//
// A subscription sends only through the outbox it is given and decides nothing about other
// subscriptions; the hub routes changes to it and owns its life.

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "cdc/change.hpp"
#include "push/client.hpp"
#include "push/event_json.hpp"
#include "push/frame.hpp"
#include "push/log_source.hpp"
#include "push/outbox.hpp"
#include "push/snapshot_pool.hpp"
#include "rules/plan.hpp"

namespace pgpush::push {

// A subscribe as the hub receives it from a session.
struct new_subscription {
    std::weak_ptr<client> to;
    std::uint64_t connection = 0;
    std::shared_ptr<const std::string> id; // JSON text
    std::string query;
    std::vector<nlohmann::json> params;
    bool with_snapshot = true;
    std::optional<std::string> after; // resume: replay from the log, no snapshot
    std::shared_ptr<const nlohmann::json> claims;
    bool transactions = false; // each transaction's changes as one message
};

// How large a `transaction` message may grow: a larger transaction goes out in several messages
// (`last` false on all but the final one), so no subscription holds a whole one.
struct batch_limits {
    std::size_t max_changes = 5000;
    std::size_t max_bytes = 1u << 20;
};

struct subscription {
    enum class phase { snapshot, replay, live };

    std::uint64_t key = 0;
    std::uint64_t connection = 0;
    std::shared_ptr<const std::string> id;
    std::weak_ptr<client> to;
    std::string query;
    std::vector<nlohmann::json> params;
    bool with_snapshot = true;
    bool transactions = false;
    std::shared_ptr<const nlohmann::json> claims;
    rules::subscription_plan plan;
    phase state = phase::snapshot;
    bool dropped = false; // ended during a fan-out; freed after it
    // The lookup results its plan read: (lookup name, subscriber key). When one changes, the
    // subscription is planned again and, if its result may differ, reset.
    std::vector<std::pair<std::string, std::string>> lookups;
    std::string pending_lookup; // planning waits for this lookup to be in memory

    // ---- snapshot ----
    std::uint64_t snapshot_key = 0; // of the snapshot job under way (its sync marker's number)
    bool rows_done = false;
    bool sync_seen = false;
    cdc::position sync_position;
    bool have_meta = false;
    snapshot_meta meta;
    struct buffered {
        frame f;
        cdc::transaction_id xid;
        cdc::lsn commit_lsn;
        std::string_view type; // of the event, for a transaction message
        cdc::position pos;
    };
    std::vector<buffered> buffer;
    std::size_t buffer_bytes = 0;

    // ---- replay ----
    // A resumed subscription never gets a change at or before the position it resumed after.
    cdc::position resume_after;
    std::unique_ptr<log_cursor> cursor;
    // The replay met the log's written end while more was appended (the writer is between
    // writes): it reads on to `tail_until` only, and live changes after it are buffered (in
    // `buffer`) instead of skipped, so it can go live without chasing a moving end.
    bool tailing = false;
    cdc::position tail_until;

    // ---- "transactions": the changes of one transaction not sent yet (same commit LSN) ----
    struct batch_entry {
        std::string_view type;
        std::shared_ptr<const std::string> body;
        cdc::position pos;
    };
    std::vector<batch_entry> batch;
    std::size_t batch_bytes = 0;
    bool batch_listed = false; // in the hub's list of open batches
    // Went live inside the batch's transaction: `ready` follows the batch's last message, so the
    // client never holds a position past changes it has not received.
    std::optional<cdc::position> ready_after_batch;

    // Whether the snapshot's rows already hold this transaction's changes.
    bool snapshot_has(cdc::transaction_id xid, cdc::lsn commit_lsn) const {
        return have_meta && commit_lsn < meta.lsn && meta.contains(xid);
    }

    // What the client's copy is a result of: when a new plan differs, the copy may be wrong.
    std::string shape() const;

    // An event to the client: one message, or into the transaction batch. True when that opened
    // a batch the hub must list (it closes open batches at commit).
    bool emit(outbox& out, const batch_limits& limits, std::string_view type,
              std::shared_ptr<const std::string> body, cdc::position pos,
              const position_format& positions);
    // Sends the batch: `last` when the transaction is complete.
    void send_batch(outbox& out, bool last, const position_format& positions);
    void send_ready(outbox& out, cdc::position at, const position_format& positions);

    // Buffers a live change while the snapshot is taken. False when the buffer is over `limit`
    // bytes (the subscription must end: its client resubscribes).
    bool buffer_change(frame f, const cdc::transaction_info& txn, std::string_view type,
                       cdc::position pos, std::size_t limit);
    // Snapshot rows are all sent and the stream passed the sync marker: the buffer goes out,
    // `ready` at the sync position, and the subscription is live. `streaming` is the transaction
    // the stream is inside now, if any. Returns the number of buffered events sent and whether a
    // batch was opened (as emit).
    std::pair<std::size_t, bool> go_live_after_snapshot(outbox& out, const batch_limits& limits,
                                                        const cdc::transaction_info* streaming,
                                                        const position_format& positions);
    // A replay reached `ready_at`: `ready`, then the live changes buffered while it caught up
    // with the log's tail. Returns the number of buffered events sent and whether a batch was
    // opened (as emit).
    std::pair<std::size_t, bool> go_live_after_replay(outbox& out, const batch_limits& limits,
                                                      cdc::position ready_at,
                                                      const cdc::transaction_info* streaming,
                                                      const position_format& positions);
    // A replay or snapshot is over at `ready_at`: with batches, `ready` waits for the batch of a
    // transaction the stream is still inside.
    void go_live(outbox& out, cdc::position ready_at, const cdc::transaction_info* streaming,
                 const position_format& positions);
};

} // namespace pgpush::push
