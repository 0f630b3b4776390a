#pragma once

// The hub: where changes meet subscriptions. It runs on the replication stream's thread and
// routes: sessions ask it (by posting to its executor) to subscribe, listen and so on; the stream
// hands it every change, which it logs, matches (rules::matcher) and turns into one JSON body
// per distinct projection; the parts do the rest:
//
//   subscription     one live query and its phase (snapshot / replay / live), its batches
//   schema_cache     the tables it serves, described off-thread on first use
//   replayer         resumes from the change log
//   listen_registry  NOTIFY listens
//   outbox           frames to connections, one post per I/O thread
//   event_json       event bodies (pure)
//
// The parts never call back into the hub; it hands each what it needs.
//
// A subscription's life with a snapshot:
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
#include <map>
#include <memory>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <nlohmann/json.hpp>

#include "cdc/change.hpp"
#include "cdc/notify_listener.hpp"
#include "cdc/type_catalog.hpp"
#include "push/client.hpp"
#include "push/event_json.hpp"
#include "push/listen_registry.hpp"
#include "push/log_source.hpp"
#include "push/lookup_table.hpp"
#include "push/metrics.hpp"
#include "push/outbox.hpp"
#include "push/protocol.hpp"
#include "push/replayer.hpp"
#include "push/schema_cache.hpp"
#include "push/snapshot_pool.hpp"
#include "push/subscription.hpp"
#include "rules/matcher.hpp"
#include "rules/plan.hpp"

namespace pgpush::push {

struct hub_limits {
    std::size_t max_subscriptions_per_connection = 100;
    std::size_t max_buffered_bytes = 16 * 1024 * 1024; // per subscription while its snapshot runs
    std::size_t snapshot_max_rows = 100'000;
    std::size_t replay_batch = 1000;           // changes read from the log per turn of the loop
    std::size_t replay_pause_bytes = 1u << 20; // a replay waits while its client has this queued
    batch_limits batch;
    std::size_t lookup_max_rows = 10'000'000; // per lookup table loaded into memory
};

// What the hub reports of a lookup (for /healthz and /metrics).
struct lookup_status {
    std::string name;
    std::string state; // describing, loading, ready, failed
    std::size_t rows = 0;
    std::size_t keys = 0;
    std::string problem; // why it failed
};

class hub final : public cdc::change_sink {
public:
    hub(boost::asio::any_io_executor executor, cdc::type_catalog& types, metrics& m,
        snapshot_runner& snapshots, table_describer& describer, hub_limits limits);
    ~hub() override;

    const boost::asio::any_io_executor& executor() const { return executor_; }

    // Without a change log: confirms what has been handed over (called on the hub's thread).
    // With one, the log confirms what it has made durable and this is not used.
    std::function<void(cdc::lsn)> confirm;
    // Runs when the stream stops on purpose, before its last status update: the engine makes the
    // change log durable and confirms it there.
    std::function<void()> on_stopping;

    // The durable change log (optional, before any traffic): every change is appended before it
    // is matched, and `subscribe` with `after` replays from it. Positions sent to clients carry
    // the log's epoch, so a position from a log that lost its history is refused, never trusted.
    void set_log(log_source* log);

    // ---- from sessions, on the hub's executor ----
    void subscribe(new_subscription request);
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

    // ---- from the engine's publication checks ----
    // The tables the rules serve that the publication does not carry now. Changes to them are not
    // streamed, so a table newly in the set has a hole in its history: its subscriptions end
    // with resync_required, a gap is logged (resumes from before it resync), and subscribing to
    // it answers `unavailable` until it is published again.
    void set_unpublished(std::set<std::string> tables);
    const std::set<std::string>& unpublished() const { return unpublished_; }

    // ---- from the snapshot workers ----
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

    // Channels the rules name (the NOTIFY listener LISTENs on them).
    std::vector<std::string> channels() const;

    std::size_t subscription_count() const { return subs_.size(); }

    // The lookups of the rules in force and how they stand.
    std::vector<lookup_status> lookups() const;
    // Runs `f` once every lookup of the rules is ready (or failed); at once when they are.
    void when_lookups_settled(std::function<void()> f);

private:
    struct lookup_state;
    void subscribe_planned(new_subscription request, bool described);
    rules::lookup_resolver resolver(const nlohmann::json& claims,
                                    std::vector<std::pair<std::string, std::string>>& read,
                                    std::string& not_ready);
    void track(subscription& s);
    void untrack(subscription& s);
    // ---- lookups ----
    void sync_lookups(); // after new rules: load new or changed lookups, forget removed ones
    void load_lookup(const std::string& name);
    void lookup_snapshot_done(snapshot_result r);
    void try_lookup_ready(lookup_state& st);
    void lookup_failed(lookup_state& st, const std::string& why, protocol::error_code code);
    void apply_lookup_change(lookup_state& st, const cdc::change& c);
    // A lookup result the subscription reads changed at `at`: plan it again; if what it may see
    // differs, its client gets `reset` and a fresh snapshot stitched to the stream.
    void rebind(std::uint64_t key, cdc::position at);
    void restart_snapshot(subscription& s, cdc::position at);
    void settle_check();
    std::optional<protocol::error_code> plan(subscription& s, std::string& message,
                                             std::string* undescribed = nullptr);
    void start_snapshot(subscription& s);
    void try_go_live(subscription& s);
    void start_replay(subscription& s, cdc::position after);
    void replay_step(std::uint64_t key);
    // A live change for one subscription, by its phase.
    void route(subscription& s, std::string_view type, std::shared_ptr<const std::string> body,
               const cdc::change& c);
    void emit(subscription& s, std::string_view type, std::shared_ptr<const std::string> body,
              cdc::position pos);
    // Ends a subscription (with an error to its client when `code` is set). During a fan-out it
    // is only marked and unregistered; it is freed when the fan-out is over.
    void drop(std::uint64_t key, std::optional<protocol::error_code> code,
              const std::string& message);
    void reap();
    void send_error(const std::weak_ptr<client>& to, protocol::error_code code,
                    const std::string& message, const std::string& id);
    void write_pending_gaps();
    std::uint64_t key_of(std::uint64_t connection, const std::string& id) const;

    boost::asio::any_io_executor executor_;
    cdc::type_catalog& types_;
    metrics& metrics_;
    snapshot_runner& snapshots_;
    hub_limits limits_;
    schema_cache schemas_;
    event_json events_;
    replayer replayer_;
    listen_registry listens_;
    outbox out_;
    std::shared_ptr<const rules::rule_set> rules_;
    rules::matcher matcher_;
    log_source* log_ = nullptr;

    std::uint64_t next_key_ = 1;
    std::unordered_map<std::uint64_t, std::unique_ptr<subscription>> subs_;
    std::unordered_map<std::uint64_t, std::unordered_map<std::string, std::uint64_t>>
        by_connection_;
    // Subscriptions that may hold an open batch: on_commit closes those of its transaction.
    std::vector<std::uint64_t> open_batches_;
    // Ended during a fan-out, freed after it (the fan-out may still hold references).
    bool in_fanout_ = false;
    std::vector<std::uint64_t> graveyard_;

    std::map<std::string, std::unique_ptr<lookup_state>, std::less<>> lookups_; // by name
    std::map<std::string, std::vector<std::string>, std::less<>> lookups_by_table_;
    // (lookup, key) -> subscriptions whose plan read that result; and when it last changed.
    std::map<std::pair<std::string, std::string>, std::set<std::uint64_t>> dependents_;
    std::map<std::pair<std::string, std::string>, cdc::position> changed_at_;
    std::unordered_map<std::uint64_t, std::uint64_t> sub_snapshots_;  // snapshot key -> sub
    std::unordered_map<std::uint64_t, std::string> lookup_snapshots_; // snapshot key -> lookup
    std::vector<std::function<void()>> on_settled_;

    std::set<std::string> unpublished_;
    std::vector<std::string> pending_gaps_; // logged at the next transaction boundary
    cdc::lsn last_end_lsn_;                 // of the last transaction (or mark) handed over

    // The last transactions handed over (xids), for the snapshot race (see snapshot_pool).
    std::vector<cdc::transaction_id> recent_xids_;
    std::size_t recent_next_ = 0;

    // The transaction being handled, for buffering decisions.
    const cdc::transaction_info* txn_ = nullptr;
    std::vector<rules::hit> hits_;
    std::vector<rules::value> new_values_, old_values_;
};

} // namespace pgpush::push
