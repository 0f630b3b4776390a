#include "push/hub.hpp"

#include <map>

#include <boost/asio/io_context.hpp>
#include <gtest/gtest.h>

#include "rules/rule_set.hpp"
#include "tests/support/hub_fakes.hpp"

// The hub's hard paths, with fakes for what it talks to (clients, snapshot workers, the catalog,
// the change log), on one thread. These run under AddressSanitizer in CI: a subscription freed
// while a fan-out still holds it is a crash there, not a flake.

namespace pgpush::push {
namespace {

namespace net = boost::asio;
using nlohmann::json;

using fakes::fake_client;
using fakes::fake_describer;
using fakes::fake_log;
using fakes::fake_snapshots;

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

const char* chat_lookups = R"(
lookups:
  my_rooms: "SELECT room_id FROM room_members WHERE user_id = auth.sub"
tables:
  messages:
    rows: "row.room_id in lookup.my_rooms"
    columns: [id, room_id, body]
)";

class hub_test : public ::testing::Test {
protected:
    hub_test() { make_hub({}); }

    void make_hub(hub_limits limits) {
        h.reset();
        h = std::make_unique<hub>(io.get_executor(), types, stats, snapshots, describer, limits);
        h->set_rules(rules_of(all_rooms));
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
        fakes::finish_snapshot(*h, snapshots, key, at);
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

    // ---- lookups ----

    void use_lookups() {
        h->set_rules(rules_of(chat_lookups));
        run();
    }

    // The one lookup load waiting (its job collects the rows).
    std::uint64_t lookup_job() {
        auto keys = snapshots.waiting(true);
        EXPECT_EQ(keys.size(), 1u);
        return keys.empty() ? 0 : keys.front();
    }

    // The one subscription snapshot waiting.
    std::uint64_t subscription_job() {
        auto keys = snapshots.waiting(false);
        EXPECT_EQ(keys.size(), 1u);
        return keys.empty() ? 0 : keys.front();
    }

    // Loads my_rooms from a snapshot holding `rows` (user_id, room_id) taken at `at`.
    void load_members(const std::vector<std::pair<std::string, int>>& rows, cdc::lsn at) {
        std::vector<std::vector<std::optional<std::string>>> text;
        for (const auto& [user, room] : rows)
            text.push_back({user, std::to_string(room), "t"}); // the lookup's columns() order
        fakes::finish_snapshot(*h, snapshots, lookup_job(), at, std::move(text));
        run();
    }

    // One transaction inserting or deleting the room_members row (user, room) at `lsn`.
    void member(std::uint64_t lsn, cdc::change_op op, const std::string& user, int room) {
        const std::string r = std::to_string(room);
        const cdc::pgoutput::tuple row = {fakes::text_datum(user), fakes::text_datum(r),
                                          fakes::text_datum("t")};
        const bool gone = op == cdc::change_op::delete_;
        cdc::change c =
            fakes::change_of(members, op, gone ? nullptr : &row, gone ? &row : nullptr, {});
        fakes::transaction(*h, lsn, std::span(&c, 1));
        run();
    }

    // What a client got, one word each ("insert <id>" for inserts), and forgets it.
    static std::vector<std::string> seen(fake_client& c) {
        std::vector<std::string> out;
        for (const auto& m : c.received) {
            out.push_back(m["type"] == "insert" ? "insert " + m["row"]["id"].dump()
                                                : m["type"].get<std::string>());
        }
        c.received.clear();
        return out;
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
    std::shared_ptr<const cdc::relation_schema> relation = fakes::messages_relation();
    std::shared_ptr<const cdc::relation_schema> members = fakes::room_members_relation();
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

// ---- lookups: a changed result resets what read it ----

TEST_F(hub_test, a_member_added_gets_a_reset_then_a_fresh_snapshot_then_ready) {
    use_lookups();
    load_members({{"u1", 1}, {"u2", 5}}, cdc::lsn{50});
    auto c = client(1);
    subscribe(c, "s", "SELECT id, room_id FROM messages", {{"sub", "u1"}});
    finish_snapshot(subscription_job(), cdc::lsn{100});
    insert(150, {{1, 2}, {2, 1}});
    EXPECT_EQ(seen(*c), (std::vector<std::string>{"ready", "insert 2"}));
    // Another user's membership is no business of this subscription.
    member(180, cdc::change_op::insert, "u2", 2);
    EXPECT_TRUE(seen(*c).empty());

    member(200, cdc::change_op::insert, "u1", 2);
    ASSERT_EQ(c->received.size(), 1u);
    const auto reset = c->received.front();
    EXPECT_EQ(reset["type"], "reset");
    EXPECT_EQ(reset["id"], "s");
    EXPECT_EQ(reset["position"], position_format(0).text({cdc::lsn{200}, 0}));
    c->received.clear();
    EXPECT_TRUE(snapshots.cancelled.empty()) << "it was live: no snapshot to cancel";
    const auto job = subscription_job();
    EXPECT_TRUE(snapshots.jobs.at(job).with_rows);
    EXPECT_EQ(stats.lookup_resets.load(), 1u);
    finish_snapshot(job, cdc::lsn{300});
    insert(400, {{3, 2}, {4, 7}});
    EXPECT_EQ(seen(*c), (std::vector<std::string>{"ready", "insert 3"}));
}

TEST_F(hub_test, a_member_removed_gets_a_reset_at_the_removal_and_nothing_of_that_room_after) {
    use_lookups();
    load_members({{"u1", 1}, {"u1", 2}}, cdc::lsn{50});
    auto c = client(1);
    subscribe(c, "s", "SELECT id, room_id FROM messages", {{"sub", "u1"}});
    finish_snapshot(subscription_job(), cdc::lsn{100});
    insert(150, {{1, 2}});
    EXPECT_EQ(seen(*c), (std::vector<std::string>{"ready", "insert 1"}));

    member(200, cdc::change_op::delete_, "u1", 2);
    ASSERT_EQ(c->received.size(), 1u);
    EXPECT_EQ(c->received.front()["type"], "reset");
    EXPECT_EQ(c->received.front()["position"], position_format(0).text({cdc::lsn{200}, 0}));
    c->received.clear();
    // While the fresh snapshot is taken, and once it is live: room 1 only.
    insert(250, {{2, 2}, {3, 1}});
    finish_snapshot(subscription_job(), cdc::lsn{300});
    insert(400, {{4, 2}, {5, 1}});
    EXPECT_EQ(seen(*c), (std::vector<std::string>{"insert 3", "ready", "insert 5"}));
}

TEST_F(hub_test, a_subscribe_while_its_lookup_loads_waits_and_is_served_once_it_is_loaded) {
    use_lookups();
    const auto load = lookup_job();
    auto c = client(1);
    subscribe(c, "s", "SELECT id FROM messages", {{"sub", "u1"}});
    EXPECT_TRUE(c->received.empty()) << "never a silent deny while the lookup loads";
    EXPECT_EQ(h->subscription_count(), 0u);
    EXPECT_TRUE(snapshots.waiting(false).empty());
    ASSERT_EQ(h->lookups().size(), 1u);
    EXPECT_EQ(h->lookups()[0].state, "loading");

    // A change streamed while the lookup's snapshot is taken (and not in it) counts too.
    member(40, cdc::change_op::insert, "u1", 3);
    load_members({{"u1", 1}}, cdc::lsn{50});
    EXPECT_TRUE(snapshots.jobs.count(load) == 0);
    EXPECT_EQ(h->lookups()[0].state, "ready");
    EXPECT_EQ(h->lookups()[0].rows, 2u);
    EXPECT_EQ(h->subscription_count(), 1u);
    finish_snapshot(subscription_job(), cdc::lsn{100});
    insert(200, {{1, 1}, {2, 2}, {3, 3}});
    EXPECT_EQ(seen(*c), (std::vector<std::string>{"ready", "insert 1", "insert 3"}));
}

TEST_F(hub_test, a_resume_from_before_its_lookup_result_changed_is_resync_required) {
    fake_log log;
    h->set_log(&log);
    use_lookups();
    load_members({{"u1", 1}}, cdc::lsn{50});
    auto a = client(1);
    subscribe(a, "s", "SELECT id FROM messages", {{"sub", "u1"}});
    finish_snapshot(subscription_job(), cdc::lsn{100});
    insert(150, {{1, 1}});
    member(200, cdc::change_op::insert, "u1", 2);
    insert(250, {{2, 2}});
    const json u1 = {{"sub", "u1"}};
    // From before the change: the log would be read under today's result, which is not the one
    // in force then.
    auto b = client(2);
    subscribe(b, "s", "SELECT id FROM messages", u1, position_format(7).text({cdc::lsn{150}, 0}));
    ASSERT_EQ(of_type(*b, "error").size(), 1u);
    EXPECT_EQ(of_type(*b, "error")[0]["code"], "resync_required");
    // From before the lookup was in memory at all.
    auto c = client(3);
    subscribe(c, "s", "SELECT id FROM messages", u1, position_format(7).text({cdc::lsn{40}, 0}));
    ASSERT_EQ(of_type(*c, "error").size(), 1u);
    EXPECT_EQ(of_type(*c, "error")[0]["code"], "resync_required");
    // From the change on: exact.
    auto d = client(4);
    subscribe(d, "s", "SELECT id FROM messages", u1, position_format(7).text({cdc::lsn{200}, 0}));
    EXPECT_EQ(seen(*d), (std::vector<std::string>{"insert 2", "ready"}));
    // Another user's result did not change: its resume from 150 is served.
    auto e = client(5);
    subscribe(e, "s", "SELECT id FROM messages", {{"sub", "u2"}},
              position_format(7).text({cdc::lsn{150}, 0}));
    EXPECT_EQ(seen(*e), (std::vector<std::string>{"ready"}));
}

TEST_F(hub_test, a_lookup_over_lookup_max_rows_fails_and_its_waiting_subscribers_get_unavailable) {
    hub_limits limits;
    limits.lookup_max_rows = 2;
    make_hub(limits);
    use_lookups();
    const auto load = lookup_job();
    EXPECT_TRUE(snapshots.jobs.at(load).collect);
    EXPECT_EQ(snapshots.jobs.at(load).max_rows, 2u) << "the pool stops reading past the limit";
    auto a = client(1), b = client(2);
    subscribe(a, "s", "SELECT id FROM messages", {{"sub", "u1"}});
    subscribe(a, "t", "SELECT id, body FROM messages", {{"sub", "u1"}});
    EXPECT_TRUE(a->received.empty());

    fakes::fail_snapshot(*h, snapshots, load, protocol::error_code::snapshot_too_large,
                         "more than 2 rows");
    run();
    auto errors = of_type(*a, "error");
    ASSERT_EQ(errors.size(), 2u);
    for (const auto& e : errors) {
        EXPECT_EQ(e["code"], "unavailable");
        EXPECT_NE(e["message"].get<std::string>().find("lookup-max-rows"), std::string::npos)
            << e["message"];
    }
    EXPECT_EQ(h->subscription_count(), 0u);
    ASSERT_EQ(h->lookups().size(), 1u);
    EXPECT_EQ(h->lookups()[0].state, "failed");
    // It stays failed: a later subscribe is refused at once, and no load is retried.
    subscribe(b, "s", "SELECT id FROM messages", {{"sub", "u1"}});
    ASSERT_EQ(of_type(*b, "error").size(), 1u);
    EXPECT_EQ(of_type(*b, "error")[0]["code"], "unavailable");
    EXPECT_TRUE(snapshots.jobs.empty());
}

} // namespace
} // namespace pgpush::push
