#pragma once

// Fakes for what the hub talks to (clients, snapshot workers, the catalog, the change log) and
// helpers to feed it the stream by hand, all on one thread. Shared by the hub's unit tests and
// bench/lookup_bench.cpp; header-only so neither links anything more.

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <nlohmann/json.hpp>

#include "push/hub.hpp"

namespace pgpush::push::fakes {

// A connection that keeps what it is sent, as JSON.
class fake_client final : public client {
public:
    explicit fake_client(boost::asio::io_context& io, std::uint64_t id) : io_(io), id_(id) {}
    void post_frames(std::vector<frame> frames) override {
        for (auto& f : frames)
            take(f);
    }
    boost::asio::any_io_executor executor() const override { return io_.get_executor(); }
    void enqueue_frames(std::vector<frame>& frames) override {
        for (auto& f : frames)
            take(f);
    }
    std::uint64_t connection_id() const override { return id_; }
    flow_gate& flow() override { return flow_; }

    std::deque<nlohmann::json> received;

    // The next message (nullopt when none is waiting).
    std::optional<nlohmann::json> next() {
        if (received.empty()) return std::nullopt;
        auto m = received.front();
        received.pop_front();
        return m;
    }

private:
    void take(const frame& f) {
        std::string text(f.head);
        if (f.id) text += *f.id;
        text += *f.body;
        received.push_back(nlohmann::json::parse(text));
    }
    boost::asio::io_context& io_;
    std::uint64_t id_;
    flow_gate flow_;
};

// Snapshot jobs wait here until the caller finishes them (finish_snapshot below).
class fake_snapshots final : public snapshot_runner {
public:
    void submit(snapshot_job job) override { jobs[job.key] = std::move(job); }
    void cancel(std::uint64_t key) override {
        cancelled.push_back(key);
        jobs.erase(key);
    }
    // Keys of the jobs waiting whose `collect` is as given (lookup loads collect their rows).
    std::vector<std::uint64_t> waiting(bool collect) const {
        std::vector<std::uint64_t> out;
        for (const auto& [key, job] : jobs) {
            if (job.collect == collect) out.push_back(key);
        }
        return out;
    }
    std::map<std::uint64_t, snapshot_job> jobs;
    std::vector<std::uint64_t> cancelled;
};

// The tables of the chat example, by qualified name; errors on demand.
//   public.messages(id int4, room_id int4, body text)
//   public.room_members(user_id text, room_id int4, accepted bool)
class fake_describer final : public table_describer {
public:
    fake_describer() {
        add("messages", {{"id", 23, "integer"}, {"room_id", 23, "integer"}, {"body", 25, "text"}});
        add("room_members",
            {{"user_id", 25, "text"}, {"room_id", 23, "integer"}, {"accepted", 16, "boolean"}});
    }
    void describe(const std::string& qualified, callback done) override {
        ++calls;
        if (down) {
            done(std::nullopt, std::string("connection refused"));
            return;
        }
        auto it = tables.find(qualified);
        if (it == tables.end()) {
            done(std::nullopt, std::nullopt);
            return;
        }
        done(it->second, std::nullopt);
    }
    void add(const std::string& name, std::vector<cdc::column_description> columns) {
        described_table d;
        d.table.schema = "public";
        d.table.name = name;
        d.table.replica_identity = 'f';
        d.table.columns = std::move(columns);
        tables["public." + name] = std::move(d);
    }
    std::map<std::string, described_table> tables;
    bool down = false;
    int calls = 0;
};

// A change log in memory: what was appended, read back by cursors; faults on demand.
class fake_log final : public log_source {
public:
    struct entry {
        std::shared_ptr<const cdc::relation_schema> relation;
        cdc::change_op op;
        std::vector<std::string> row; // text values
        cdc::position pos;
        cdc::transaction_info txn;
    };
    void begin(const cdc::transaction_info& t) override { txn_ = t; }
    void change(const cdc::change& c) override {
        entry e{c.relation, c.op, {}, c.pos, txn_};
        if (c.row) {
            for (const auto& d : *c.row)
                e.row.emplace_back(d.data);
        }
        entries.push_back(std::move(e));
    }
    void commit(const cdc::transaction_info&, cdc::lsn) override {}
    void mark(cdc::lsn) override {}
    void gap(const std::string& table, cdc::lsn at) override { gaps.emplace_back(table, at); }
    void submit() override {}
    std::uint64_t epoch() const override { return 7; }
    log::resume_check check(std::uint64_t epoch, cdc::position) const override {
        return epoch == 7 ? log::resume_check::ok : log::resume_check::other_epoch;
    }
    std::unique_ptr<log_cursor> open(cdc::position after) override;
    cdc::position appended() const override {
        return entries.empty() ? cdc::position{} : entries.back().pos;
    }

    std::vector<entry> entries;
    std::vector<std::pair<std::string, cdc::lsn>> gaps;
    int waiting_reads = 0;      // the next reads say `waiting`
    bool throw_on_read = false; // a damaged record

private:
    cdc::transaction_info txn_;
};

class fake_cursor final : public log_cursor {
public:
    fake_cursor(fake_log& log, cdc::position after) : log_(log), after_(after) {}
    log::replay_status read(cdc::position until, std::size_t max_changes,
                            const std::function<void(const cdc::change&)>& on_change,
                            const std::function<void(std::string_view)>& on_gap) override {
        if (log_.throw_on_read) throw log::log_error("damaged record at byte 42");
        if (log_.waiting_reads > 0) {
            --log_.waiting_reads;
            return log::replay_status::waiting;
        }
        if (!gaps_reported_) {
            gaps_reported_ = true;
            for (const auto& [table, at] : log_.gaps) {
                if (at > after_.commit_lsn && on_gap) on_gap(table);
            }
        }
        std::size_t n = 0;
        for (const auto& e : log_.entries) {
            if (e.pos <= after_ || e.pos > until) continue;
            if (n == max_changes) return log::replay_status::more;
            cdc::pgoutput::tuple row;
            for (const auto& v : e.row)
                row.push_back({cdc::pgoutput::datum_kind::text, v});
            cdc::change c;
            c.op = e.op;
            c.relation = e.relation;
            c.row = &row;
            c.pos = e.pos;
            c.txn = &e.txn;
            on_change(c);
            after_ = e.pos;
            ++n;
        }
        return log::replay_status::reached;
    }

private:
    fake_log& log_;
    cdc::position after_;
    bool gaps_reported_ = false;
};

inline std::unique_ptr<log_cursor> fake_log::open(cdc::position after) {
    return std::make_unique<fake_cursor>(*this, after);
}

// ---- the stream, by hand ----

// Relation messages for the tables fake_describer knows (REPLICA IDENTITY FULL).
inline std::shared_ptr<const cdc::relation_schema> messages_relation() {
    return std::make_shared<const cdc::relation_schema>(cdc::relation_schema{
        16384,
        "public",
        "messages",
        "public.messages",
        'f',
        {{"id", 23, -1, true}, {"room_id", 23, -1, false}, {"body", 25, -1, false}}});
}

inline std::shared_ptr<const cdc::relation_schema> room_members_relation() {
    return std::make_shared<const cdc::relation_schema>(cdc::relation_schema{
        16390,
        "public",
        "room_members",
        "public.room_members",
        'f',
        {{"user_id", 25, -1, true}, {"room_id", 23, -1, true}, {"accepted", 16, -1, false}}});
}

// Tuple values: text, NULL, and a column an old key tuple did not send.
inline cdc::pgoutput::datum text_datum(std::string_view v) {
    return {cdc::pgoutput::datum_kind::text, v};
}
inline cdc::pgoutput::datum null_datum() {
    return {cdc::pgoutput::datum_kind::null, {}};
}
inline cdc::pgoutput::datum missing_datum() {
    return {cdc::pgoutput::datum_kind::missing, {}};
}

// One change of `relation` at `pos` in `txn`; the tuples are borrowed. `old` is sent in full
// (REPLICA IDENTITY FULL) unless `old_kind` says otherwise.
inline cdc::change change_of(std::shared_ptr<const cdc::relation_schema> relation,
                             cdc::change_op op, const cdc::pgoutput::tuple* row,
                             const cdc::pgoutput::tuple* old, cdc::position pos,
                             const cdc::transaction_info* txn = nullptr,
                             cdc::pgoutput::old_kind old_kind = cdc::pgoutput::old_kind::full) {
    cdc::change c;
    c.op = op;
    c.relation = std::move(relation);
    c.row = row;
    c.old = old;
    c.old_kind = old ? old_kind : cdc::pgoutput::old_kind::none;
    c.pos = pos;
    c.txn = txn;
    return c;
}

// One transaction at commit LSN `lsn` (xid 2000 + lsn) holding `changes`, handed to the hub as
// the stream would: begin, each change at (lsn, its index), commit. `changes` get their
// positions and transaction filled in here.
inline void transaction(hub& h, std::uint64_t lsn, std::span<cdc::change> changes) {
    const cdc::transaction_info t{static_cast<cdc::transaction_id>(2000 + lsn), cdc::lsn{lsn}, 0};
    h.on_begin(t);
    std::uint32_t index = 0;
    for (auto& c : changes) {
        c.pos = {cdc::lsn{lsn}, index++};
        c.txn = &t;
        h.on_change(c);
    }
    h.on_commit(t, cdc::lsn{lsn + 1});
}

// Finishes a snapshot job as a worker would: its result (with `rows` for a collecting job),
// then the stream's sync message "sync:<key>" at `at`. The snapshot holds no transaction the
// stream hands over after it (xmin = xmax = 1000, below the xids of transaction() above).
inline void finish_snapshot(hub& h, fake_snapshots& snapshots, std::uint64_t key, cdc::lsn at,
                            std::vector<std::vector<std::optional<std::string>>> rows = {}) {
    snapshot_result r;
    r.key = key;
    r.ok = true;
    r.meta.taken = true;
    r.meta.xmin = r.meta.xmax = 1000;
    r.meta.lsn = at;
    r.row_count = rows.size();
    r.rows = std::move(rows);
    snapshots.jobs.erase(key);
    h.snapshot_done(std::move(r));
    const std::string sync = "sync:" + std::to_string(key);
    cdc::logical_message m;
    m.prefix = "pgpush";
    m.content = std::as_bytes(std::span(sync.data(), sync.size()));
    m.pos = {at, 0};
    h.on_message(m);
}

// A snapshot job that failed as the pool reports it (no sync message follows).
inline void fail_snapshot(hub& h, fake_snapshots& snapshots, std::uint64_t key,
                          protocol::error_code code, std::string message) {
    snapshot_result r;
    r.key = key;
    r.ok = false;
    r.code = code;
    r.message = std::move(message);
    snapshots.jobs.erase(key);
    h.snapshot_done(std::move(r));
}

} // namespace pgpush::push::fakes
