#include "push/hub.hpp"

#include <deque>
#include <map>

#include <boost/asio/io_context.hpp>
#include <gtest/gtest.h>

#include "rules/rule_set.hpp"

// The hub's hard paths, with fakes for what it talks to (clients, snapshot workers, the catalog,
// the change log), on one thread. These run under AddressSanitizer in CI: a subscription freed
// while a fan-out still holds it is a crash there, not a flake.

namespace pgpush::push {
namespace {

namespace net = boost::asio;
using nlohmann::json;

// A connection that keeps what it is sent, as JSON.
class fake_client final : public client {
public:
    explicit fake_client(net::io_context& io, std::uint64_t id) : io_(io), id_(id) {}
    void post_frames(std::vector<frame> frames) override {
        for (auto& f : frames)
            take(f);
    }
    net::any_io_executor executor() const override { return io_.get_executor(); }
    void enqueue_frames(std::vector<frame>& frames) override {
        for (auto& f : frames)
            take(f);
    }
    std::uint64_t connection_id() const override { return id_; }
    flow_gate& flow() override { return flow_; }

    std::deque<json> received;

    // The next message (nullopt when none is waiting).
    std::optional<json> next() {
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
        received.push_back(json::parse(text));
    }
    net::io_context& io_;
    std::uint64_t id_;
    flow_gate flow_;
};

// Snapshot jobs wait here until the test finishes them.
class fake_snapshots final : public snapshot_runner {
public:
    void submit(snapshot_job job) override { jobs[job.key] = std::move(job); }
    void cancel(std::uint64_t key) override {
        cancelled.push_back(key);
        jobs.erase(key);
    }
    std::map<std::uint64_t, snapshot_job> jobs;
    std::vector<std::uint64_t> cancelled;
};

// messages(id int4, room_id int4, body text); errors on demand.
class fake_describer final : public table_describer {
public:
    void describe(const std::string& qualified, callback done) override {
        ++calls;
        if (down) {
            done(std::nullopt, std::string("connection refused"));
            return;
        }
        if (qualified != "public.messages") {
            done(std::nullopt, std::nullopt);
            return;
        }
        described_table d;
        d.table.schema = "public";
        d.table.name = "messages";
        d.table.replica_identity = 'f';
        d.table.columns = {{"id", 23, "integer"}, {"room_id", 23, "integer"}, {"body", 25, "text"}};
        done(d, std::nullopt);
    }
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

std::unique_ptr<log_cursor> fake_log::open(cdc::position after) {
    return std::make_unique<fake_cursor>(*this, after);
}

std::shared_ptr<const rules::rule_set> rules_of(const std::string& yaml) {
    auto r = rules::load_rules(yaml);
    EXPECT_TRUE(r.errors.empty()) << (r.errors.empty() ? "" : r.errors[0].message);
    return r.rules;
}

const char* all_rooms = R"(
tables:
  messages:
    rows: "row.room_id in auth.rooms"
    columns: [id, room_id, body]
)";

class hub_test : public ::testing::Test {
protected:
    hub_test() { make_hub({}); }

    void make_hub(hub_limits limits) {
        h.reset();
        h = std::make_unique<hub>(io.get_executor(), types, stats, snapshots, describer, limits);
        h->set_rules(rules_of(all_rooms));
        relation = std::make_shared<cdc::relation_schema>(cdc::relation_schema{
            16384,
            "public",
            "messages",
            "public.messages",
            'f',
            {{"id", 23, -1, true}, {"room_id", 23, -1, false}, {"body", 25, -1, false}}});
    }

    // Runs what is ready on the loop (the hub's posts, frames to clients).
    void run() {
        io.poll();
        io.restart();
    }

    std::shared_ptr<fake_client> client(std::uint64_t id) {
        return std::make_shared<fake_client>(io, id);
    }

    void subscribe(const std::shared_ptr<fake_client>& c, const std::string& id,
                   const std::string& query, json claims = {{"rooms", {1}}},
                   std::optional<std::string> after = std::nullopt) {
        new_subscription r;
        r.to = c;
        r.connection = c->connection_id();
        r.id = std::make_shared<const std::string>(json(id).dump());
        r.query = query;
        r.claims = std::make_shared<const json>(std::move(claims));
        r.after = std::move(after);
        h->subscribe(std::move(r));
        run();
    }

    // Finishes a subscription's snapshot (no rows) and passes the stream's sync marker.
    void finish_snapshot(std::uint64_t key, cdc::lsn at) {
        snapshot_result r;
        r.key = key;
        r.ok = true;
        r.meta.taken = true;
        r.meta.xmin = r.meta.xmax = 1000;
        r.meta.lsn = at;
        snapshots.jobs.erase(key);
        h->snapshot_done(std::move(r));
        const std::string sync = "sync:" + std::to_string(key);
        cdc::logical_message m;
        m.prefix = "pgpush";
        m.content = std::as_bytes(std::span(sync.data(), sync.size()));
        m.pos = {at, 0};
        h->on_message(m);
        run();
    }

    // One transaction inserting `rows` (id, room_id) at commit LSN `lsn`.
    void insert(std::uint64_t lsn, std::vector<std::pair<int, int>> rows) {
        cdc::transaction_info t{static_cast<cdc::transaction_id>(2000 + lsn), cdc::lsn{lsn}, 0};
        h->on_begin(t);
        std::uint32_t index = 0;
        for (auto [id, room] : rows) {
            const std::string a = std::to_string(id), b = std::to_string(room);
            const std::string body = "message " + a;
            cdc::pgoutput::tuple row = {{cdc::pgoutput::datum_kind::text, a},
                                        {cdc::pgoutput::datum_kind::text, b},
                                        {cdc::pgoutput::datum_kind::text, body}};
            cdc::change c;
            c.op = cdc::change_op::insert;
            c.relation = relation;
            c.row = &row;
            c.pos = {cdc::lsn{lsn}, index++};
            c.txn = &t;
            h->on_change(c);
        }
        h->on_commit(t, cdc::lsn{lsn + 1});
        run();
    }

    // Messages of `type` a client got, dropping others.
    static std::vector<json> of_type(fake_client& c, const std::string& type) {
        std::vector<json> out;
        for (const auto& m : c.received) {
            if (m.value("type", "") == type) out.push_back(m);
        }
        return out;
    }

    net::io_context io;
    cdc::type_catalog types;
    metrics stats;
    fake_snapshots snapshots;
    fake_describer describer;
    std::unique_ptr<hub> h;
    std::shared_ptr<cdc::relation_schema> relation;
};

TEST_F(hub_test, a_live_subscription_gets_its_rows_and_no_others) {
    auto c = client(1);
    subscribe(*&c, "s", "SELECT id, body FROM messages");
    ASSERT_EQ(snapshots.jobs.size(), 1u);
    finish_snapshot(snapshots.jobs.begin()->first, cdc::lsn{100});
    ASSERT_EQ(c->next().value_or(json())["type"], "ready");
    insert(200, {{1, 1}, {2, 2}, {3, 1}});
    auto inserts = of_type(*c, "insert");
    ASSERT_EQ(inserts.size(), 2u);
    EXPECT_EQ(inserts[0]["row"], json({{"id", 1}, {"body", "message 1"}}));
    EXPECT_EQ(inserts[1]["row"], json({{"id", 3}, {"body", "message 3"}}));
}

TEST_F(hub_test, subscriptions_dropped_during_a_fan_out_are_freed_after_it) {
    // Two subscriptions with one projection, both still taking their snapshots, and a buffer
    // too small for a single change: the first change ends both during one fan-out. The body
    // made for the first is shared with the second, whose plan is compared after the first was
    // dropped: freed at once, that read is a use after free.
    hub_limits tiny;
    tiny.max_buffered_bytes = 1;
    make_hub(tiny);
    auto a = client(1), b = client(2);
    subscribe(a, "s", "SELECT id, body FROM messages");
    subscribe(b, "s", "SELECT id, body FROM messages");
    ASSERT_EQ(snapshots.jobs.size(), 2u);
    insert(200, {{1, 1}, {2, 1}});
    for (auto* c : {a.get(), b.get()}) {
        auto errors = of_type(*c, "error");
        ASSERT_EQ(errors.size(), 1u);
        EXPECT_EQ(errors[0]["code"], "resync_required");
    }
    EXPECT_EQ(h->subscription_count(), 0u);
    EXPECT_EQ(snapshots.cancelled.size(), 2u) << "their snapshots are cancelled";
    EXPECT_EQ(stats.subscriptions.load(), 0);
}

TEST_F(hub_test, a_snapshot_buffer_overflow_ends_that_subscription_only) {
    hub_limits limits;
    limits.max_buffered_bytes = 2000;
    make_hub(limits);
    auto slow = client(1), live = client(2);
    subscribe(live, "s", "SELECT id FROM messages");
    finish_snapshot(snapshots.jobs.begin()->first, cdc::lsn{100});
    subscribe(slow, "s", "SELECT id, body FROM messages"); // its snapshot never finishes
    for (int i = 0; i < 50; ++i)
        insert(200 + static_cast<std::uint64_t>(i) * 10, {{i, 1}});
    auto errors = of_type(*slow, "error");
    ASSERT_EQ(errors.size(), 1u);
    EXPECT_EQ(errors[0]["code"], "resync_required");
    EXPECT_EQ(of_type(*live, "insert").size(), 50u);
    EXPECT_TRUE(of_type(*live, "error").empty());
    EXPECT_EQ(h->subscription_count(), 1u);
}

TEST_F(hub_test, a_change_log_that_cannot_be_read_ends_the_resume_with_resync_required) {
    fake_log log;
    h->set_log(&log);
    auto a = client(1), b = client(2);
    subscribe(b, "s", "SELECT id FROM messages");
    finish_snapshot(snapshots.jobs.begin()->first, cdc::lsn{100});
    insert(200, {{1, 1}});
    log.throw_on_read = true;
    subscribe(a, "s", "SELECT id FROM messages", {{"rooms", {1}}},
              position_format(7).text({cdc::lsn{150}, 0}));
    run();
    auto errors = of_type(*a, "error");
    ASSERT_EQ(errors.size(), 1u);
    EXPECT_EQ(errors[0]["code"], "resync_required");
    EXPECT_EQ(errors[0]["message"].get<std::string>().find("SQL"), std::string::npos);
    // The other subscription is unaffected.
    insert(300, {{2, 1}});
    EXPECT_EQ(of_type(*b, "insert").size(), 2u);
}

TEST_F(hub_test, a_resume_waits_while_the_log_has_not_written_what_it_was_handed) {
    fake_log log;
    h->set_log(&log);
    auto b = client(2);
    subscribe(b, "s", "SELECT id FROM messages");
    finish_snapshot(snapshots.jobs.begin()->first, cdc::lsn{100});
    insert(200, {{1, 1}});
    insert(300, {{2, 1}});
    log.waiting_reads = 3;
    auto a = client(1);
    subscribe(a, "s", "SELECT id FROM messages", {{"rooms", {1}}},
              position_format(7).text({cdc::lsn{200}, 0}));
    // While the replay waits for the writer, the stream goes on: the replay's end is fixed, and
    // what comes after it reaches the subscription after `ready`, once, in order.
    insert(400, {{3, 1}});
    for (int i = 0; i < 200 && of_type(*a, "ready").empty(); ++i)
        io.run_one_for(std::chrono::milliseconds(50));
    run();
    EXPECT_EQ(log.waiting_reads, 0);
    std::vector<std::string> seen;
    for (const auto& m : a->received) {
        seen.push_back(m["type"] == "insert" ? "insert " + m["row"]["id"].dump()
                                             : m["type"].get<std::string>());
    }
    EXPECT_EQ(seen, (std::vector<std::string>{"insert 2", "ready", "insert 3"}));
    insert(500, {{4, 1}});
    EXPECT_EQ(of_type(*a, "insert").size(), 3u);
}

TEST_F(hub_test, a_gap_in_the_table_s_history_after_the_position_is_resync_required) {
    fake_log log;
    h->set_log(&log);
    auto b = client(2);
    subscribe(b, "s", "SELECT id FROM messages");
    finish_snapshot(snapshots.jobs.begin()->first, cdc::lsn{100});
    insert(200, {{1, 1}});
    // The table leaves the publication: the live subscription ends, and the log marks the gap.
    h->set_unpublished({"public.messages"});
    run();
    auto errors = of_type(*b, "error");
    ASSERT_EQ(errors.size(), 1u);
    EXPECT_EQ(errors[0]["code"], "resync_required");
    ASSERT_EQ(log.gaps.size(), 1u);
    EXPECT_EQ(log.gaps[0].first, "public.messages");
    // While unpublished, subscribing is refused: its changes are not streamed.
    auto c = client(3);
    subscribe(c, "s", "SELECT id FROM messages");
    ASSERT_EQ(of_type(*c, "error").size(), 1u);
    EXPECT_EQ(of_type(*c, "error")[0]["code"], "unavailable");
    // Back in the publication: a resume from before the gap must resync, one after it may not.
    h->set_unpublished({});
    insert(300, {{2, 1}});
    auto d = client(4);
    subscribe(d, "s", "SELECT id FROM messages", {{"rooms", {1}}},
              position_format(7).text({cdc::lsn{200}, 0}));
    run();
    ASSERT_EQ(of_type(*d, "error").size(), 1u);
    EXPECT_EQ(of_type(*d, "error")[0]["code"], "resync_required");
    auto e = client(5);
    subscribe(e, "s", "SELECT id FROM messages", {{"rooms", {1}}},
              position_format(7).text({cdc::lsn{300}, 0}));
    run();
    EXPECT_TRUE(of_type(*e, "error").empty());
    EXPECT_EQ(of_type(*e, "ready").size(), 1u);
}

TEST_F(hub_test, a_table_that_cannot_be_described_is_unavailable_until_it_can) {
    describer.down = true;
    auto a = client(1);
    subscribe(a, "s", "SELECT id FROM messages");
    auto errors = of_type(*a, "error");
    ASSERT_EQ(errors.size(), 1u);
    EXPECT_EQ(errors[0]["code"], "unavailable");
    EXPECT_EQ(h->subscription_count(), 0u);
    describer.down = false;
    subscribe(a, "t", "SELECT id FROM messages");
    EXPECT_EQ(h->subscription_count(), 1u);
    EXPECT_EQ(snapshots.jobs.size(), 1u);
    // A table described once is not described again.
    auto b = client(2);
    subscribe(b, "s", "SELECT id FROM messages");
    EXPECT_EQ(describer.calls, 2);
}

TEST_F(hub_test, a_client_gone_while_its_table_is_described_leaves_nothing_behind) {
    // The describer answers later (as the real one does, from a worker).
    struct later final : public table_describer {
        void describe(const std::string&, callback done) override { pending = std::move(done); }
        callback pending;
    } slow;
    h = std::make_unique<hub>(io.get_executor(), types, stats, snapshots, slow, hub_limits{});
    h->set_rules(rules_of(all_rooms));
    {
        auto a = client(1);
        subscribe(a, "s", "SELECT id FROM messages");
    } // the client is gone
    ASSERT_TRUE(slow.pending);
    described_table d;
    d.table.schema = "public";
    d.table.name = "messages";
    d.table.columns = {{"id", 23, "integer"}, {"room_id", 23, "integer"}, {"body", 25, "text"}};
    slow.pending(d, std::nullopt);
    EXPECT_EQ(h->subscription_count(), 0u);
    EXPECT_TRUE(snapshots.jobs.empty());
}

TEST_F(hub_test, disconnect_cancels_a_running_snapshot) {
    auto a = client(1);
    subscribe(a, "s", "SELECT id FROM messages");
    ASSERT_EQ(snapshots.jobs.size(), 1u);
    const auto key = snapshots.jobs.begin()->first;
    h->disconnect(1);
    run();
    ASSERT_EQ(snapshots.cancelled.size(), 1u);
    EXPECT_EQ(snapshots.cancelled[0], key);
    EXPECT_EQ(h->subscription_count(), 0u);
}

} // namespace
} // namespace pgpush::push
