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

hub::hub(net::any_io_executor executor, cdc::type_catalog& types, metrics& m,
         snapshot_runner& snapshots, table_describer& describer, hub_limits limits)
    : executor_(std::move(executor)), metrics_(m), snapshots_(snapshots), limits_(limits),
      schemas_(types, describer), events_(types, position_format(0)),
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
    auto r = rules::plan_subscription(rules_, {s.query, s.claims.get(), s.params}, lookup);
    if (auto* e = std::get_if<rules::plan_error>(&r)) {
        message = e->message;
        return error_code_of(e->code);
    }
    s.plan = std::move(std::get<rules::subscription_plan>(r));
    return std::nullopt;
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
    }
    const table_state* ts = schemas_.find(s->plan.table);
    s->key = next_key_++;
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
    job.key = s.key;
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
    auto it = subs_.find(r.key);
    if (it == subs_.end() || it->second->dropped) return; // unsubscribed meanwhile
    subscription& s = *it->second;
    if (!r.ok) {
        drop(r.key, r.code, r.message);
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
    if (s.state == subscription::phase::snapshot) snapshots_.cancel(key);
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
    if (auto refused = listens_.add(rules_, to, connection, id, channel, std::move(claims))) {
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
        std::string message;
        if (auto code = plan(s, message)) {
            s.plan = std::move(old_plan);
            drop(key, code, message);
            continue;
        }
        if (s.shape() != before) {
            drop(key, error_code::resync_required,
                 "the rules changed what this subscription may see: subscribe again");
            continue;
        }
        matcher_.add(key, schemas_.find(s.plan.table)->schema, s.plan.filter.get(),
                     s.plan.updates.get());
    }
    listens_.replan(rules_, out_);
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
    }
    unpublished_ = std::move(tables);
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
    auto it = subs_.find(key);
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
