#include "push/hub.hpp"

#include <algorithm>
#include <charconv>
#include <numeric>

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "cdc/json_writer.hpp"
#include "cdc/pg_time.hpp"
#include "cdc/value_json.hpp"
#include "push/schema.hpp"
#include "push/snapshot_pool.hpp"

namespace pgpush::push {

namespace net = boost::asio;
namespace pgoutput = cdc::pgoutput;
using protocol::error_code;

namespace {

constexpr std::size_t recent_capacity = 4096;

std::string quote_identifier(std::string_view id) {
    std::string out = "\"";
    for (char c : id) {
        if (c == '"') out += '"';
        out += c;
    }
    return out + "\"";
}

// "<epoch, 16 hex digits>/<position>": what position_text writes.
std::optional<std::pair<std::uint64_t, cdc::position>> parse_position_text(std::string_view t) {
    if (t.size() < 18 || t[16] != '/') return std::nullopt;
    std::uint64_t epoch = 0;
    auto [end, ec] = std::from_chars(t.data(), t.data() + 16, epoch, 16);
    if (ec != std::errc{} || end != t.data() + 16) return std::nullopt;
    auto p = cdc::parse_position(t.substr(17));
    if (!p) return std::nullopt;
    return std::pair{epoch, *p};
}

rules::change_kind kind_of(cdc::change_op op) {
    return op == cdc::change_op::insert   ? rules::change_kind::insert
           : op == cdc::change_op::update ? rules::change_kind::update
                                          : rules::change_kind::delete_;
}

std::string_view event_name(rules::event_kind e) {
    return e == rules::event_kind::insert   ? "insert"
           : e == rules::event_kind::update ? "update"
                                            : "delete";
}

error_code code_of(rules::plan_error_code c) {
    switch (c) {
    case rules::plan_error_code::bad_query:
        return error_code::bad_query;
    case rules::plan_error_code::unknown_table:
        return error_code::unknown_table;
    case rules::plan_error_code::forbidden:
        return error_code::forbidden;
    case rules::plan_error_code::unknown_column:
        return error_code::unknown_column;
    }
    return error_code::bad_query;
}

} // namespace

struct hub::table_state {
    rules::table_schema schema;
    std::vector<cdc::oid> types;
};

struct hub::subscription {
    std::uint64_t key = 0;
    std::uint64_t connection = 0;
    std::shared_ptr<const std::string> id;
    std::weak_ptr<client> to;
    std::string query;
    std::vector<nlohmann::json> params;
    bool snapshot = true;
    bool transactions = false;
    std::shared_ptr<const nlohmann::json> claims;

    rules::subscription_plan plan;

    // snapshot: rows being read, changes buffered; replay: catching up from the change log, live
    // changes skipped (the replay reads them from the log); live.
    enum class phase { snapshot, replay, live } state = phase::snapshot;
    // A resumed subscription never gets a change at or before the position it resumed after.
    cdc::position resume_after;
    std::unique_ptr<log::log_reader> reader;
    bool replay_shape_changed = false; // the replay met a change of an older table shape
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
    std::shared_ptr<std::atomic<bool>> cancel;

    // "transactions": the changes of one transaction not sent yet, all of the same commit LSN.
    struct batch_entry {
        std::string_view type;
        std::shared_ptr<const std::string> body;
        cdc::position pos;
    };
    std::vector<batch_entry> batch;
    std::size_t batch_bytes = 0;
    bool batch_listed = false; // in hub::open_batches_
    // Went live inside the batch's transaction: `ready` follows the batch's last message, so the
    // client never holds a position past changes it has not received.
    std::optional<cdc::position> ready_after_batch;

    // Whether the snapshot's rows already hold this transaction's changes.
    bool snapshot_has(const cdc::transaction_info& t) const {
        return have_meta && t.commit_lsn < meta.lsn && meta.contains(t.xid);
    }

    // What the client's copy is a result of: when a new plan differs, the copy may be wrong.
    std::string shape() const {
        std::string s = plan.filter->to_string();
        for (auto c : plan.columns)
            s += "|" + std::to_string(c);
        if (plan.updates) s += "|" + plan.updates->to_string();
        return s;
    }
};

struct hub::listener_entry {
    std::uint64_t connection = 0;
    std::shared_ptr<const std::string> id;
    std::weak_ptr<client> to;
    std::shared_ptr<const nlohmann::json> claims;
    rules::listen_plan plan;
};

hub::hub(net::any_io_executor executor, cdc::type_catalog& types, metrics& m,
         snapshot_pool& snapshots, describe_fn describe, hub_limits limits)
    : executor_(std::move(executor)), types_(types), metrics_(m), snapshots_(snapshots),
      describe_(std::move(describe)), limits_(limits), recent_xids_(recent_capacity, 0) {}

hub::~hub() = default;

std::uint64_t hub::key_of(std::uint64_t connection, const std::string& id) const {
    auto c = by_connection_.find(connection);
    if (c == by_connection_.end()) return 0;
    auto it = c->second.find(id);
    return it == c->second.end() ? 0 : it->second;
}

hub::table_state* hub::table_for(const std::string& name) {
    auto it = tables_.find(name);
    if (it != tables_.end()) return it->second.get();
    std::vector<cdc::oid> types;
    auto schema = describe_ ? describe_(name, types) : std::nullopt;
    if (!schema) return nullptr;
    auto t = std::make_unique<table_state>();
    t->schema = std::move(*schema);
    t->types = std::move(types);
    return tables_.emplace(name, std::move(t)).first->second.get();
}

void hub::send(const std::weak_ptr<client>& to, frame f) {
    auto c = to.lock();
    if (!c) return;
    auto& p = pending_[c.get()];
    p.to = to;
    p.frames.push_back(std::move(f));
    ++pending_frames_;
}

void hub::send_error(const std::weak_ptr<client>& to, error_code code, const std::string& message,
                     const std::string& id) {
    metrics_.count_error(std::string(protocol::to_string(code)));
    send(to, frame::of(protocol::error(code, message, id)));
}

void hub::flush() {
    if (pending_.empty()) return;
    // One post per I/O thread rather than per connection: at fan-out, waking threads costs more
    // than the writes. Posts to one thread run in order, so each connection's frames stay so.
    using batch = std::vector<std::pair<std::shared_ptr<client>, std::vector<frame>>>;
    std::vector<std::pair<net::any_io_executor, batch>> by_thread;
    for (auto& [ptr, p] : pending_) {
        auto c = p.to.lock();
        if (!c) continue;
        auto ex = c->executor();
        auto it = std::find_if(by_thread.begin(), by_thread.end(),
                               [&](const auto& g) { return g.first == ex; });
        if (it == by_thread.end()) {
            by_thread.emplace_back(ex, batch{});
            it = std::prev(by_thread.end());
        }
        it->second.emplace_back(std::move(c), std::move(p.frames));
    }
    pending_.clear();
    pending_frames_ = 0;
    for (auto& [ex, b] : by_thread) {
        net::post(ex, [b = std::move(b)]() mutable {
            for (auto& [c, frames] : b)
                c->deliver_here(frames);
        });
    }
}

std::optional<error_code> hub::plan(subscription& s, std::string& message) {
    if (!rules_) {
        message = "no rules are loaded";
        return error_code::unavailable;
    }
    auto lookup = [this](std::string_view t) -> const rules::table_schema* {
        auto* ts = table_for(std::string(t));
        return ts ? &ts->schema : nullptr;
    };
    auto r = rules::plan_subscription(rules_, {s.query, s.claims.get(), s.params}, lookup);
    if (auto* e = std::get_if<rules::plan_error>(&r)) {
        message = e->message;
        return code_of(e->code);
    }
    s.plan = std::move(std::get<rules::subscription_plan>(r));
    return std::nullopt;
}

void hub::subscribe(subscribe_request r) {
    auto& mine = by_connection_[r.connection];
    if (mine.count(*r.id)) {
        send_error(r.to, error_code::duplicate_id,
                   "id " + *r.id + " is already in use on this connection", *r.id);
        flush();
        return;
    }
    if (mine.size() >= limits_.max_subscriptions_per_connection) {
        send_error(r.to, error_code::too_many_subscriptions,
                   "at most " + std::to_string(limits_.max_subscriptions_per_connection) +
                       " subscriptions per connection",
                   *r.id);
        flush();
        return;
    }
    auto s = std::make_unique<subscription>();
    s->key = next_key_++;
    s->connection = r.connection;
    s->id = r.id;
    s->to = r.to;
    s->query = std::move(r.query);
    s->params = std::move(r.params);
    s->snapshot = r.snapshot;
    s->transactions = r.transactions;
    s->claims = std::move(r.claims);
    std::string message;
    if (auto code = plan(*s, message)) {
        send_error(s->to, *code, message, *s->id);
        flush();
        return;
    }
    if (s->plan.rule->max_subscriptions) {
        std::size_t same_table = 0;
        for (const auto& [id, key] : mine) {
            auto it = subs_.find(key);
            if (it != subs_.end() && it->second->plan.table == s->plan.table) ++same_table;
        }
        if (same_table >= *s->plan.rule->max_subscriptions) {
            send_error(s->to, error_code::too_many_subscriptions,
                       "at most " + std::to_string(*s->plan.rule->max_subscriptions) +
                           " subscriptions to " + s->plan.table + " per connection",
                       *s->id);
            flush();
            return;
        }
    }
    std::optional<cdc::position> after;
    if (r.after) {
        // A resume: the log must hold everything after the position, of this very log.
        const auto parsed = parse_position_text(*r.after);
        const char* refusal = nullptr;
        if (!parsed) {
            send_error(s->to, error_code::bad_message,
                       "\"after\" is not a position this engine sent", *s->id);
            flush();
            return;
        }
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
            send_error(s->to, error_code::resync_required, refusal, *s->id);
            flush();
            return;
        }
        after = parsed->second;
    }
    const table_state* ts = table_for(s->plan.table);
    matcher_.add(s->key, ts->schema, s->plan.filter.get(), s->plan.updates.get());
    mine[*s->id] = s->key;
    auto& ref = *s;
    subs_.emplace(s->key, std::move(s));
    ++metrics_.subscriptions;
    if (after) {
        start_replay(ref, *after);
    } else {
        start_snapshot(ref);
    }
}

void hub::set_log(log::change_log* log) {
    log_ = log;
    epoch_prefix_ = log ? fmt::format("{:016x}/", log->epoch()) : "0000000000000000/";
}

std::string hub::position_text(cdc::position p) const {
    std::string out = epoch_prefix_;
    cdc::append_position(out, p);
    return out;
}

// ---- transactions as one message ----
//
// A batch holds shared bodies (made once per projection, as for single events), never more than
// limits_.batch_max_changes of them or about limits_.batch_max_bytes: memory stays bounded
// however large a transaction is, and the client applies a transaction when `last` is true.

void hub::batch_add(subscription& s, std::string_view type, std::shared_ptr<const std::string> body,
                    cdc::position pos) {
    if (!s.batch.empty()) {
        if (s.batch.front().pos.commit_lsn != pos.commit_lsn) {
            batch_send(s, true);
        } else if (s.batch.size() >= limits_.batch_max_changes ||
                   s.batch_bytes + body->size() > limits_.batch_max_bytes) {
            batch_send(s, false);
        }
    }
    if (!s.batch_listed) {
        open_batches_.push_back(s.key);
        s.batch_listed = true;
    }
    s.batch_bytes += body->size();
    s.batch.push_back({type, std::move(body), pos});
}

void hub::batch_send(subscription& s, bool last) {
    if (s.batch.empty()) return;
    std::vector<protocol::batch_change> changes;
    changes.reserve(s.batch.size());
    for (const auto& e : s.batch)
        changes.push_back({e.type, *e.body});
    const cdc::position end = s.batch.back().pos;
    send(s.to, frame::of(protocol::transaction(*s.id, changes, last)));
    s.batch.clear();
    s.batch_bytes = 0;
    if (!last) {
        // Out at once: the part of a large transaction already made must not pile up here.
        flush();
        return;
    }
    if (s.ready_after_batch) {
        send_ready(s, std::max(*s.ready_after_batch, end));
        s.ready_after_batch.reset();
    }
}

void hub::batch_go_live(subscription& s, cdc::position ready_at) {
    if (s.batch.empty()) {
        send_ready(s, ready_at);
        return;
    }
    // `ready` follows the batch, at its end when that is later: changes buffered during a
    // snapshot may have committed after the sync message, and a client resuming after `ready`
    // must not get them again.
    s.ready_after_batch = ready_at;
    if (txn_ && s.batch.front().pos.commit_lsn == txn_->commit_lsn) return; // the rest comes live
    batch_send(s, true);
}

// ---- resuming from the change log ----
//
// The replay runs on this thread, a batch of changes per turn of the event loop, so it needs no
// lock and no hand-over: the log is appended on this thread before a change is matched, so
// "everything logged so far" is exactly "everything the stream has handed over". While the
// replay runs, live changes skip the subscription (it will read them from the log); when the
// replay reaches the end of the log, the subscription is live from the very next change.

void hub::start_replay(subscription& s, cdc::position after) {
    s.state = subscription::phase::replay;
    s.resume_after = after;
    s.reader = log_->open_reader(after);
    ++metrics_.resumes;
    net::post(executor_, [this, key = s.key] { replay_step(key); });
}

void hub::replay_step(std::uint64_t key) {
    auto it = subs_.find(key);
    if (it == subs_.end()) return;
    subscription& s = *it->second;
    if (s.state != subscription::phase::replay) return;
    auto c = s.to.lock();
    if (!c) return;
    if (c->flow().queued > limits_.replay_pause_bytes) {
        // Let the client drain before reading on: its queue stays under the slow-consumer budget.
        auto t = std::make_shared<net::steady_timer>(executor_, std::chrono::milliseconds(5));
        t->async_wait([this, key, t](boost::system::error_code ec) {
            if (!ec) replay_step(key);
        });
        return;
    }
    log_->submit();
    const cdc::position until = log_->last_position();
    log::replay_status status = log::replay_status::gone;
    try {
        status = s.reader->read(until, limits_.replay_batch,
                                [&](const cdc::change& ch) { replay_one(s, ch); });
    } catch (const std::exception& e) {
        spdlog::error("replaying the change log for subscription {}: {}", *s.id, e.what());
    }
    if (s.replay_shape_changed) {
        // Dropped only now: the reader had to finish its call first.
        ++metrics_.resyncs;
        drop(key, error_code::resync_required,
             "the table changed shape since that position: subscribe again without \"after\"");
        flush();
        return;
    }
    switch (status) {
    case log::replay_status::gone:
        ++metrics_.resyncs;
        drop(key, error_code::resync_required,
             "the change log dropped the history this resume needed: subscribe again without "
             "\"after\"");
        break;
    case log::replay_status::more:
        net::post(executor_, [this, key] { replay_step(key); });
        break;
    case log::replay_status::reached:
        s.state = subscription::phase::live;
        s.reader.reset();
        if (s.transactions) {
            batch_go_live(s, std::max(until, s.resume_after));
        } else {
            send_ready(s, std::max(until, s.resume_after));
        }
        break;
    }
    flush();
}

void hub::replay_one(subscription& s, const cdc::change& c) {
    if (s.replay_shape_changed || c.relation->qualified_name != s.plan.table) return;
    table_state* ts = table_for(s.plan.table);
    if (!ts) return;
    if (c.op == cdc::change_op::truncate) {
        emit(s, "truncate", truncate_body(c), c.pos);
        ++metrics_.events_replayed;
        return;
    }
    // The plan's column positions are today's; a change logged before the table changed shape
    // cannot be read with them.
    const auto& cols = c.relation->columns;
    bool same = cols.size() == ts->schema.columns.size();
    for (std::size_t i = 0; same && i < cols.size(); ++i)
        same = cols[i].name == ts->schema.columns[i].name;
    if (!same) {
        s.replay_shape_changed = true;
        return;
    }
    // A single subscription's filter may read any column: load them all.
    if (all_columns_.size() != cols.size()) {
        all_columns_.resize(cols.size());
        std::iota(all_columns_.begin(), all_columns_.end(), std::size_t{0});
    }
    load_values(c, *ts, all_columns_);
    const auto event = rules::decide(kind_of(c.op), *s.plan.filter, s.plan.updates.get(),
                                     new_values_, old_values_);
    if (!event) return;
    emit(s, event_name(*event), event_body(c, s.plan.columns, *event), c.pos);
    ++metrics_.events_replayed;
}

void hub::emit(subscription& s, std::string_view type, std::shared_ptr<const std::string> body,
               cdc::position pos) {
    if (s.transactions) {
        batch_add(s, type, std::move(body), pos);
    } else {
        send(s.to, frame{protocol::event_head(type), s.id, std::move(body)});
    }
}

void hub::send_ready(subscription& s, cdc::position at) {
    send(s.to, frame::of(protocol::ready(*s.id, position_text(at))));
}

void hub::start_snapshot(subscription& s) {
    const table_state* ts = table_for(s.plan.table);
    snapshot_job job;
    job.key = s.key;
    job.id = s.id;
    job.to = s.to;
    job.rows = s.snapshot;
    job.max_rows = limits_.snapshot_max_rows;
    if (s.snapshot) {
        std::vector<std::string> names;
        for (const auto& c : ts->schema.columns)
            names.push_back(c.name);
        std::string cols;
        for (auto pos : s.plan.columns) {
            if (!cols.empty()) cols += ", ";
            cols += quote_identifier(names[pos]);
            job.column_names.push_back(names[pos]);
            job.column_types.push_back(ts->types[pos]);
        }
        job.sql = "SELECT " + cols + " FROM " + quote_identifier(ts->schema.schema) + "." +
                  quote_identifier(ts->schema.name) + " WHERE " +
                  s.plan.filter->to_sql(names, job.params);
    }
    job.recent_xids = recent_xids_;
    // A transaction the stream is in the middle of handed over its first changes before this
    // subscription existed: it counts as streamed, so the snapshot is retaken until it sees it.
    if (txn_) job.recent_xids.push_back(txn_->xid);
    std::sort(job.recent_xids.begin(), job.recent_xids.end());
    job.recent_xids.erase(std::unique(job.recent_xids.begin(), job.recent_xids.end()),
                          job.recent_xids.end());
    s.cancel = std::make_shared<std::atomic<bool>>(false);
    job.cancelled = s.cancel;
    job.done = [this](snapshot_result r) {
        net::post(executor_, [this, r = std::move(r)]() mutable { snapshot_done(std::move(r)); });
    };
    snapshots_.submit(std::move(job));
}

void hub::snapshot_done(snapshot_result r) {
    auto it = subs_.find(r.key);
    if (it == subs_.end()) return; // unsubscribed meanwhile
    subscription& s = *it->second;
    if (!r.ok) {
        drop(r.key, r.code, r.message);
        flush();
        return;
    }
    s.meta = std::move(r.meta);
    s.have_meta = true;
    s.rows_done = true;
    // Drop what the snapshot already contains: transactions committed before it.
    std::erase_if(s.buffer, [&](const subscription::buffered& b) {
        return s.snapshot_has({b.xid, b.commit_lsn, 0});
    });
    try_go_live(s);
    flush();
}

void hub::try_go_live(subscription& s) {
    if (s.state != subscription::phase::snapshot || !s.rows_done || !s.sync_seen) return;
    if (s.transactions) {
        // The buffer is in commit order, so batching it groups it by transaction.
        for (auto& b : s.buffer)
            batch_add(s, b.type, std::move(b.f.body), b.pos);
        metrics_.events_out += s.buffer.size();
        s.buffer.clear();
        s.buffer_bytes = 0;
        s.state = subscription::phase::live;
        batch_go_live(s, s.sync_position);
        return;
    }
    // `ready` stands at the sync message: buffered changes from before it come first, those the
    // stream handed over after it (while the snapshot was still finishing) come after it, so a
    // client resuming after any position it received never gets one twice.
    bool ready_sent = false;
    for (auto& b : s.buffer) {
        if (!ready_sent && s.sync_position < b.pos) {
            send_ready(s, s.sync_position);
            ready_sent = true;
        }
        send(s.to, std::move(b.f));
    }
    if (!ready_sent) send_ready(s, s.sync_position);
    metrics_.events_out += s.buffer.size();
    s.buffer.clear();
    s.buffer_bytes = 0;
    s.state = subscription::phase::live;
}

void hub::drop(std::uint64_t key, std::optional<error_code> code, const std::string& message) {
    auto it = subs_.find(key);
    if (it == subs_.end()) return;
    subscription& s = *it->second;
    matcher_.remove(key);
    if (s.cancel) *s.cancel = true;
    if (code) send_error(s.to, *code, message, *s.id);
    auto c = by_connection_.find(s.connection);
    if (c != by_connection_.end()) {
        c->second.erase(*s.id);
        if (c->second.empty()) by_connection_.erase(c);
    }
    subs_.erase(it);
    --metrics_.subscriptions;
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
    send(to, frame::of(protocol::unsubscribed(id)));
    flush();
}

void hub::listen(std::weak_ptr<client> to, std::uint64_t connection,
                 std::shared_ptr<const std::string> id, const std::string& channel,
                 std::shared_ptr<const nlohmann::json> claims) {
    if (key_of(connection, *id) != 0) {
        send_error(to, error_code::duplicate_id,
                   "id " + *id + " is already in use on this connection", *id);
        flush();
        return;
    }
    for (const auto& [ch, entries] : listeners_) {
        for (const auto& e : entries) {
            if (e->connection == connection && *e->id == *id) {
                send_error(to, error_code::duplicate_id,
                           "id " + *id + " is already in use on this connection", *id);
                flush();
                return;
            }
        }
    }
    if (!rules_) {
        send_error(to, error_code::unavailable, "no rules are loaded", *id);
        flush();
        return;
    }
    auto r = rules::plan_listen(rules_, channel, claims ? *claims : nlohmann::json::object());
    if (auto* e = std::get_if<rules::plan_error>(&r)) {
        send_error(to, code_of(e->code), e->message, *id);
        flush();
        return;
    }
    auto entry = std::make_unique<listener_entry>();
    entry->connection = connection;
    entry->id = id;
    entry->to = to;
    entry->claims = std::move(claims);
    entry->plan = std::move(std::get<rules::listen_plan>(r));
    listeners_[channel].push_back(std::move(entry));
    ++metrics_.listens;
    send(to, frame::of(protocol::ready(*id, "")));
    flush();
}

void hub::unlisten(std::uint64_t connection, const std::string& id,
                   std::weak_ptr<client> to_if_unknown) {
    for (auto& [ch, entries] : listeners_) {
        for (auto it = entries.begin(); it != entries.end(); ++it) {
            if ((*it)->connection == connection && *(*it)->id == id) {
                auto to = (*it)->to;
                entries.erase(it);
                --metrics_.listens;
                send(to, frame::of(protocol::unsubscribed(id)));
                flush();
                return;
            }
        }
    }
    send_error(to_if_unknown, error_code::unknown_id, "no subscription or listen with id " + id,
               id);
    flush();
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
    for (auto& [ch, entries] : listeners_) {
        auto before = entries.size();
        std::erase_if(entries, [&](const auto& e) { return e->connection == connection; });
        metrics_.listens -= static_cast<std::int64_t>(before - entries.size());
    }
}

void hub::reauthenticate(std::uint64_t connection, std::shared_ptr<const nlohmann::json> claims) {
    auto c = by_connection_.find(connection);
    std::vector<std::uint64_t> keys;
    if (c != by_connection_.end()) {
        for (const auto& [id, key] : c->second)
            keys.push_back(key);
    }
    for (auto key : keys) {
        auto& s = *subs_.at(key);
        s.claims = claims;
    }
    for (auto& [ch, entries] : listeners_) {
        for (auto& e : entries) {
            if (e->connection == connection) e->claims = claims;
        }
    }
    set_rules(rules_); // plans everything again; only this connection's claims changed
}

void hub::set_rules(std::shared_ptr<const rules::rule_set> new_rules) {
    rules_ = std::move(new_rules);
    std::vector<std::uint64_t> keys;
    for (const auto& [key, s] : subs_)
        keys.push_back(key);
    for (auto key : keys) {
        subscription& s = *subs_.at(key);
        const std::string before = s.shape();
        auto old_plan = std::move(s.plan);
        matcher_.remove(key);
        std::string message;
        if (auto code = plan(s, message)) {
            s.plan = std::move(old_plan); // drop() reads it
            drop(key, code, message);
            continue;
        }
        if (s.shape() != before) {
            drop(key, error_code::resync_required,
                 "the rules changed what this subscription may see: subscribe again");
            continue;
        }
        matcher_.add(key, table_for(s.plan.table)->schema, s.plan.filter.get(),
                     s.plan.updates.get());
    }
    for (auto& [ch, entries] : listeners_) {
        for (auto it = entries.begin(); it != entries.end();) {
            auto& e = **it;
            auto r =
                rules::plan_listen(rules_, ch, e.claims ? *e.claims : nlohmann::json::object());
            if (auto* err = std::get_if<rules::plan_error>(&r)) {
                send_error(e.to, code_of(err->code), err->message, *e.id);
                --metrics_.listens;
                it = entries.erase(it);
                continue;
            }
            e.plan = std::move(std::get<rules::listen_plan>(r));
            ++it;
        }
    }
    flush();
}

std::vector<std::string> hub::channels() const {
    std::vector<std::string> out;
    if (!rules_) return out;
    for (const auto& [name, rule] : rules_->channels())
        out.push_back(name);
    return out;
}

// ---- the stream ----

void hub::on_begin(const cdc::transaction_info& t) {
    if (log_) log_->begin(t);
    txn_ = &t;
}

const std::string& hub::commit_time_json(const cdc::change& c) {
    // Made once per transaction; a replay between two changes of a live one has its own.
    if (c.txn && c.txn->commit_lsn != commit_time_of_) {
        commit_time_json_.clear();
        cdc::append_rfc3339_json(commit_time_json_, c.txn->commit_time);
        commit_time_of_ = c.txn->commit_lsn;
    }
    return commit_time_json_;
}

std::shared_ptr<const std::string> hub::truncate_body(const cdc::change& c) {
    return std::make_shared<const std::string>(",\"position\":\"" + position_text(c.pos) +
                                               "\",\"commit_time\":" + commit_time_json(c) + "}");
}

namespace {

rules::value value_of(const pgoutput::datum& d, rules::column_family f) {
    if (d.kind != pgoutput::datum_kind::text) return rules::value::null(); // null, unsent, toast
    return rules::from_pg_text(f, d.data);
}

// {"col":value,...} for the projected columns; unchanged TOASTed values are left out and named.
void append_projection(std::string& out, const cdc::type_catalog& types,
                       const cdc::relation_schema& rel, const pgoutput::tuple& row,
                       const std::vector<std::size_t>& columns, std::string* unchanged) {
    out.push_back('{');
    bool first = true;
    for (auto pos : columns) {
        if (pos >= row.size()) continue;
        const auto& d = row[pos];
        const auto& col = rel.columns[pos];
        if (d.kind == pgoutput::datum_kind::unchanged_toast ||
            d.kind == pgoutput::datum_kind::missing) {
            if (unchanged && d.kind == pgoutput::datum_kind::unchanged_toast) {
                if (!unchanged->empty()) unchanged->push_back(',');
                cdc::json::append_string(*unchanged, col.name);
            }
            continue;
        }
        if (!first) out.push_back(',');
        first = false;
        cdc::json::append_key(out, col.name);
        if (d.kind == pgoutput::datum_kind::null) {
            out += "null";
        } else if (d.kind == pgoutput::datum_kind::binary) {
            cdc::append_binary_json(out, d.data);
        } else {
            cdc::append_value_json(out, types, col.type, d.data);
        }
    }
    out.push_back('}');
}

} // namespace

void hub::load_values(const cdc::change& c, const table_state& ts,
                      std::span<const std::size_t> columns) {
    const std::size_t width = ts.schema.columns.size();
    const bool full_old = c.old && c.old_kind == pgoutput::old_kind::full;
    // The old row is matched when it is whole (REPLICA IDENTITY FULL). For a delete without it,
    // the key columns Postgres sent are all there is: a filter reading other columns is unknown
    // there and denies. For an update without it, the old row is unknown (see rules/matcher.hpp).
    const bool use_old = c.old && (full_old || c.op == cdc::change_op::delete_);
    new_values_.assign(width, rules::value::null());
    old_values_.clear();
    if (use_old) old_values_.assign(width, rules::value::null());
    for (auto pos : columns) {
        if (pos >= width) continue;
        const auto family = ts.schema.columns[pos].family;
        if (c.row && pos < c.row->size()) new_values_[pos] = value_of((*c.row)[pos], family);
        if (use_old && pos < c.old->size()) old_values_[pos] = value_of((*c.old)[pos], family);
    }
}

std::shared_ptr<const std::string> hub::event_body(const cdc::change& c,
                                                   const std::vector<std::size_t>& columns,
                                                   rules::event_kind event) {
    const bool full_old = c.old && c.old_kind == pgoutput::old_kind::full;
    std::string out, unchanged;
    const pgoutput::tuple* row = event == rules::event_kind::delete_ ? c.old : c.row;
    out += ",\"row\":";
    append_projection(out, types_, *c.relation, *row, columns, &unchanged);
    if (event == rules::event_kind::update && full_old) {
        out += ",\"old\":";
        append_projection(out, types_, *c.relation, *c.old, columns, nullptr);
    }
    if (!unchanged.empty()) out += ",\"unchanged_toast\":[" + unchanged + "]";
    out += ",\"position\":\"" + position_text(c.pos) + "\",\"commit_time\":" + commit_time_json(c) +
           "}";
    return std::make_shared<const std::string>(std::move(out));
}

void hub::on_change(const cdc::change& c) {
    if (log_) log_->change(c);
    ++metrics_.changes_in;
    const std::string& table = c.relation->qualified_name;
    metrics_.count_table_change(table);
    auto ts_it = tables_.find(table);
    if (ts_it == tables_.end()) return; // nobody ever subscribed to it
    const table_state& ts = *ts_it->second;

    if (c.op == cdc::change_op::truncate) {
        std::vector<rules::subscription_id> all;
        matcher_.all(table, all);
        if (all.empty()) return;
        auto body = truncate_body(c);
        for (auto key : all)
            deliver(*subs_.at(key), "truncate", body, c);
        return;
    }

    load_values(c, ts, matcher_.columns_needed(table));
    hits_.clear();
    matcher_.match(table, kind_of(c.op), new_values_, old_values_, hits_);
    if (hits_.empty()) return;

    // One body per (projection, event): subscribers with the same columns share it.
    struct cached {
        const std::vector<std::size_t>* columns;
        rules::event_kind event;
        std::shared_ptr<const std::string> body;
    };
    std::vector<cached> bodies;
    for (const auto& h : hits_) {
        auto sit = subs_.find(h.id);
        if (sit == subs_.end()) continue;
        subscription& s = *sit->second;
        if (s.state == subscription::phase::replay) continue; // it reads this from the log
        std::shared_ptr<const std::string> body;
        for (const auto& b : bodies) {
            if (b.event == h.event && *b.columns == s.plan.columns) body = b.body;
        }
        if (!body) {
            body = event_body(c, s.plan.columns, h.event);
            bodies.push_back({&s.plan.columns, h.event, body});
        }
        deliver(s, event_name(h.event), std::move(body), c);
    }
    // A large transaction does not pile up: frames go out as they are made.
    if (pending_frames_ >= 1024) flush();
}

// A live change for one subscription: sent (or batched) when it is live, kept while its
// snapshot is taken unless the snapshot already has it; nothing while it replays.
void hub::deliver(subscription& s, std::string_view type, std::shared_ptr<const std::string> body,
                  const cdc::change& c) {
    switch (s.state) {
    case subscription::phase::replay:
        return;
    case subscription::phase::live:
        if (c.pos <= s.resume_after) return; // a resumed client has it
        emit(s, type, std::move(body), c.pos);
        ++metrics_.events_out;
        return;
    case subscription::phase::snapshot:
        break;
    }
    if (s.snapshot_has(*c.txn)) return;
    frame f{protocol::event_head(type), s.id, std::move(body)};
    s.buffer_bytes += f.bytes();
    s.buffer.push_back({std::move(f), c.txn->xid, c.txn->commit_lsn, type, c.pos});
    if (s.buffer_bytes > limits_.max_buffered_bytes) {
        drop(s.key, error_code::resync_required,
             "too many changes arrived while the snapshot was taken: subscribe again");
    }
}

void hub::on_message(const cdc::logical_message& m) {
    if (m.transactional) return;
    // Everything before a non-transactional message has been handed over: once the log has it,
    // the slot may be confirmed to here (heartbeats keep an idle slot moving this way).
    if (log_) log_->mark(m.pos.commit_lsn);
    if (m.prefix != "pgpush") return;
    std::string_view content(reinterpret_cast<const char*>(m.content.data()), m.content.size());
    if (content.rfind("sync:", 0) != 0) return;
    std::uint64_t key = 0;
    auto digits = content.substr(5);
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), key);
    if (ec != std::errc{}) return;
    auto it = subs_.find(key);
    if (it == subs_.end()) return;
    subscription& s = *it->second;
    s.sync_seen = true;
    s.sync_position = m.pos;
    try_go_live(s);
    flush();
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
            if (it == subs_.end()) return true; // dropped, its batch with it
            subscription& s = *it->second;
            if (s.batch.empty()) {
                s.batch_listed = false;
                return true;
            }
            if (s.state != subscription::phase::live ||
                s.batch.front().pos.commit_lsn != t.commit_lsn)
                return false;
            batch_send(s, true);
            s.batch_listed = false;
            return true;
        });
    }
    flush();
    txn_ = nullptr;
    if (log_) {
        log_->commit(t, end_lsn); // confirmed when durable (server wires on_durable)
    } else if (confirm) {
        confirm(end_lsn);
    }
}

void hub::on_relation(const cdc::relation_schema& r) {
    auto it = tables_.find(r.qualified_name);
    if (it == tables_.end()) return; // described when first subscribed
    auto& ts = *it->second;
    auto fresh = rules_schema(r, types_);
    bool same = fresh.columns.size() == ts.schema.columns.size();
    for (std::size_t i = 0; same && i < fresh.columns.size(); ++i) {
        same = fresh.columns[i].name == ts.schema.columns[i].name &&
               fresh.columns[i].family == ts.schema.columns[i].family;
    }
    ts.schema = std::move(fresh);
    ts.types.clear();
    for (const auto& c : r.columns)
        ts.types.push_back(c.type);
    if (!same) {
        spdlog::info("table {} changed shape; planning its subscriptions again", r.qualified_name);
        set_rules(rules_);
    }
}

void hub::on_idle() {
    flush();
}

void hub::on_stop() {
    flush();
    if (log_ && confirm) {
        log_->drain();
        if (auto l = log_->durable(); l.valid()) confirm(l);
    }
}

void hub::on_notify(const cdc::notification& n) {
    ++metrics_.notifications_in;
    auto it = listeners_.find(n.channel);
    if (it == listeners_.end() || it->second.empty()) return;
    auto payload = nlohmann::json::parse(n.payload, nullptr, false);
    const nlohmann::json* as_json = payload.is_discarded() ? nullptr : &payload;
    std::shared_ptr<const std::string> body;
    for (const auto& e : it->second) {
        if (e->plan.filter) {
            // A filter reads payload fields: a payload that is not JSON has none, which denies.
            if (as_json == nullptr ||
                e->plan.filter->evaluate({{}, {}, as_json}) != rules::tri::true_)
                continue;
        }
        if (!body) {
            std::string full = protocol::notify("0", n.channel, n.payload);
            // Everything after the id: shared by every listener.
            body = std::make_shared<const std::string>(full.substr(full.find(",\"channel\"")));
        }
        send(e->to, frame{"{\"type\":\"notify\",\"id\":", e->id, body});
        ++metrics_.notifications_out;
    }
    flush();
}

} // namespace pgpush::push
