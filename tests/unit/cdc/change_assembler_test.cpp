#include "cdc/change_assembler.hpp"

#include <algorithm>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "cdc/byte_reader.hpp"

namespace pgpush::cdc {
namespace {

using pgoutput::datum;
using pgoutput::datum_kind;
using pgoutput::old_kind;

// ---- message builders (strings are literals: they outlive the messages) ----

datum text(std::string_view s) {
    return {datum_kind::text, s};
}
datum binary(std::string_view s) {
    return {datum_kind::binary, s};
}
datum null() {
    return {datum_kind::null, {}};
}
datum toast() {
    return {datum_kind::unchanged_toast, {}};
}

constexpr oid orders = 16385;
constexpr oid items = 16386;

pgoutput::begin begin_msg(std::uint64_t final_lsn, transaction_id xid = 700,
                          pg_timestamp time = 1000) {
    return {lsn{final_lsn}, time, xid};
}

pgoutput::commit commit_msg(std::uint64_t commit_lsn, std::uint64_t end_lsn) {
    return {0, lsn{commit_lsn}, lsn{end_lsn}, 1000};
}

// orders(id int4 key, note text, body text)
pgoutput::relation orders_relation() {
    pgoutput::relation r;
    r.id = orders;
    r.nspname = "public";
    r.relname = "orders";
    r.replica_identity = 'd';
    r.columns = {{1, "id", 23, -1}, {0, "note", 25, -1}, {0, "body", 25, -1}};
    return r;
}

// items(sku text key, qty int4)
pgoutput::relation items_relation() {
    pgoutput::relation r;
    r.id = items;
    r.nspname = "shop";
    r.relname = "items";
    r.replica_identity = 'f';
    r.columns = {{1, "sku", 25, -1}, {0, "qty", 23, -1}};
    return r;
}

pgoutput::insert insert_msg(oid rel, pgoutput::tuple row) {
    return {std::nullopt, rel, row};
}

pgoutput::update update_msg(oid rel, old_kind kind, pgoutput::tuple old, pgoutput::tuple row) {
    return {std::nullopt, rel, kind, old, row};
}

pgoutput::delete_ delete_msg(oid rel, old_kind kind, pgoutput::tuple old) {
    return {std::nullopt, rel, kind, old};
}

pgoutput::truncate truncate_msg(std::vector<oid> rels, std::uint8_t options = 0) {
    return {std::nullopt, options, rels};
}

pgoutput::message logical_msg(bool transactional, std::uint64_t at, std::string_view prefix) {
    return {std::nullopt, transactional, lsn{at}, prefix, {}};
}

// ---- a sink that records everything, copying what borrows from messages ----

struct recorded_datum {
    datum_kind kind;
    std::string data;
    bool operator==(const recorded_datum&) const = default;
};

std::vector<recorded_datum> copy(const pgoutput::tuple* t) {
    std::vector<recorded_datum> out;
    if (t) {
        for (const auto& d : *t)
            out.push_back({d.kind, std::string(d.data)});
    }
    return out;
}

struct recorded_change {
    change_op op;
    std::shared_ptr<const relation_schema> relation;
    bool has_row;
    bool has_old;
    std::vector<recorded_datum> row;
    std::vector<recorded_datum> old;
    pgoutput::old_kind kind_of_old;
    bool cascade;
    bool restart_identity;
    position pos;
    transaction_id xid;
};

struct recorded_message {
    bool transactional;
    std::string prefix;
    position pos;
    bool has_txn;
};

struct recording_sink : change_sink {
    std::vector<std::string> events; // "begin 700", "change", "message", "commit 700", ...
    std::vector<transaction_info> begins;
    std::vector<std::pair<transaction_info, lsn>> commits;
    std::vector<recorded_change> changes;
    std::vector<recorded_message> messages;
    std::vector<relation_schema> relations;

    void on_begin(const transaction_info& t) override {
        events.push_back("begin " + std::to_string(t.xid));
        begins.push_back(t);
    }
    void on_change(const change& c) override {
        events.push_back("change " + std::string(to_string(c.op)));
        changes.push_back({c.op, c.relation, c.row != nullptr, c.old != nullptr, copy(c.row),
                           copy(c.old), c.old_kind, c.truncate_cascade, c.truncate_restart_identity,
                           c.pos, c.txn ? c.txn->xid : 0});
    }
    void on_message(const logical_message& m) override {
        events.push_back("message " + std::string(m.prefix));
        messages.push_back({m.transactional, std::string(m.prefix), m.pos, m.txn != nullptr});
    }
    void on_commit(const transaction_info& t, lsn end) override {
        events.push_back("commit " + std::to_string(t.xid));
        commits.push_back({t, end});
    }
    void on_relation(const relation_schema& r) override {
        events.push_back("relation " + r.name);
        relations.push_back(r);
    }
};

template <class M>
void feed(change_assembler& a, M m) {
    pgoutput::message_variant v = std::move(m);
    a.feed(v);
}

struct assembler_test : ::testing::Test {
    type_catalog types;
    recording_sink sink;
    change_assembler assembler{types, sink};
};

// ---- relation cache ----

TEST_F(assembler_test, relation_messages_fill_the_cache) {
    EXPECT_EQ(assembler.find_relation(orders), nullptr);
    feed(assembler, orders_relation());
    const relation_schema* r = assembler.find_relation(orders);
    ASSERT_NE(r, nullptr);
    EXPECT_EQ(r->id, orders);
    EXPECT_EQ(r->schema, "public");
    EXPECT_EQ(r->name, "orders");
    EXPECT_EQ(r->qualified_name, "public.orders");
    EXPECT_EQ(r->replica_identity, 'd');
    ASSERT_EQ(r->columns.size(), 3u);
    EXPECT_EQ(r->columns[0].name, "id");
    EXPECT_EQ(r->columns[0].type, 23u);
    EXPECT_TRUE(r->columns[0].key);
    EXPECT_EQ(r->columns[1].name, "note");
    EXPECT_FALSE(r->columns[1].key);
    EXPECT_EQ(assembler.find_relation(items), nullptr);
    ASSERT_EQ(sink.relations.size(), 1u);
    EXPECT_EQ(sink.relations[0].qualified_name, "public.orders");
}

TEST_F(assembler_test, empty_namespace_means_pg_catalog) {
    auto m = orders_relation();
    m.nspname = "";
    feed(assembler, m);
    EXPECT_EQ(assembler.find_relation(orders)->qualified_name, "pg_catalog.orders");
}

TEST_F(assembler_test, relation_schema_copies_the_names_out_of_the_message) {
    std::string buffer = "temporary";
    auto m = orders_relation();
    m.relname = buffer;
    feed(assembler, m);
    buffer = "overwritten";
    EXPECT_EQ(assembler.find_relation(orders)->name, "temporary");
}

// ---- changes ----

TEST_F(assembler_test, changes_carry_op_relation_position_and_xid) {
    feed(assembler, orders_relation());
    feed(assembler, begin_msg(0x16B3748, 700, 5555));
    EXPECT_TRUE(assembler.in_transaction());
    feed(assembler, insert_msg(orders, {text("1"), text("a"), null()}));
    feed(assembler, update_msg(orders, old_kind::none, {}, {text("1"), text("b"), null()}));
    feed(assembler, delete_msg(orders, old_kind::key, {text("1"), null(), null()}));
    feed(assembler, commit_msg(0x16B3748, 0x16B3790));
    EXPECT_FALSE(assembler.in_transaction());

    EXPECT_EQ(sink.events,
              (std::vector<std::string>{"relation orders", "begin 700", "change insert",
                                        "change update", "change delete", "commit 700"}));
    ASSERT_EQ(sink.begins.size(), 1u);
    EXPECT_EQ(sink.begins[0].xid, 700u);
    EXPECT_EQ(sink.begins[0].commit_lsn, lsn{0x16B3748});
    EXPECT_EQ(sink.begins[0].commit_time, 5555);

    ASSERT_EQ(sink.changes.size(), 3u);
    const change_op ops[] = {change_op::insert, change_op::update, change_op::delete_};
    for (std::uint32_t i = 0; i < 3; ++i) {
        const auto& c = sink.changes[i];
        EXPECT_EQ(c.op, ops[i]) << i;
        ASSERT_NE(c.relation, nullptr);
        EXPECT_EQ(c.relation->id, orders) << i;
        EXPECT_EQ(c.pos, (position{lsn{0x16B3748}, i})) << i;
        EXPECT_EQ(c.xid, 700u) << i;
    }
    EXPECT_TRUE(sink.changes[0].has_row);
    EXPECT_FALSE(sink.changes[0].has_old);
    EXPECT_EQ(sink.changes[0].row[1], (recorded_datum{datum_kind::text, "a"}));
    EXPECT_TRUE(sink.changes[1].has_row);
    EXPECT_FALSE(sink.changes[1].has_old);
    EXPECT_EQ(sink.changes[1].kind_of_old, old_kind::none);
    EXPECT_EQ(sink.changes[1].row[1], (recorded_datum{datum_kind::text, "b"}));
    EXPECT_FALSE(sink.changes[2].has_row);
    EXPECT_TRUE(sink.changes[2].has_old);
    EXPECT_EQ(sink.changes[2].kind_of_old, old_kind::key);
    EXPECT_EQ(sink.changes[2].old[0], (recorded_datum{datum_kind::text, "1"}));

    ASSERT_EQ(sink.commits.size(), 1u);
    EXPECT_EQ(sink.commits[0].first.xid, 700u);
    EXPECT_EQ(sink.commits[0].second, lsn{0x16B3790});
}

TEST(change_assembler, change_row_points_at_the_message_tuple_without_copying) {
    struct pointer_sink : change_sink {
        const pgoutput::tuple* row = nullptr;
        void on_change(const change& c) override { row = c.row; }
    } sink;
    type_catalog types;
    change_assembler a(types, sink);
    feed(a, orders_relation());
    feed(a, begin_msg(0x100));
    pgoutput::message_variant v = insert_msg(orders, {text("1"), null(), null()});
    a.feed(v);
    EXPECT_EQ(sink.row, &std::get<pgoutput::insert>(v).new_tuple);
}

TEST_F(assembler_test, index_restarts_at_zero_in_each_transaction) {
    feed(assembler, orders_relation());
    feed(assembler, begin_msg(0x100, 1));
    feed(assembler, insert_msg(orders, {text("1"), null(), null()}));
    feed(assembler, insert_msg(orders, {text("2"), null(), null()}));
    feed(assembler, commit_msg(0x100, 0x110));
    feed(assembler, begin_msg(0x200, 2));
    feed(assembler, insert_msg(orders, {text("3"), null(), null()}));
    feed(assembler, commit_msg(0x200, 0x210));
    ASSERT_EQ(sink.changes.size(), 3u);
    EXPECT_EQ(sink.changes[0].pos, (position{lsn{0x100}, 0}));
    EXPECT_EQ(sink.changes[1].pos, (position{lsn{0x100}, 1}));
    EXPECT_EQ(sink.changes[2].pos, (position{lsn{0x200}, 0}));
    EXPECT_EQ(sink.changes[2].xid, 2u);
}

TEST_F(assembler_test, truncate_gives_one_change_per_relation_with_its_options) {
    feed(assembler, orders_relation());
    feed(assembler, items_relation());
    feed(assembler, begin_msg(0x300));
    feed(assembler, insert_msg(orders, {text("1"), null(), null()}));
    feed(assembler, truncate_msg({orders, items}, 3));
    feed(assembler, truncate_msg({items}, 0));
    feed(assembler, truncate_msg({orders}, 2));
    feed(assembler, commit_msg(0x300, 0x310));
    ASSERT_EQ(sink.changes.size(), 5u);
    struct {
        oid rel;
        bool cascade;
        bool restart;
    } expected[] = {
        {orders, true, true}, {items, true, true}, {items, false, false}, {orders, false, true}};
    for (std::uint32_t i = 0; i < 4; ++i) {
        const auto& c = sink.changes[i + 1];
        EXPECT_EQ(c.op, change_op::truncate) << i;
        EXPECT_EQ(c.relation->id, expected[i].rel) << i;
        EXPECT_EQ(c.cascade, expected[i].cascade) << i;
        EXPECT_EQ(c.restart_identity, expected[i].restart) << i;
        EXPECT_FALSE(c.has_row) << i;
        EXPECT_FALSE(c.has_old) << i;
        EXPECT_EQ(c.pos, (position{lsn{0x300}, i + 1})) << i;
    }
}

TEST_F(assembler_test, relation_after_alter_replaces_the_schema_for_later_changes) {
    feed(assembler, orders_relation());
    feed(assembler, begin_msg(0x100));
    feed(assembler, insert_msg(orders, {text("1"), null(), null()}));
    auto altered = orders_relation();
    altered.columns.push_back({0, "added", 16, -1});
    feed(assembler, altered);
    feed(assembler, insert_msg(orders, {text("2"), null(), null(), text("t")}));
    feed(assembler, commit_msg(0x100, 0x110));

    ASSERT_EQ(sink.changes.size(), 2u);
    EXPECT_EQ(sink.changes[0].relation->columns.size(), 3u); // in-flight change keeps its schema
    ASSERT_EQ(sink.changes[1].relation->columns.size(), 4u);
    EXPECT_EQ(sink.changes[1].relation->columns[3].name, "added");
    EXPECT_EQ(assembler.find_relation(orders)->columns.size(), 4u);

    // The old width no longer fits.
    feed(assembler, begin_msg(0x200));
    EXPECT_THROW(feed(assembler, insert_msg(orders, {text("3"), null(), null()})), protocol_error);
}

// ---- old tuples and TOAST ----

TEST_F(assembler_test, key_old_tuple_marks_non_key_columns_missing) {
    feed(assembler, orders_relation());
    feed(assembler, begin_msg(0x100));
    feed(assembler, update_msg(orders, old_kind::key, {text("1"), null(), null()},
                               {text("2"), text("n"), text("b")}));
    feed(assembler, delete_msg(orders, old_kind::key, {text("2"), null(), null()}));
    feed(assembler, commit_msg(0x100, 0x110));
    ASSERT_EQ(sink.changes.size(), 2u);
    for (const auto& c : sink.changes) {
        ASSERT_TRUE(c.has_old);
        EXPECT_EQ(c.kind_of_old, old_kind::key);
        ASSERT_EQ(c.old.size(), 3u);
        EXPECT_EQ(c.old[0].kind, datum_kind::text);
        EXPECT_EQ(c.old[1].kind, datum_kind::missing);
        EXPECT_EQ(c.old[2].kind, datum_kind::missing);
    }
    EXPECT_EQ(sink.changes[0].old[0].data, "1");
    EXPECT_EQ(sink.changes[0].row[1].kind, datum_kind::text); // the new row is untouched
}

TEST_F(assembler_test, full_old_tuple_keeps_its_nulls) {
    feed(assembler, items_relation());
    feed(assembler, begin_msg(0x100));
    feed(assembler, delete_msg(items, old_kind::full, {text("sku1"), null()}));
    feed(assembler, commit_msg(0x100, 0x110));
    ASSERT_EQ(sink.changes.size(), 1u);
    EXPECT_EQ(sink.changes[0].kind_of_old, old_kind::full);
    EXPECT_EQ(sink.changes[0].old[1].kind, datum_kind::null);
}

TEST_F(assembler_test, unchanged_toast_is_filled_from_a_full_old_tuple) {
    feed(assembler, orders_relation());
    feed(assembler, begin_msg(0x100));
    feed(assembler,
         update_msg(orders, old_kind::full, {text("1"), text("old note"), binary("\x01\x02")},
                    {text("1"), toast(), toast()}));
    feed(assembler, commit_msg(0x100, 0x110));
    ASSERT_EQ(sink.changes.size(), 1u);
    const auto& row = sink.changes[0].row;
    EXPECT_EQ(row[1], (recorded_datum{datum_kind::text, "old note"}));
    EXPECT_EQ(row[2], (recorded_datum{datum_kind::binary, "\x01\x02"}));
    EXPECT_EQ(sink.changes[0].kind_of_old, old_kind::full);
}

TEST_F(assembler_test, unchanged_toast_is_not_filled_from_a_key_or_absent_old_tuple) {
    feed(assembler, orders_relation());
    feed(assembler, begin_msg(0x100));
    feed(assembler, update_msg(orders, old_kind::key, {text("1"), text("k"), text("k")},
                               {text("1"), toast(), text("x")}));
    feed(assembler, update_msg(orders, old_kind::none, {}, {text("1"), toast(), text("x")}));
    feed(assembler, update_msg(orders, old_kind::full, {text("1"), null(), text("x")},
                               {text("1"), toast(), text("x")}));
    feed(assembler, commit_msg(0x100, 0x110));
    ASSERT_EQ(sink.changes.size(), 3u);
    for (const auto& c : sink.changes)
        EXPECT_EQ(c.row[1].kind, datum_kind::unchanged_toast);
}

// ---- logical messages ----

TEST_F(assembler_test, transactional_messages_take_positions_inside_the_transaction) {
    feed(assembler, orders_relation());
    feed(assembler, begin_msg(0x500, 9));
    feed(assembler, insert_msg(orders, {text("1"), null(), null()}));
    feed(assembler, logical_msg(true, 0x480, "audit"));
    feed(assembler, insert_msg(orders, {text("2"), null(), null()}));
    feed(assembler, commit_msg(0x500, 0x510));
    ASSERT_EQ(sink.messages.size(), 1u);
    EXPECT_TRUE(sink.messages[0].transactional);
    EXPECT_EQ(sink.messages[0].prefix, "audit");
    EXPECT_EQ(sink.messages[0].pos, (position{lsn{0x500}, 1}));
    EXPECT_TRUE(sink.messages[0].has_txn);
    ASSERT_EQ(sink.changes.size(), 2u);
    EXPECT_EQ(sink.changes[1].pos, (position{lsn{0x500}, 2}));
}

TEST_F(assembler_test, non_transactional_messages_sit_just_below_their_lsn) {
    feed(assembler, logical_msg(false, 0x42, "outside"));
    feed(assembler, orders_relation());
    feed(assembler, begin_msg(0x500));
    feed(assembler, insert_msg(orders, {text("1"), null(), null()}));
    feed(assembler, logical_msg(false, 0x4F0, "inside"));
    feed(assembler, insert_msg(orders, {text("2"), null(), null()}));
    feed(assembler, commit_msg(0x500, 0x510));
    ASSERT_EQ(sink.messages.size(), 2u);
    EXPECT_FALSE(sink.messages[0].transactional);
    // Just below the message's LSN: pgoutput gives the LSN where the message's record ends, and
    // a transaction committing right after it has exactly that commit LSN.
    constexpr auto last = std::numeric_limits<std::uint32_t>::max();
    EXPECT_EQ(sink.messages[0].pos, (position{lsn{0x41}, last}));
    EXPECT_LT(sink.messages[0].pos, (position{lsn{0x42}, 0}));
    EXPECT_GT(sink.messages[0].pos, (position{lsn{0x40}, last}));
    EXPECT_FALSE(sink.messages[0].has_txn);
    EXPECT_EQ(sink.messages[1].pos, (position{lsn{0x4EF}, last}));
    EXPECT_FALSE(sink.messages[1].has_txn);
    // It does not use up an index of the transaction around it.
    ASSERT_EQ(sink.changes.size(), 2u);
    EXPECT_EQ(sink.changes[0].pos, (position{lsn{0x500}, 0}));
    EXPECT_EQ(sink.changes[1].pos, (position{lsn{0x500}, 1}));
}

// ---- skip_through ----

TEST_F(assembler_test, skip_through_suppresses_transactions_committing_at_or_before_it) {
    assembler.skip_through(lsn{0x200});
    feed(assembler, orders_relation());
    for (std::uint64_t at : {0x100, 0x200, 0x300}) {
        feed(assembler, begin_msg(at, static_cast<transaction_id>(at)));
        feed(assembler, insert_msg(orders, {text("1"), null(), null()}));
        feed(assembler, logical_msg(true, at - 1, "m"));
        feed(assembler, commit_msg(at, at + 0x10));
    }
    EXPECT_EQ(sink.events, (std::vector<std::string>{"relation orders", "begin 768",
                                                     "change insert", "message m", "commit 768"}));
    ASSERT_EQ(sink.changes.size(), 1u);
    EXPECT_EQ(sink.changes[0].pos, (position{lsn{0x300}, 0}));
}

TEST_F(assembler_test, skipped_transactions_still_apply_their_relation_messages) {
    assembler.skip_through(lsn{0x200});
    feed(assembler, begin_msg(0x100));
    feed(assembler, orders_relation());
    feed(assembler, insert_msg(orders, {text("1"), null(), null()}));
    feed(assembler, commit_msg(0x100, 0x110));
    EXPECT_TRUE(sink.changes.empty());
    EXPECT_TRUE(sink.begins.empty());
    EXPECT_TRUE(sink.commits.empty());
    ASSERT_NE(assembler.find_relation(orders), nullptr);
    EXPECT_EQ(sink.relations.size(), 1u);

    feed(assembler, begin_msg(0x300));
    feed(assembler, insert_msg(orders, {text("2"), null(), null()}));
    feed(assembler, commit_msg(0x300, 0x310));
    ASSERT_EQ(sink.changes.size(), 1u);
    EXPECT_EQ(sink.changes[0].row[0].data, "2");
}

TEST_F(assembler_test, skip_through_suppresses_non_transactional_messages_at_or_before_it) {
    assembler.skip_through(lsn{0x200});
    feed(assembler, logical_msg(false, 0x1FF, "old"));
    feed(assembler, logical_msg(false, 0x200, "same"));
    feed(assembler, logical_msg(false, 0x201, "new"));
    ASSERT_EQ(sink.messages.size(), 1u);
    EXPECT_EQ(sink.messages[0].prefix, "new");
}

// ---- restart (connection lost) ----

TEST_F(assembler_test, restart_mid_transaction_resumes_without_repeating_what_was_handed_over) {
    feed(assembler, orders_relation());
    feed(assembler, begin_msg(0x100));
    feed(assembler, insert_msg(orders, {text("1"), null(), null()}));
    feed(assembler, insert_msg(orders, {text("2"), null(), null()}));
    assembler.restart(); // the server will resend the transaction from its Begin
    EXPECT_FALSE(assembler.in_transaction());

    feed(assembler, orders_relation());
    feed(assembler, begin_msg(0x100));
    feed(assembler, insert_msg(orders, {text("1"), null(), null()}));
    feed(assembler, insert_msg(orders, {text("2"), null(), null()}));
    feed(assembler, insert_msg(orders, {text("3"), null(), null()}));
    feed(assembler, commit_msg(0x100, 0x110));

    ASSERT_EQ(sink.changes.size(), 3u);
    for (std::uint32_t i = 0; i < 3; ++i) {
        EXPECT_EQ(sink.changes[i].pos, (position{lsn{0x100}, i}));
        EXPECT_EQ(sink.changes[i].row[0].data, std::to_string(i + 1));
    }
    EXPECT_EQ(sink.begins.size(), 1u) << "the Begin was handed over before the cut";
    EXPECT_EQ(sink.commits.size(), 1u);
}

TEST_F(assembler_test, restart_between_transactions_drops_the_resent_ones) {
    feed(assembler, orders_relation());
    feed(assembler, begin_msg(0x100));
    feed(assembler, insert_msg(orders, {text("1"), null(), null()}));
    feed(assembler, commit_msg(0x100, 0x110));
    feed(assembler, logical_msg(false, 0x120, "note"));
    assembler.restart();

    feed(assembler, orders_relation());
    feed(assembler, begin_msg(0x100));
    feed(assembler, insert_msg(orders, {text("1"), null(), null()}));
    feed(assembler, commit_msg(0x100, 0x110));
    feed(assembler, logical_msg(false, 0x120, "note"));
    feed(assembler, begin_msg(0x200));
    feed(assembler, insert_msg(orders, {text("2"), null(), null()}));
    feed(assembler, commit_msg(0x200, 0x210));

    ASSERT_EQ(sink.changes.size(), 2u);
    EXPECT_EQ(sink.changes[1].pos, (position{lsn{0x200}, 0}));
    EXPECT_EQ(sink.commits.size(), 2u);
    EXPECT_EQ(sink.messages.size(), 1u);
}

TEST_F(assembler_test, restart_mid_transaction_counts_transactional_messages_too) {
    feed(assembler, orders_relation());
    feed(assembler, begin_msg(0x100));
    feed(assembler, logical_msg(true, 0xF0, "first"));
    assembler.restart();
    feed(assembler, begin_msg(0x100));
    feed(assembler, logical_msg(true, 0xF0, "first"));
    feed(assembler, insert_msg(orders, {text("1"), null(), null()}));
    feed(assembler, commit_msg(0x100, 0x110));
    ASSERT_EQ(sink.messages.size(), 1u);
    ASSERT_EQ(sink.changes.size(), 1u);
    EXPECT_EQ(sink.changes[0].pos, (position{lsn{0x100}, 1}));
}

TEST_F(assembler_test, restart_in_a_transaction_that_was_skipped_whole_stays_skipped) {
    assembler.skip_through(lsn{0x100});
    feed(assembler, orders_relation());
    feed(assembler, begin_msg(0x100));
    feed(assembler, insert_msg(orders, {text("1"), null(), null()}));
    assembler.restart();
    feed(assembler, begin_msg(0x100));
    feed(assembler, insert_msg(orders, {text("1"), null(), null()}));
    feed(assembler, commit_msg(0x100, 0x110));
    EXPECT_TRUE(sink.changes.empty());
    EXPECT_TRUE(sink.commits.empty());
}

// ---- impossible sequences ----

using prologue = std::vector<pgoutput::message_variant>;

TEST(change_assembler, impossible_sequences_throw_protocol_error) {
    const auto rel = orders_relation();
    const auto b = begin_msg(0x100);
    struct error_case {
        const char* name;
        prologue before;
        pgoutput::message_variant offending;
    };
    std::vector<error_case> cases = {
        {"insert outside a transaction", {rel}, insert_msg(orders, {text("1"), null(), null()})},
        {"update outside a transaction",
         {rel},
         update_msg(orders, old_kind::none, {}, {text("1"), null(), null()})},
        {"delete outside a transaction",
         {rel},
         delete_msg(orders, old_kind::key, {text("1"), null(), null()})},
        {"truncate outside a transaction", {rel}, truncate_msg({orders})},
        {"transactional message outside a transaction", {}, logical_msg(true, 0x10, "p")},
        {"change after commit",
         {rel, b, commit_msg(0x100, 0x110)},
         insert_msg(orders, {text("1"), null(), null()})},
        {"insert for an unknown relation", {b}, insert_msg(99, {text("1")})},
        {"update for an unknown relation", {b}, update_msg(99, old_kind::none, {}, {text("1")})},
        {"delete for an unknown relation", {b}, delete_msg(99, old_kind::key, {text("1")})},
        {"truncate of an unknown relation", {rel, b}, truncate_msg({orders, 99})},
        {"insert too narrow", {rel, b}, insert_msg(orders, {text("1"), null()})},
        {"insert too wide", {rel, b}, insert_msg(orders, {text("1"), null(), null(), null()})},
        {"update new tuple too narrow",
         {rel, b},
         update_msg(orders, old_kind::none, {}, {text("1")})},
        {"update old tuple too narrow",
         {rel, b},
         update_msg(orders, old_kind::key, {text("1")}, {text("1"), null(), null()})},
        {"update full old tuple too narrow",
         {rel, b},
         update_msg(orders, old_kind::full, {text("1")}, {text("1"), null(), null()})},
        {"delete old tuple too wide",
         {rel, b},
         delete_msg(orders, old_kind::key, {text("1"), null(), null(), null()})},
        {"begin inside a transaction", {b}, begin_msg(0x200)},
        {"commit without begin", {}, commit_msg(0x100, 0x110)},
        {"second commit", {b, commit_msg(0x100, 0x110)}, commit_msg(0x100, 0x110)},
        {"commit lsn not matching begin", {b}, commit_msg(0x101, 0x110)},
        {"stream start", {}, pgoutput::stream_start{1, true}},
        {"stream stop", {}, pgoutput::stream_stop{}},
        {"stream commit", {}, pgoutput::stream_commit{1, 0, lsn{1}, lsn{2}, 0}},
        {"stream abort", {}, pgoutput::stream_abort{1, 1}},
        {"stream start inside a transaction", {b}, pgoutput::stream_start{1, false}},
    };
    for (auto& c : cases) {
        type_catalog types;
        recording_sink sink;
        change_assembler a(types, sink);
        for (auto& m : c.before)
            ASSERT_NO_THROW(a.feed(m)) << c.name << ": prologue failed";
        EXPECT_THROW(a.feed(c.offending), protocol_error) << c.name;
    }
}

// A Truncate naming a relation we have no Relation message for is impossible as a whole: none of
// its tables may be reported truncated, as for every other rejected message.
TEST(change_assembler, truncate_naming_an_unknown_relation_hands_over_none_of_it) {
    type_catalog types;
    recording_sink sink;
    change_assembler a(types, sink);
    feed(a, orders_relation());
    feed(a, begin_msg(0x100));
    EXPECT_THROW(feed(a, truncate_msg({orders, 99})), protocol_error);
    EXPECT_TRUE(sink.changes.empty()) << sink.changes.size() << " change(s) handed over";
}

// Inside a transaction being skipped, an impossible change is still an error.
TEST(change_assembler, skipped_transactions_are_still_checked) {
    type_catalog types;
    recording_sink sink;
    change_assembler a(types, sink);
    a.skip_through(lsn{0x1000});
    feed(a, orders_relation());
    feed(a, begin_msg(0x100));
    EXPECT_THROW(feed(a, insert_msg(orders, {text("1")})), protocol_error);
    EXPECT_THROW(feed(a, insert_msg(99, {text("1")})), protocol_error);
}

// ---- type loading ----

struct loader_test : ::testing::Test {
    type_catalog types;
    recording_sink sink;
    std::vector<std::vector<oid>> requests;
    change_assembler assembler{types, sink, [this](std::span<const oid> ids) {
                                   requests.emplace_back(ids.begin(), ids.end());
                               }};
};

pgoutput::relation relation_with_types(std::vector<oid> column_types) {
    static const char* names[] = {"c0", "c1", "c2", "c3", "c4", "c5"};
    pgoutput::relation r;
    r.id = 20000;
    r.nspname = "public";
    r.relname = "typed";
    for (std::size_t i = 0; i < column_types.size(); ++i) {
        r.columns.push_back({0, names[i], column_types[i], -1});
    }
    return r;
}

TEST_F(loader_test, relation_asks_for_the_types_the_catalog_lacks) {
    feed(assembler, relation_with_types({23, 90000, 25, 90001}));
    ASSERT_EQ(requests.size(), 1u);
    std::sort(requests[0].begin(), requests[0].end());
    EXPECT_EQ(requests[0], (std::vector<oid>{90000, 90001}));
}

TEST_F(loader_test, relation_of_known_types_asks_for_nothing) {
    feed(assembler, relation_with_types({23, 1007, 3802, 1184}));
    EXPECT_TRUE(requests.empty());
}

TEST_F(loader_test, relation_asks_for_what_known_types_need_transitively) {
    types.put({90100, "public._thing", type_kind::array, 90101, ',', {}});
    types.put({90200, "public.pair", type_kind::composite, 0, ',', {{"a", 23}, {"b", 90201}}});
    feed(assembler, relation_with_types({90100, 90200}));
    ASSERT_EQ(requests.size(), 1u);
    std::sort(requests[0].begin(), requests[0].end());
    EXPECT_EQ(requests[0], (std::vector<oid>{90101, 90201}));
}

TEST_F(loader_test, types_are_requested_before_the_relation_is_used) {
    bool relation_known_when_loading = true;
    change_assembler a(types, sink, [&](std::span<const oid>) {
        relation_known_when_loading = a.find_relation(20000) != nullptr;
        types.put({90000, "public.x", type_kind::text, 0, ',', {}});
    });
    feed(a, relation_with_types({90000}));
    EXPECT_FALSE(relation_known_when_loading);
    EXPECT_NE(types.find(90000), nullptr);
    EXPECT_NE(a.find_relation(20000), nullptr);
}

TEST_F(loader_test, type_message_refetches_a_non_builtin_type) {
    types.put({90300, "public.mood", type_kind::text, 0, ',', {}});
    feed(assembler, pgoutput::type{std::nullopt, 90300, "public", "mood"});
    EXPECT_EQ(types.find(90300), nullptr);
    ASSERT_EQ(requests.size(), 1u);
    EXPECT_EQ(requests[0], std::vector<oid>{90300});
}

TEST_F(loader_test, type_message_for_a_builtin_asks_for_nothing) {
    feed(assembler, pgoutput::type{std::nullopt, 23, "", "int4"});
    EXPECT_NE(types.find(23), nullptr);
    EXPECT_TRUE(requests.empty());
}

TEST(change_assembler, works_without_a_type_loader) {
    type_catalog types;
    recording_sink sink;
    change_assembler a(types, sink);
    EXPECT_NO_THROW(feed(a, relation_with_types({90000})));
    EXPECT_NO_THROW(feed(a, pgoutput::type{std::nullopt, 90000, "public", "x"}));
    EXPECT_NE(a.find_relation(20000), nullptr);
}

TEST(change_assembler, origin_messages_are_ignored) {
    type_catalog types;
    recording_sink sink;
    change_assembler a(types, sink);
    feed(a, begin_msg(0x100));
    feed(a, pgoutput::origin{lsn{0x50}, "node"});
    feed(a, commit_msg(0x100, 0x110));
    EXPECT_EQ(sink.events, (std::vector<std::string>{"begin 700", "commit 700"}));
}

TEST(change_assembler, op_names) {
    EXPECT_EQ(to_string(change_op::insert), "insert");
    EXPECT_EQ(to_string(change_op::update), "update");
    EXPECT_EQ(to_string(change_op::delete_), "delete");
    EXPECT_EQ(to_string(change_op::truncate), "truncate");
}

} // namespace
} // namespace pgpush::cdc
