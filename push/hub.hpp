#pragma once

// The hub: where changes meet subscriptions. It runs on the replication stream's thread and owns
// everything that thread touches: the subscriptions, the matcher, table schemas, type catalog.
// Sessions talk to it by posting to its executor; it talks to them by posting frames.
//
// A subscription's life:
//  1. planned (rules + claims + query), registered in the matcher at once: from here on every
//     matching change is buffered for it;
//  2. a snapshot worker takes a REPEATABLE READ snapshot, sends the rows, and emits a logical
//     "sync" message after it; the snapshot's xmin/xmax/xip and WAL position come back here;
//  3. buffered changes the snapshot already contains (committed before it) are dropped; when the
//     stream reaches the sync message, every transaction the snapshot could contain has passed:
//     the rest of the buffer is sent, then `ready` with the sync message's position, and the
//     subscription is live. No change is missed or sent twice (docs/protocol.md has the proof).

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <nlohmann/json.hpp>

#include "cdc/change.hpp"
#include "cdc/notify_listener.hpp"
#include "cdc/type_catalog.hpp"
#include "log/change_log.hpp"
#include "push/client.hpp"
#include "push/metrics.hpp"
#include "push/protocol.hpp"
#include "rules/matcher.hpp"
#include "rules/plan.hpp"

namespace pgpush::push {

class snapshot_pool;
struct snapshot_result;

struct hub_limits {
    std::size_t max_subscriptions_per_connection = 100;
    std::size_t max_buffered_bytes = 16 * 1024 * 1024; // per subscription while its snapshot runs
    std::size_t snapshot_max_rows = 100'000;
    std::size_t replay_batch = 1000;           // changes read from the log per turn of the loop
    std::size_t replay_pause_bytes = 1u << 20; // a replay waits while its client has this queued
    // A `transaction` message holds at most this many changes, or about this many bytes of them:
    // a larger transaction goes out in several messages, so no subscription holds a whole one.
    std::size_t batch_max_changes = 5000;
    std::size_t batch_max_bytes = 1u << 20;
};

class hub final : public cdc::change_sink {
public:
    // `describe` reads a table's live columns (blocking; cached); nullopt when it does not exist.
    using describe_fn = std::function<std::optional<rules::table_schema>(
        const std::string& table, std::vector<cdc::oid>& types)>;

    hub(boost::asio::any_io_executor executor, cdc::type_catalog& types, metrics& m,
        snapshot_pool& snapshots, describe_fn describe, hub_limits limits);
    ~hub() override;

    const boost::asio::any_io_executor& executor() const { return executor_; }

    // Called from the stream (hub thread) to confirm what has been handed over. Not used when
    // there is a change log: the log confirms what it has made durable.
    std::function<void(cdc::lsn)> confirm;

    // The durable change log (optional, before any traffic): every change is appended before it
    // is matched, and `subscribe` with `after` replays from it. Positions sent to clients carry
    // the log's epoch, so a position from a log that lost its history is refused, never trusted.
    void set_log(log::change_log* log);

    // ---- from sessions, on the hub's executor ----
    struct subscribe_request {
        std::weak_ptr<client> to;
        std::uint64_t connection = 0;
        std::shared_ptr<const std::string> id; // JSON text
        std::string query;
        std::vector<nlohmann::json> params;
        bool snapshot = true;
        std::optional<std::string> after; // resume: replay from the log, no snapshot
        std::shared_ptr<const nlohmann::json> claims;
        bool transactions = false; // each transaction's changes as one message
    };
    void subscribe(subscribe_request request);
    // `to` hears `unknown_id` when the id is neither a subscription nor a listen.
    void unsubscribe(std::uint64_t connection, const std::string& id,
                     std::weak_ptr<client> to = {});
    void listen(std::weak_ptr<client> to, std::uint64_t connection,
                std::shared_ptr<const std::string> id, const std::string& channel,
                std::shared_ptr<const nlohmann::json> claims);
    void unlisten(std::uint64_t connection, const std::string& id, std::weak_ptr<client> to = {});
    void disconnect(std::uint64_t connection);
    // New claims for a connection (a fresh token): every subscription is planned again with them.
    void reauthenticate(std::uint64_t connection, std::shared_ptr<const nlohmann::json> claims);
    // New rules: every subscription is planned again; those whose result may differ end with
    // resync_required, those no longer allowed with forbidden.
    void set_rules(std::shared_ptr<const rules::rule_set> rules);

    // ---- from the snapshot pool ----
    void snapshot_done(snapshot_result result);

    // ---- from the replication stream (change_sink) ----
    void on_begin(const cdc::transaction_info& t) override;
    void on_change(const cdc::change& c) override;
    void on_message(const cdc::logical_message& m) override;
    void on_commit(const cdc::transaction_info& t, cdc::lsn end_lsn) override;
    void on_relation(const cdc::relation_schema& r) override;
    void on_idle() override;
    void on_stop() override;

    // ---- from the NOTIFY listener ----
    void on_notify(const cdc::notification& n);

    // Channels the rules name (the listener LISTENs on them).
    std::vector<std::string> channels() const;

    std::size_t subscription_count() const { return subs_.size(); }

private:
    struct subscription;
    struct table_state;
    struct listener_entry;

    std::optional<protocol::error_code> plan(subscription& s, std::string& message);
    void start_snapshot(subscription& s);
    void try_go_live(subscription& s);
    void start_replay(subscription& s, cdc::position after);
    void replay_step(std::uint64_t key);
    void replay_one(subscription& s, const cdc::change& c);
    // A live change for one subscription, by its phase (see hub.cpp).
    void deliver(subscription& s, std::string_view type, std::shared_ptr<const std::string> body,
                 const cdc::change& c);
    // An event to the client: one message, or into its transaction batch.
    void emit(subscription& s, std::string_view type, std::shared_ptr<const std::string> body,
              cdc::position pos);
    void send_ready(subscription& s, cdc::position at);
    const std::string& commit_time_json(const cdc::change& c);
    std::shared_ptr<const std::string> truncate_body(const cdc::change& c);
    // Fills new_values_/old_values_ for `columns` of a change; false when it has no old row to
    // match (an update without REPLICA IDENTITY FULL), see on_change.
    void load_values(const cdc::change& c, const table_state& ts,
                     std::span<const std::size_t> columns);
    std::shared_ptr<const std::string> event_body(const cdc::change& c,
                                                  const std::vector<std::size_t>& columns,
                                                  rules::event_kind event);
    std::string position_text(cdc::position p) const;
    // "transactions" subscriptions: a change joins the subscription's batch; the batch goes out
    // first when the change is of another transaction (last) or the batch is full (not last).
    void batch_add(subscription& s, std::string_view type, std::shared_ptr<const std::string> body,
                   cdc::position pos);
    void batch_send(subscription& s, bool last);
    // The subscription's snapshot or replay is over: its batch stays open when the stream is inside
    // that very transaction (the rest of it comes live), and then `ready` waits for the commit.
    void batch_go_live(subscription& s, cdc::position ready_at);
    void drop(std::uint64_t key, std::optional<protocol::error_code> code,
              const std::string& message);
    void send(const std::weak_ptr<client>& to, frame f);
    void send_error(const std::weak_ptr<client>& to, protocol::error_code code,
                    const std::string& message, const std::string& id);
    void flush();
    table_state* table_for(const std::string& name);
    std::uint64_t key_of(std::uint64_t connection, const std::string& id) const;

    boost::asio::any_io_executor executor_;
    cdc::type_catalog& types_;
    metrics& metrics_;
    snapshot_pool& snapshots_;
    describe_fn describe_;
    hub_limits limits_;
    std::shared_ptr<const rules::rule_set> rules_;
    rules::matcher matcher_;
    log::change_log* log_ = nullptr;
    std::string epoch_prefix_ = "0000000000000000/"; // no log: epoch 0, nothing can resume

    std::uint64_t next_key_ = 1;
    std::unordered_map<std::uint64_t, std::unique_ptr<subscription>> subs_;
    std::unordered_map<std::uint64_t, std::unordered_map<std::string, std::uint64_t>>
        by_connection_;
    std::unordered_map<std::string, std::unique_ptr<table_state>> tables_;
    std::unordered_map<std::string, std::vector<std::unique_ptr<listener_entry>>>
        listeners_; // by channel

    // Frames of the current transaction, per client, sent at commit (one post per client).
    struct pending {
        std::weak_ptr<client> to;
        std::vector<frame> frames;
    };
    std::unordered_map<const client*, pending> pending_;
    std::size_t pending_frames_ = 0;
    // Subscriptions that may hold an open batch: on_commit closes those of its transaction.
    std::vector<std::uint64_t> open_batches_;

    // The last transactions handed over (xids), for the snapshot race (see snapshot_pool).
    std::vector<cdc::transaction_id> recent_xids_;
    std::size_t recent_next_ = 0;

    // The transaction being handled, for buffering decisions.
    const cdc::transaction_info* txn_ = nullptr;
    std::string commit_time_json_; // of the transaction committing at commit_time_of_
    cdc::lsn commit_time_of_;
    std::vector<std::size_t> all_columns_; // 0..n-1, for replays
    std::vector<rules::hit> hits_;
    std::vector<rules::value> new_values_, old_values_;
};

} // namespace pgpush::push
