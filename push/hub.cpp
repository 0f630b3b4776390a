#include "push/hub.hpp"

#include <algorithm>
#include <charconv>

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <spdlog/spdlog.h>

#include "cdc/pg_async.hpp"
#include "cdc/pg_time.hpp"
#include "push/schema.hpp"

namespace pgpush::push {

namespace net = boost::asio;
using protocol::error_code;

namespace {

constexpr std::size_t recent_capacity = 4096;

rules::change_kind kind_of(cdc::change_op op) {
    return op == cdc::change_op::insert   ? rules::change_kind::insert
           : op == cdc::change_op::update ? rules::change_kind::update
                                          : rules::change_kind::delete_;
}

} // namespace

// A lookup of the rules, on its way to memory or there.
struct hub::lookup_state {
    std::string name;
    std::string signature; // the rule as written: a changed definition is loaded afresh
    enum class phase { describing, loading, ready, failed } state = phase::describing;
    std::unique_ptr<lookup_table> table;
    std::uint64_t snapshot_key = 0;
    // Changes to the table streamed while its snapshot is taken (owned copies: a change borrows
    // from the stream's buffer).
    struct owned_change {
        cdc::change_op op = cdc::change_op::insert;
        std::shared_ptr<const cdc::relation_schema> relation;
        std::optional<std::vector<std::pair<cdc::pgoutput::datum_kind, std::string>>> row, old;
        cdc::pgoutput::old_kind old_kind = cdc::pgoutput::old_kind::none;
        cdc::position pos;
        cdc::transaction_info txn;
    };
    std::vector<owned_change> buffer;
    bool rows_done = false;
    bool sync_seen = false;
    cdc::position sync_position;
    snapshot_meta meta;
    cdc::position ready_at; // its history in memory starts here: resumes from before resync
    std::string problem;
    std::vector<std::function<void()>> waiting; // subscribes parked until it is ready
};

namespace {

std::string signature_of(const rules::lookup_rule& r) {
    std::string s = r.table + "|" + r.output + "|" + r.key_column + "|";
    for (const auto& p : r.claim_path)
        s += p + ".";
    if (r.filter) s += "|" + rules::to_string(*r.filter);
    return s;
}

std::string_view phase_name(int p) {
    static constexpr std::string_view names[] = {"describing", "loading", "ready", "failed"};
    return names[p];
}

} // namespace

hub::hub(net::any_io_executor executor, cdc::type_catalog& types, metrics& m,
         snapshot_runner& snapshots, table_describer& describer, hub_limits limits)
    : executor_(std::move(executor)), types_(types), metrics_(m), snapshots_(snapshots),
      limits_(limits), schemas_(types, describer), events_(types, position_format(0)),
      replayer_(events_, m, limits.batch), listens_(m), recent_xids_(recent_capacity, 0) {}

hub::~hub() = default;

void hub::set_log(log_source* log) {
    log_ = log;
    events_.set_positions(position_format(log ? log->epoch() : 0));
}

std::uint64_t hub::key_of(std::uint64_t connection, const std::string& id) const {
    auto c = by_connection_.find(connection);
    if (c == by_connection_.end()) return 0;
    auto it = c->second.find(id);
    return it == c->second.end() ? 0 : it->second;
}

void hub::send_error(const std::weak_ptr<client>& to, error_code code, const std::string& message,
                     const std::string& id) {
    metrics_.count_error(std::string(protocol::to_string(code)));
    out_.send(to, frame::of(protocol::error(code, message, id)));
}

rules::lookup_resolver hub::resolver(const nlohmann::json& claims,
                                     std::vector<std::pair<std::string, std::string>>& read,
                                     std::string& not_ready) {
    return
        [this, &claims, &read, &not_ready](const rules::lookup_rule& r) -> const nlohmann::json* {
            auto it = lookups_.find(r.name);
            if (it == lookups_.end() || it->second->state != lookup_state::phase::ready) {
                not_ready = r.name;
                return nullptr;
            }
            auto& table = *it->second->table;
            auto key = table.key_of(claims);
            // A subscriber without a key (no such claim, or one its type refuses) has no result: as
            // a missing array claim, it denies (`not in` too), and it never changes.
            if (!key) return nullptr;
            read.emplace_back(r.name, *key);
            return &table.result(key);
        };
}

std::optional<error_code> hub::plan(subscription& s, std::string& message,
                                    std::string* undescribed) {
    if (!rules_) {
        message = "no rules are loaded";
        return error_code::unavailable;
    }
    auto lookup = [&](std::string_view t) -> const rules::table_schema* {
        auto* ts = schemas_.find(std::string(t));
        if (!ts && undescribed) *undescribed = std::string(t);
        return ts ? &ts->schema : nullptr;
    };
    static const nlohmann::json no_claims = nlohmann::json::object();
    std::vector<std::pair<std::string, std::string>> read;
    std::string not_ready;
    auto r = rules::plan_subscription(rules_, {s.query, s.claims.get(), s.params}, lookup,
                                      resolver(s.claims ? *s.claims : no_claims, read, not_ready));
    if (auto* e = std::get_if<rules::plan_error>(&r)) {
        message = e->message;
        return error_code_of(e->code);
    }
    if (!not_ready.empty()) {
        // Never a silent deny: a plan that read a lookup not in memory yet waits for it.
        auto it = lookups_.find(not_ready);
        const bool failed =
            it == lookups_.end() || it->second->state == lookup_state::phase::failed;
        message = !failed ? "lookup." + not_ready + " is loading"
                  : it == lookups_.end()
                      ? "lookup." + not_ready + " is not known"
                      : "lookup." + not_ready + " cannot be used: " + it->second->problem;
        s.lookups.clear();
        s.pending_lookup = failed ? "" : not_ready;
        return error_code::unavailable;
    }
    std::sort(read.begin(), read.end());
    read.erase(std::unique(read.begin(), read.end()), read.end());
    s.lookups = std::move(read);
    s.pending_lookup.clear();
    s.plan = std::move(std::get<rules::subscription_plan>(r));
    return std::nullopt;
}

void hub::track(subscription& s) {
    for (const auto& dep : s.lookups)
        dependents_[dep].insert(s.key);
}

void hub::untrack(subscription& s) {
    for (const auto& dep : s.lookups) {
        auto it = dependents_.find(dep);
        if (it == dependents_.end()) continue;
        it->second.erase(s.key);
        if (it->second.empty()) dependents_.erase(it);
    }
}

// ---- subscribing ----

void hub::subscribe(new_subscription r) {
    subscribe_planned(std::move(r), false);
}

void hub::subscribe_planned(new_subscription r, bool described) {
    if (r.to.expired()) return; // the connection went away while its table was described
    const std::string& id = *r.id;
    if (key_of(r.connection, id) != 0 || listens_.has(r.connection, id)) {
        send_error(r.to, error_code::duplicate_id,
                   "id " + id + " is already in use on this connection", id);
        out_.flush();
        return;
    }
    const auto mine = by_connection_.find(r.connection);
    const std::size_t count = mine == by_connection_.end() ? 0 : mine->second.size();
    if (count >= limits_.max_subscriptions_per_connection) {
        send_error(r.to, error_code::too_many_subscriptions,
                   "at most " + std::to_string(limits_.max_subscriptions_per_connection) +
                       " subscriptions per connection",
                   id);
        out_.flush();
        return;
    }
    auto s = std::make_unique<subscription>();
    s->connection = r.connection;
    s->id = r.id;
    s->to = r.to;
    s->query = r.query;
    s->params = r.params;
    s->with_snapshot = r.with_snapshot;
    s->transactions = r.transactions;
    s->claims = r.claims;
    std::string message, undescribed;
    if (auto code = plan(*s, message, described ? nullptr : &undescribed)) {
        if (!undescribed.empty()) {
            // The table is not described yet: ask the catalog (off this thread) and come back.
            auto parked = std::make_shared<new_subscription>(std::move(r));
            schemas_.fetch(undescribed, [this, parked](const std::string* error) {
                if (error) {
                    send_error(parked->to, error_code::unavailable,
                               "the database is unreachable; try again", *parked->id);
                    out_.flush();
                    return;
                }
                subscribe_planned(std::move(*parked), true);
            });
            return;
        }
        if (!s->pending_lookup.empty()) {
            // A lookup it reads is loading: come back when it is in memory.
            auto parked = std::make_shared<new_subscription>(std::move(r));
            lookups_.at(s->pending_lookup)->waiting.push_back([this, parked, described] {
                subscribe_planned(std::move(*parked), described);
            });
            return;
        }
        send_error(r.to, *code, message, id);
        out_.flush();
        return;
    }
    if (unpublished_.count(s->plan.table)) {
        send_error(r.to, error_code::unavailable,
                   "changes of " + s->plan.table +
                       " are not being streamed right now (it is missing from the publication); "
                       "try again later",
                   id);
        out_.flush();
        return;
    }
    if (s->plan.rule->max_subscriptions && mine != by_connection_.end()) {
        std::size_t same_table = 0;
        for (const auto& [sid, key] : mine->second) {
            auto it = subs_.find(key);
            if (it != subs_.end() && it->second->plan.table == s->plan.table) ++same_table;
        }
        if (same_table >= *s->plan.rule->max_subscriptions) {
            send_error(r.to, error_code::too_many_subscriptions,
                       "at most " + std::to_string(*s->plan.rule->max_subscriptions) +
                           " subscriptions to " + s->plan.table + " per connection",
                       id);
            out_.flush();
            return;
        }
    }
    std::optional<cdc::position> after;
    if (r.after) {
        // A resume: the log must hold everything after the position, of this very log.
        const auto parsed = position_format::parse(*r.after);
        if (!parsed) {
            send_error(r.to, error_code::bad_message,
                       "\"after\" is not a position this engine sent", id);
            out_.flush();
            return;
        }
        const char* refusal = nullptr;
        if (!log_) {
            refusal = "this engine keeps no change log (--no-log): subscribe again without "
                      "\"after\"";
        } else {
            switch (log_->check(parsed->first, parsed->second)) {
            case log::resume_check::ok:
                break;
            case log::resume_check::other_epoch:
                refusal = "the position is from another change log (it was reset or lost): "
                          "subscribe again without \"after\"";
                break;
            case log::resume_check::too_old:
                refusal = "the change log no longer reaches back to that position: subscribe "
                          "again without \"after\"";
                break;
            }
        }
        if (refusal) {
            ++metrics_.resyncs;
            send_error(r.to, error_code::resync_required, refusal, id);
            out_.flush();
            return;
        }
        after = parsed->second;
        // The replay reads the log under today's lookup results: only exact if they did not
        // change after the position.
        for (const auto& dep : s->lookups) {
            auto ch = changed_at_.find(dep);
            const auto& st = *lookups_.at(dep.first);
            if (*after < st.ready_at || (ch != changed_at_.end() && *after < ch->second)) {
                ++metrics_.resyncs;
                send_error(r.to, error_code::resync_required,
                           "what this subscription may see (lookup." + dep.first +
                               ") changed after that position: subscribe again without \"after\"",
                           id);
                out_.flush();
                return;
            }
        }
    }
    const table_state* ts = schemas_.find(s->plan.table);
    s->key = next_key_++;
    track(*s);
    matcher_.add(s->key, ts->schema, s->plan.filter.get(), s->plan.updates.get());
    by_connection_[s->connection][id] = s->key;
    auto& ref = *s;
    subs_.emplace(s->key, std::move(s));
    ++metrics_.subscriptions;
    if (after) {
        start_replay(ref, *after);
    } else {
        start_snapshot(ref);
    }
}

void hub::start_snapshot(subscription& s) {
    const table_state* ts = schemas_.find(s.plan.table);
    snapshot_job job;
    s.snapshot_key = next_key_++;
    sub_snapshots_[s.snapshot_key] = s.key;
    job.key = s.snapshot_key;
    job.id = s.id;
    job.to = s.to;
    job.with_rows = s.with_snapshot;
    job.max_rows = limits_.snapshot_max_rows;
    if (s.with_snapshot) {
        std::string cols;
        for (auto pos : s.plan.columns) {
            if (!cols.empty()) cols += ", ";
            cols += cdc::pg::quote_identifier(ts->names[pos]);
            job.column_names.push_back(ts->names[pos]);
            job.column_types.push_back(ts->types[pos]);
        }
        job.sql = "SELECT " + cols + " FROM " + cdc::pg::quote_identifier(ts->schema.schema) + "." +
                  cdc::pg::quote_identifier(ts->schema.name) + " WHERE " +
                  s.plan.filter->to_sql(ts->names, job.params);
    }
    job.recent_xids = recent_xids_;
    // A transaction the stream is in the middle of handed over its first changes before this
    // subscription existed: it counts as streamed, so the snapshot is retaken until it sees it.
    if (txn_) job.recent_xids.push_back(txn_->xid);
    std::sort(job.recent_xids.begin(), job.recent_xids.end());
    job.recent_xids.erase(std::unique(job.recent_xids.begin(), job.recent_xids.end()),
                          job.recent_xids.end());
    job.done = [this](snapshot_result r) {
        net::post(executor_, [this, r = std::move(r)]() mutable { snapshot_done(std::move(r)); });
    };
    snapshots_.submit(std::move(job));
}

void hub::snapshot_done(snapshot_result r) {
    if (lookup_snapshots_.count(r.key)) {
        lookup_snapshot_done(std::move(r));
        return;
    }
    auto owner = sub_snapshots_.find(r.key);
    if (owner == sub_snapshots_.end()) return; // unsubscribed or restarted meanwhile
    auto it = subs_.find(owner->second);
    if (it == subs_.end() || it->second->dropped) return;
    subscription& s = *it->second;
    if (!r.ok) {
        drop(s.key, r.code, r.message);
        out_.flush();
        return;
    }
    s.meta = std::move(r.meta);
    s.have_meta = true;
    s.rows_done = true;
    // Drop what the snapshot already contains: transactions committed before it.
    std::erase_if(s.buffer, [&](const subscription::buffered& b) {
        return s.snapshot_has(b.xid, b.commit_lsn);
    });
    s.buffer_bytes = 0;
    for (const auto& b : s.buffer)
        s.buffer_bytes += b.f.bytes();
    try_go_live(s);
    out_.flush();
}

void hub::try_go_live(subscription& s) {
    if (s.state != subscription::phase::snapshot || !s.rows_done || !s.sync_seen) return;
    sub_snapshots_.erase(s.snapshot_key);
    auto [sent, opened] = s.go_live_after_snapshot(out_, limits_.batch, txn_, events_.positions());
    metrics_.events_out += sent;
    if (opened) open_batches_.push_back(s.key);
}

void hub::drop(std::uint64_t key, std::optional<error_code> code, const std::string& message) {
    auto it = subs_.find(key);
    if (it == subs_.end() || it->second->dropped) return;
    subscription& s = *it->second;
    s.dropped = true;
    matcher_.remove(key);
    untrack(s);
    if (s.state == subscription::phase::snapshot) {
        snapshots_.cancel(s.snapshot_key);
        sub_snapshots_.erase(s.snapshot_key);
    }
    if (code) send_error(s.to, *code, message, *s.id);
    auto c = by_connection_.find(s.connection);
    if (c != by_connection_.end()) {
        c->second.erase(*s.id);
        if (c->second.empty()) by_connection_.erase(c);
    }
    --metrics_.subscriptions;
    if (in_fanout_) {
        graveyard_.push_back(key);
    } else {
        subs_.erase(it);
    }
}

void hub::reap() {
    for (auto key : graveyard_)
        subs_.erase(key);
    graveyard_.clear();
}

void hub::unsubscribe(std::uint64_t connection, const std::string& id,
                      std::weak_ptr<client> to_if_unknown) {
    auto key = key_of(connection, id);
    if (key == 0) {
        // It may be a listen id.
        unlisten(connection, id, std::move(to_if_unknown));
        return;
    }
    auto to = subs_.at(key)->to;
    drop(key, std::nullopt, "");
    out_.send(to, frame::of(protocol::unsubscribed(id)));
    out_.flush();
}

void hub::listen(std::weak_ptr<client> to, std::uint64_t connection,
                 std::shared_ptr<const std::string> id, const std::string& channel,
                 std::shared_ptr<const nlohmann::json> claims) {
    if (key_of(connection, *id) != 0 || listens_.has(connection, *id)) {
        send_error(to, error_code::duplicate_id,
                   "id " + *id + " is already in use on this connection", *id);
        out_.flush();
        return;
    }
    if (auto refused = listens_.add(rules_, to, connection, id, channel, claims,
                                    [this](const nlohmann::json& c, auto& read, auto& not_ready) {
                                        return resolver(c, read, not_ready);
                                    })) {
        auto st = lookups_.find(refused->waiting_for);
        if (st != lookups_.end() && st->second->state != lookup_state::phase::failed) {
            // A lookup it reads is loading: come back when it is in memory.
            st->second->waiting.push_back([this, to, connection, id, channel, claims] {
                if (!to.expired()) listen(to, connection, id, channel, claims);
            });
            return;
        }
        send_error(to, refused->code, refused->message, *id);
    } else {
        out_.send(to, frame::of(protocol::ready(*id, "")));
    }
    out_.flush();
}

void hub::unlisten(std::uint64_t connection, const std::string& id,
                   std::weak_ptr<client> to_if_unknown) {
    if (auto to = listens_.remove(connection, id)) {
        out_.send(*to, frame::of(protocol::unsubscribed(id)));
    } else {
        send_error(to_if_unknown, error_code::unknown_id, "no subscription or listen with id " + id,
                   id);
    }
    out_.flush();
}

void hub::disconnect(std::uint64_t connection) {
    auto c = by_connection_.find(connection);
    if (c != by_connection_.end()) {
        std::vector<std::uint64_t> keys;
        for (const auto& [id, key] : c->second)
            keys.push_back(key);
        for (auto key : keys)
            drop(key, std::nullopt, "");
    }
    listens_.remove_connection(connection);
}

void hub::reauthenticate(std::uint64_t connection, std::shared_ptr<const nlohmann::json> claims) {
    auto c = by_connection_.find(connection);
    if (c != by_connection_.end()) {
        for (const auto& [id, key] : c->second)
            subs_.at(key)->claims = claims;
    }
    listens_.set_claims(connection, claims);
    set_rules(rules_); // plans everything again; only this connection's claims changed
}

void hub::set_rules(std::shared_ptr<const rules::rule_set> new_rules) {
    rules_ = std::move(new_rules);
    sync_lookups();
    std::vector<std::uint64_t> keys;
    for (const auto& [key, s] : subs_) {
        if (!s->dropped) keys.push_back(key);
    }
    for (auto key : keys) {
        auto it = subs_.find(key);
        if (it == subs_.end() || it->second->dropped) continue;
        subscription& s = *it->second;
        const std::string before = s.shape();
        auto old_plan = std::move(s.plan);
        matcher_.remove(key);
        untrack(s);
        std::string message;
        if (auto code = plan(s, message)) {
            s.plan = std::move(old_plan);
            drop(key, code, message);
            continue;
        }
        track(s);
        if (s.shape() != before) {
            drop(key, error_code::resync_required,
                 "the rules changed what this subscription may see: subscribe again");
            continue;
        }
        matcher_.add(key, schemas_.find(s.plan.table)->schema, s.plan.filter.get(),
                     s.plan.updates.get());
    }
    listens_.replan(rules_, out_, [this](const nlohmann::json& c, auto& read, auto& not_ready) {
        return resolver(c, read, not_ready);
    });
    out_.flush();
}

std::vector<std::string> hub::channels() const {
    std::vector<std::string> out;
    if (!rules_) return out;
    for (const auto& [name, rule] : rules_->channels())
        out.push_back(name);
    return out;
}

// ---- publication gaps ----

void hub::set_unpublished(std::set<std::string> tables) {
    for (const auto& t : tables) {
        if (unpublished_.count(t)) continue;
        std::vector<std::uint64_t> affected;
        for (const auto& [key, s] : subs_) {
            if (!s->dropped && s->plan.table == t) affected.push_back(key);
        }
        for (auto key : affected) {
            ++metrics_.resyncs;
            drop(key, error_code::resync_required,
                 "changes of " + t +
                     " were not streamed for a while (the table left the "
                     "publication): subscribe again");
        }
        pending_gaps_.push_back(t);
        // A lookup over it missed changes: what was read from it is not exact any more.
        if (auto lt = lookups_by_table_.find(t); lt != lookups_by_table_.end()) {
            for (const auto& name : lt->second) {
                auto st = lookups_.find(name);
                if (st != lookups_.end() && st->second->state != lookup_state::phase::failed) {
                    lookup_failed(*st->second,
                                  "its table " + t + " left the publication (changes were missed)",
                                  error_code::resync_required);
                }
            }
        }
    }
    std::vector<std::string> back;
    for (const auto& t : unpublished_) {
        if (!tables.count(t)) back.push_back(t);
    }
    unpublished_ = std::move(tables);
    for (const auto& t : back) {
        if (auto lt = lookups_by_table_.find(t); lt != lookups_by_table_.end()) {
            for (const auto& name : lt->second) {
                auto st = lookups_.find(name);
                if (st != lookups_.end() && st->second->state == lookup_state::phase::failed)
                    load_lookup(name);
            }
        }
    }
    write_pending_gaps();
    out_.flush();
}

void hub::write_pending_gaps() {
    if (txn_ || pending_gaps_.empty()) return;
    if (log_) {
        for (const auto& t : pending_gaps_)
            log_->gap(t, last_end_lsn_);
        log_->submit();
    }
    pending_gaps_.clear();
}

// ---- resuming from the change log ----

void hub::start_replay(subscription& s, cdc::position after) {
    s.state = subscription::phase::replay;
    s.resume_after = after;
    s.cursor = log_->open(after);
    ++metrics_.resumes;
    net::post(executor_, [this, key = s.key] { replay_step(key); });
}

void hub::replay_step(std::uint64_t key) {
    auto it = subs_.find(key);
    if (it == subs_.end() || it->second->dropped) return;
    subscription& s = *it->second;
    if (s.state != subscription::phase::replay) return;
    auto c = s.to.lock();
    if (!c) return;
    auto again_in = [this, key](std::chrono::milliseconds d) {
        auto t = std::make_shared<net::steady_timer>(executor_, d);
        t->async_wait([this, key, t](boost::system::error_code ec) {
            if (!ec) replay_step(key);
        });
    };
    if (c->flow().queued > limits_.replay_pause_bytes) {
        // Let the client drain before reading on: its queue stays under the slow-consumer budget.
        again_in(std::chrono::milliseconds(5));
        return;
    }
    const table_state* ts = schemas_.find(s.plan.table);
    if (!ts) {
        ++metrics_.resyncs;
        drop(key, error_code::resync_required, "the table changed: subscribe again");
        out_.flush();
        return;
    }
    log_->submit();
    const cdc::position until = s.tailing ? s.tail_until : log_->appended();
    auto r = replayer_.step(s, *ts, until, limits_.replay_batch, out_);
    metrics_.events_out += r.events;
    if (r.opened_batch) open_batches_.push_back(key);
    switch (r.what) {
    case replayer::outcome::more:
        net::post(executor_, [this, key] { replay_step(key); });
        break;
    case replayer::outcome::waiting:
        // The log writer has not written what it was handed yet (it writes once per sync, and a
        // disk may be slow or full): never block this thread on it. The end read to is fixed
        // now, and live changes after it are kept for the subscription meanwhile, so it does
        // not chase an end that moves on with every transaction.
        if (!s.tailing) {
            s.tailing = true;
            s.tail_until = until;
        }
        again_in(std::chrono::milliseconds(2));
        break;
    case replayer::outcome::reached: {
        s.cursor.reset();
        auto [sent, opened] = s.go_live_after_replay(
            out_, limits_.batch, std::max(until, s.resume_after), txn_, events_.positions());
        metrics_.events_out += sent;
        if (opened) open_batches_.push_back(key);
        break;
    }
    case replayer::outcome::resync:
        ++metrics_.resyncs;
        drop(key, error_code::resync_required, r.message);
        break;
    }
    out_.flush();
}

// ---- lookups ----
//
// Each lookup of the rules is loaded like a subscription's snapshot: a REPEATABLE READ snapshot
// of its columns, the stream's changes to its table buffered meanwhile and stitched to it by the
// snapshot's xmin/xmax/xip and a sync marker (the same argument as for subscriptions: nothing is
// missed or applied twice). From then on it follows the stream in commit order. A subscription
// records which results it read; when one changes, it is planned again at that change's position.

void hub::sync_lookups() {
    if (!rules_) return;
    std::map<std::string, std::vector<std::string>, std::less<>> by_table;
    for (const auto& [name, rule] : rules_->lookups()) {
        by_table[rule.table].push_back(name);
        const auto sig = signature_of(rule);
        auto it = lookups_.find(name);
        if (it != lookups_.end() && it->second->signature == sig) continue;
        auto st = std::make_unique<lookup_state>();
        st->name = name;
        st->signature = sig;
        if (it != lookups_.end()) {
            // Redefined: loaded afresh; what waited for the old one waits for the new one.
            st->waiting = std::move(it->second->waiting);
            lookup_snapshots_.erase(it->second->snapshot_key);
            snapshots_.cancel(it->second->snapshot_key);
        }
        lookups_[name] = std::move(st);
        load_lookup(name);
    }
    for (auto it = lookups_.begin(); it != lookups_.end();) {
        if (rules_->lookup(it->first)) {
            ++it;
            continue;
        }
        lookup_snapshots_.erase(it->second->snapshot_key);
        snapshots_.cancel(it->second->snapshot_key);
        auto waiting = std::move(it->second->waiting);
        it = lookups_.erase(it);
        for (auto& w : waiting)
            w(); // planned again under rules without it
    }
    lookups_by_table_ = std::move(by_table);
    settle_check();
}

void hub::load_lookup(const std::string& name) {
    auto found = lookups_.find(name);
    const rules::lookup_rule* rule = rules_ ? rules_->lookup(name) : nullptr;
    if (found == lookups_.end() || !rule) return;
    lookup_state& st = *found->second;
    if (unpublished_.count(rule->table)) {
        // Not streamed: it could not be kept current. Loaded once it is published again.
        lookup_failed(st, "its table " + rule->table + " is not in the publication",
                      error_code::unavailable);
        return;
    }
    st.state = lookup_state::phase::describing;
    st.table.reset();
    st.buffer.clear();
    st.rows_done = st.sync_seen = false;
    st.meta = {};
    const table_state* ts = schemas_.find(rule->table);
    if (!ts) {
        const std::string table = rule->table, sig = st.signature;
        schemas_.fetch(table, [this, name, sig, table](const std::string* error) {
            auto it = lookups_.find(name);
            if (it == lookups_.end() || it->second->signature != sig) return;
            if (error) {
                // The database is away: try again shortly (subscriptions reading it wait).
                auto t = std::make_shared<net::steady_timer>(executor_, std::chrono::seconds(1));
                t->async_wait([this, name, sig, t](boost::system::error_code ec) {
                    auto again = lookups_.find(name);
                    if (!ec && again != lookups_.end() && again->second->signature == sig)
                        load_lookup(name);
                });
                return;
            }
            if (!schemas_.find(table)) {
                lookup_failed(*it->second, "table " + table + " does not exist",
                              error_code::unavailable);
                return;
            }
            load_lookup(name);
        });
        return;
    }
    try {
        st.table = std::make_unique<lookup_table>(*rule, *ts, types_);
    } catch (const std::exception& e) {
        lookup_failed(st, e.what(), error_code::unavailable);
        return;
    }
    snapshot_job job;
    job.key = next_key_++;
    job.collect = true;
    job.max_rows = limits_.lookup_max_rows;
    std::string cols;
    for (const auto& c : st.table->columns())
        cols += (cols.empty() ? "" : ", ") + cdc::pg::quote_identifier(c);
    job.sql = "SELECT " + cols + " FROM " + cdc::pg::quote_identifier(ts->schema.schema) + "." +
              cdc::pg::quote_identifier(ts->schema.name);
    job.recent_xids = recent_xids_;
    if (txn_) job.recent_xids.push_back(txn_->xid);
    std::sort(job.recent_xids.begin(), job.recent_xids.end());
    job.recent_xids.erase(std::unique(job.recent_xids.begin(), job.recent_xids.end()),
                          job.recent_xids.end());
    job.done = [this](snapshot_result r) {
        net::post(executor_, [this, r = std::move(r)]() mutable { snapshot_done(std::move(r)); });
    };
    st.snapshot_key = job.key;
    lookup_snapshots_[job.key] = name;
    st.state = lookup_state::phase::loading;
    snapshots_.submit(std::move(job));
}

void hub::lookup_snapshot_done(snapshot_result r) {
    auto owner = lookup_snapshots_.find(r.key);
    if (owner == lookup_snapshots_.end()) return;
    auto it = lookups_.find(owner->second);
    if (it == lookups_.end() || it->second->snapshot_key != r.key) return;
    lookup_state& st = *it->second;
    if (!r.ok) {
        lookup_snapshots_.erase(owner);
        if (r.code == error_code::snapshot_too_large) {
            lookup_failed(st,
                          "its table has more than --lookup-max-rows (" +
                              std::to_string(limits_.lookup_max_rows) + ") rows",
                          error_code::unavailable);
            return;
        }
        // The database is away (or the query failed: the log says why): try again shortly;
        // subscriptions reading it wait meanwhile.
        spdlog::warn("lookup {}: loading failed ({}); trying again", st.name, r.message);
        st.state = lookup_state::phase::describing;
        const std::string name = st.name, sig = st.signature;
        auto t = std::make_shared<net::steady_timer>(executor_, std::chrono::seconds(1));
        t->async_wait([this, name, sig, t](boost::system::error_code ec) {
            auto again = lookups_.find(name);
            if (!ec && again != lookups_.end() && again->second->signature == sig)
                load_lookup(name);
        });
        return;
    }
    for (const auto& row : r.rows)
        st.table->load(row);
    st.meta = std::move(r.meta);
    st.rows_done = true;
    // What the snapshot holds already is not applied again.
    std::erase_if(st.buffer, [&](const lookup_state::owned_change& b) {
        return b.txn.commit_lsn < st.meta.lsn && st.meta.contains(b.txn.xid);
    });
    try_lookup_ready(st);
    out_.flush();
}

namespace {

// A change made from an owned copy, borrowing from it (for buffered lookup changes).
struct rebuilt {
    cdc::pgoutput::tuple row, old;
    cdc::change change;
};

} // namespace

void hub::try_lookup_ready(lookup_state& st) {
    if (st.state != lookup_state::phase::loading || !st.rows_done || !st.sync_seen) return;
    lookup_snapshots_.erase(st.snapshot_key);
    std::vector<std::string> changed;
    for (const auto& b : st.buffer) {
        rebuilt x;
        auto fill = [](const auto& owned, cdc::pgoutput::tuple& t) {
            for (const auto& [kind, text] : owned)
                t.push_back({kind, text});
        };
        if (b.row) fill(*b.row, x.row);
        if (b.old) fill(*b.old, x.old);
        x.change.op = b.op;
        x.change.relation = b.relation;
        x.change.row = b.row ? &x.row : nullptr;
        x.change.old = b.old ? &x.old : nullptr;
        x.change.old_kind = b.old_kind;
        x.change.pos = b.pos;
        x.change.txn = &b.txn;
        if (!st.table->apply(x.change, changed)) {
            spdlog::warn("lookup {}: a change to {} lacks its old row (is REPLICA IDENTITY FULL "
                         "set?); loading it again",
                         st.name, st.table->rule().table);
            load_lookup(st.name);
            return;
        }
    }
    st.buffer.clear();
    st.state = lookup_state::phase::ready;
    st.ready_at = st.sync_position;
    spdlog::info("lookup {}: {} row(s) of {} in memory, for {} subscriber key(s)", st.name,
                 st.table->rows(), st.table->rule().table, st.table->keys());
    // Subscriptions that read an earlier load of it (loaded again: it could not be kept exact)
    // are planned afresh.
    std::vector<std::uint64_t> readers;
    for (const auto& [dep, keys] : dependents_) {
        if (dep.first == st.name) readers.insert(readers.end(), keys.begin(), keys.end());
    }
    for (auto key : readers)
        rebind(key, st.sync_position);
    auto waiting = std::move(st.waiting);
    for (auto& w : waiting)
        w();
    settle_check();
}

void hub::lookup_failed(lookup_state& st, const std::string& why, error_code code) {
    st.state = lookup_state::phase::failed;
    st.problem = why;
    st.table.reset();
    st.buffer.clear();
    spdlog::error("lookup {} cannot be used: {}; subscriptions that read it are refused", st.name,
                  why);
    // Results read from it can no longer be kept exact.
    std::vector<std::uint64_t> readers;
    for (const auto& [dep, keys] : dependents_) {
        if (dep.first == st.name) readers.insert(readers.end(), keys.begin(), keys.end());
    }
    for (auto key : readers) {
        ++metrics_.resyncs;
        drop(key, code, "lookup." + st.name + " cannot be used: " + why);
    }
    auto waiting = std::move(st.waiting);
    for (auto& w : waiting)
        w();
    settle_check();
    out_.flush();
}

void hub::apply_lookup_change(lookup_state& st, const cdc::change& c) {
    switch (st.state) {
    case lookup_state::phase::describing: // its snapshot, taken later, will hold this change
    case lookup_state::phase::failed:
        return;
    case lookup_state::phase::loading: {
        lookup_state::owned_change b;
        b.op = c.op;
        b.relation = c.relation;
        auto copy = [](const cdc::pgoutput::tuple& t) {
            std::vector<std::pair<cdc::pgoutput::datum_kind, std::string>> out;
            out.reserve(t.size());
            for (const auto& d : t)
                out.emplace_back(d.kind, std::string(d.data));
            return out;
        };
        if (c.row) b.row = copy(*c.row);
        if (c.old) b.old = copy(*c.old);
        b.old_kind = c.old_kind;
        b.pos = c.pos;
        if (c.txn) b.txn = *c.txn;
        st.buffer.push_back(std::move(b));
        return;
    }
    case lookup_state::phase::ready:
        break;
    }
    std::vector<std::string> changed;
    if (!st.table->apply(c, changed)) {
        spdlog::warn("lookup {}: a change to {} lacks its old row (is REPLICA IDENTITY FULL "
                     "set?); loading it again",
                     st.name, st.table->rule().table);
        load_lookup(st.name);
        return;
    }
    for (const auto& key : changed) {
        const auto dep = std::pair{st.name, key};
        changed_at_[dep] = c.pos;
        ++metrics_.lookup_changes;
        auto it = dependents_.find(dep);
        if (it == dependents_.end()) continue;
        const std::vector<std::uint64_t> readers(it->second.begin(), it->second.end());
        for (auto sub : readers)
            rebind(sub, c.pos);
    }
    if (!changed.empty()) {
        listens_.replan_reading(
            st.name, changed, rules_,
            [this](const nlohmann::json& claims, auto& read, auto& not_ready) {
                return resolver(claims, read, not_ready);
            },
            out_);
    }
}

void hub::rebind(std::uint64_t key, cdc::position at) {
    auto it = subs_.find(key);
    if (it == subs_.end() || it->second->dropped) return;
    subscription& s = *it->second;
    const std::string before = s.shape();
    auto old_plan = std::move(s.plan);
    matcher_.remove(key);
    untrack(s);
    std::string message;
    if (auto code = plan(s, message)) {
        s.plan = std::move(old_plan);
        drop(key, code, message);
        return;
    }
    track(s);
    matcher_.add(key, schemas_.find(s.plan.table)->schema, s.plan.filter.get(),
                 s.plan.updates.get());
    if (s.shape() == before) return;
    ++metrics_.lookup_resets;
    restart_snapshot(s, at);
}

void hub::restart_snapshot(subscription& s, cdc::position at) {
    if (s.state == subscription::phase::snapshot) {
        snapshots_.cancel(s.snapshot_key);
        sub_snapshots_.erase(s.snapshot_key);
    }
    s.cursor.reset();
    s.tailing = false;
    s.buffer.clear();
    s.buffer_bytes = 0;
    s.batch.clear();
    s.batch_bytes = 0;
    s.ready_after_batch.reset();
    s.rows_done = s.sync_seen = s.have_meta = false;
    s.meta = {};
    s.resume_after = {};
    // The client drops its copy here; the new result follows as `rows`, then `ready`, then
    // events, stitched to the stream like any snapshot.
    out_.send(s.to, frame::of(protocol::reset(*s.id, events_.positions().text(at))));
    // Out now: the new snapshot's rows go to the client straight from a worker, and must not
    // overtake the reset.
    out_.flush();
    s.state = subscription::phase::snapshot;
    s.with_snapshot = true;
    start_snapshot(s);
}

std::vector<lookup_status> hub::lookups() const {
    std::vector<lookup_status> out;
    for (const auto& [name, st] : lookups_) {
        lookup_status l;
        l.name = name;
        l.state = std::string(phase_name(static_cast<int>(st->state)));
        if (st->table) {
            l.rows = st->table->rows();
            l.keys = st->table->keys();
        }
        l.problem = st->problem;
        out.push_back(std::move(l));
    }
    return out;
}

void hub::when_lookups_settled(std::function<void()> f) {
    on_settled_.push_back(std::move(f));
    settle_check();
}

void hub::settle_check() {
    for (const auto& [name, st] : lookups_) {
        if (st->state == lookup_state::phase::describing ||
            st->state == lookup_state::phase::loading)
            return;
    }
    auto run = std::move(on_settled_);
    for (auto& f : run)
        f();
}

// ---- the stream ----

void hub::on_begin(const cdc::transaction_info& t) {
    if (log_) log_->begin(t);
    txn_ = &t;
}

void hub::emit(subscription& s, std::string_view type, std::shared_ptr<const std::string> body,
               cdc::position pos) {
    if (s.emit(out_, limits_.batch, type, std::move(body), pos, events_.positions()))
        open_batches_.push_back(s.key);
}

// A live change for one subscription: sent (or batched) when it is live, kept while its
// snapshot is taken unless the snapshot already has it; nothing while it replays (the replay
// reads it from the log).
void hub::route(subscription& s, std::string_view type, std::shared_ptr<const std::string> body,
                const cdc::change& c) {
    switch (s.state) {
    case subscription::phase::replay:
        // The replay reads this from the log, unless it is past the end the replay reads to.
        if (!s.tailing || c.pos <= s.tail_until) return;
        if (!s.buffer_change(frame{protocol::event_head(type), s.id, std::move(body)}, *c.txn, type,
                             c.pos, limits_.max_buffered_bytes)) {
            ++metrics_.resyncs;
            drop(s.key, error_code::resync_required,
                 "too many changes arrived while the resume caught up: subscribe again");
        }
        return;
    case subscription::phase::live:
        if (c.pos <= s.resume_after) return; // a resumed client has it
        emit(s, type, std::move(body), c.pos);
        ++metrics_.events_out;
        return;
    case subscription::phase::snapshot:
        break;
    }
    if (s.snapshot_has(c.txn->xid, c.txn->commit_lsn)) return;
    if (!s.buffer_change(frame{protocol::event_head(type), s.id, std::move(body)}, *c.txn, type,
                         c.pos, limits_.max_buffered_bytes)) {
        drop(s.key, error_code::resync_required,
             "too many changes arrived while the snapshot was taken: subscribe again");
    }
}

void hub::on_change(const cdc::change& c) {
    if (log_) log_->change(c);
    ++metrics_.changes_in;
    const std::string& table = c.relation->qualified_name;
    metrics_.count_table_change(table);
    // Lookups first: a subscriber's result changes at this change, and what follows in the
    // stream is matched under the new one.
    if (auto lt = lookups_by_table_.find(table); lt != lookups_by_table_.end()) {
        for (const auto& name : lt->second) {
            if (auto st = lookups_.find(name); st != lookups_.end())
                apply_lookup_change(*st->second, c);
        }
    }
    const table_state* ts = schemas_.find(table);
    if (!ts) return; // nobody ever subscribed to it

    // route() may end subscriptions: they are freed after the loop, so nothing the loop holds
    // (a subscription, its plan's columns) dies under it.
    in_fanout_ = true;
    if (c.op == cdc::change_op::truncate) {
        std::vector<rules::subscription_id> all;
        matcher_.all(table, all);
        if (!all.empty()) {
            auto body = events_.truncate_body(c);
            for (auto key : all) {
                auto it = subs_.find(key);
                if (it != subs_.end() && !it->second->dropped)
                    route(*it->second, "truncate", body, c);
            }
        }
    } else {
        load_values(c, ts->schema, matcher_.columns_needed(table), new_values_, old_values_);
        hits_.clear();
        matcher_.match(table, kind_of(c.op), new_values_, old_values_, hits_);
        // One body per (projection, event): subscribers with the same columns share it.
        struct cached {
            const std::vector<std::size_t>* columns;
            rules::event_kind event;
            std::shared_ptr<const std::string> body;
        };
        std::vector<cached> bodies;
        for (const auto& h : hits_) {
            auto sit = subs_.find(h.id);
            if (sit == subs_.end() || sit->second->dropped) continue;
            subscription& s = *sit->second;
            // A replay reads this from the log (unless it is past the replay's end: route()).
            if (s.state == subscription::phase::replay && !s.tailing) continue;
            std::shared_ptr<const std::string> body;
            for (const auto& b : bodies) {
                if (b.event == h.event && *b.columns == s.plan.columns) body = b.body;
            }
            if (!body) {
                body = events_.body(c, s.plan.columns, h.event);
                bodies.push_back({&s.plan.columns, h.event, body});
            }
            route(s, event_name(h.event), std::move(body), c);
        }
    }
    in_fanout_ = false;
    reap();
    // A large transaction does not pile up: frames go out as they are made.
    if (out_.pending() >= 1024) out_.flush();
}

void hub::on_message(const cdc::logical_message& m) {
    if (m.transactional) return;
    // Everything before a non-transactional message has been handed over: once the log has it,
    // the slot may be confirmed to here (heartbeats keep an idle slot moving this way).
    if (log_) log_->mark(m.pos.commit_lsn);
    last_end_lsn_ = std::max(last_end_lsn_, m.pos.commit_lsn);
    write_pending_gaps();
    if (m.prefix != "pgpush") return;
    std::string_view content(reinterpret_cast<const char*>(m.content.data()), m.content.size());
    if (content.rfind("sync:", 0) != 0) return;
    std::uint64_t key = 0;
    auto digits = content.substr(5);
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), key);
    if (ec != std::errc{}) return;
    if (auto l = lookup_snapshots_.find(key); l != lookup_snapshots_.end()) {
        if (auto st = lookups_.find(l->second); st != lookups_.end()) {
            st->second->sync_seen = true;
            st->second->sync_position = m.pos;
            try_lookup_ready(*st->second);
        }
        out_.flush();
        return;
    }
    auto owner = sub_snapshots_.find(key);
    if (owner == sub_snapshots_.end()) return;
    auto it = subs_.find(owner->second);
    if (it == subs_.end() || it->second->dropped) return;
    subscription& s = *it->second;
    s.sync_seen = true;
    s.sync_position = m.pos;
    try_go_live(s);
    out_.flush();
}

void hub::on_commit(const cdc::transaction_info& t, cdc::lsn end_lsn) {
    ++metrics_.transactions_in;
    recent_xids_[recent_next_++ % recent_capacity] = t.xid;
    metrics_.last_commit_time_us = std::chrono::duration_cast<std::chrono::microseconds>(
                                       cdc::from_pg_timestamp(t.commit_time).time_since_epoch())
                                       .count();
    if (!open_batches_.empty()) {
        // Live batches of this transaction are complete. Batches of replays stay: a replay ends
        // its batches as it reads on (a change of the next transaction) or reaches the end.
        std::erase_if(open_batches_, [&](std::uint64_t key) {
            auto it = subs_.find(key);
            if (it == subs_.end() || it->second->dropped) return true; // its batch went with it
            subscription& s = *it->second;
            if (s.batch.empty()) {
                s.batch_listed = false;
                return true;
            }
            if (s.state != subscription::phase::live ||
                s.batch.front().pos.commit_lsn != t.commit_lsn)
                return false;
            s.send_batch(out_, true, events_.positions());
            s.batch_listed = false;
            return true;
        });
    }
    out_.flush();
    txn_ = nullptr;
    last_end_lsn_ = std::max(last_end_lsn_, end_lsn);
    if (log_) {
        log_->commit(t, end_lsn); // confirmed when durable (the engine wires that)
    } else if (confirm) {
        confirm(end_lsn);
    }
    write_pending_gaps();
}

void hub::on_relation(const cdc::relation_schema& r) {
    if (schemas_.update(r)) {
        spdlog::info("table {} changed shape; planning its subscriptions again", r.qualified_name);
        set_rules(rules_);
    }
}

void hub::on_idle() {
    out_.flush();
}

void hub::on_stop() {
    out_.flush();
    if (on_stopping) on_stopping();
}

void hub::on_notify(const cdc::notification& n) {
    listens_.on_notify(n, out_);
    out_.flush();
}

} // namespace pgpush::push
