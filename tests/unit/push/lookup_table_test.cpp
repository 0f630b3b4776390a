#include "push/lookup_table.hpp"

#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "push/schema.hpp"
#include "rules/rule_set.hpp"
#include "tests/support/hub_fakes.hpp"

// A lookup in memory: loading, following the stream (REPLICA IDENTITY FULL old rows), and which
// keys a change reports: only those whose result really changed, since each one costs its
// subscribers a re-plan and possibly a reset.

namespace pgpush::push {
namespace {

using nlohmann::json;
using op = cdc::change_op;

// public.room_members(user_id text, room_id int4, accepted bool, nickname text, org_id int8)
const char* const rules_yaml = R"(
lookups:
  my_rooms: "SELECT room_id FROM room_members WHERE user_id = auth.sub"
  accepted_rooms: "SELECT room_id FROM room_members WHERE user_id = auth.sub AND accepted"
  nicknames: "SELECT nickname FROM room_members WHERE user_id = auth.sub"
  flags: "SELECT accepted FROM room_members WHERE user_id = auth.sub"
  org_rooms: "SELECT room_id FROM room_members WHERE org_id = auth.org"
tables:
  messages:
    rows: "row.room_id in lookup.my_rooms"
    columns: [id, room_id]
)";

const std::vector<std::string> all_columns = {"user_id", "room_id", "accepted", "nickname",
                                              "org_id"};

// A column an old key tuple did not send (change_assembler marks it so).
const char* const not_sent = "\x01not sent";

// A row of room_members, every column, in table order; nullptr is NULL.
using full_row = std::vector<const char*>;

cdc::pgoutput::tuple tuple_of(const full_row& r) {
    cdc::pgoutput::tuple t;
    for (const char* v : r) {
        t.push_back(v == nullptr    ? fakes::null_datum()
                    : v == not_sent ? fakes::missing_datum()
                                    : fakes::text_datum(v));
    }
    return t;
}

class lookup_table_test : public ::testing::Test {
protected:
    lookup_table_test() {
        auto loaded = rules::load_rules(rules_yaml);
        EXPECT_TRUE(loaded.errors.empty())
            << (loaded.errors.empty() ? "" : loaded.errors[0].message);
        rules = loaded.rules;
        cdc::table_description d;
        d.schema = "public";
        d.name = "room_members";
        d.replica_identity = 'f';
        d.columns = {{"user_id", 25, "text"},
                     {"room_id", 23, "integer"},
                     {"accepted", 16, "boolean"},
                     {"nickname", 25, "text"},
                     {"org_id", 20, "bigint"}};
        table.schema = rules_schema(d, types);
        for (const auto& c : d.columns) {
            table.types.push_back(c.type);
            table.names.push_back(c.name);
        }
    }

    std::unique_ptr<lookup_table> make(const std::string& name) {
        const auto* rule = rules->lookup(name);
        EXPECT_NE(rule, nullptr) << name;
        return std::make_unique<lookup_table>(*rule, table, types);
    }

    // A snapshot row of `r`: the values of the columns the lookup selects, in its order.
    static void load(lookup_table& t, const full_row& r) {
        std::vector<std::optional<std::string>> row;
        for (const auto& name : t.columns()) {
            const auto at = static_cast<std::size_t>(
                std::find(all_columns.begin(), all_columns.end(), name) - all_columns.begin());
            row.push_back(r.at(at) ? std::optional<std::string>(r[at]) : std::nullopt);
        }
        t.load(row);
    }

    // Applies one change; `changed` gets the keys reported (sorted by apply).
    bool apply(lookup_table& t, op o, const full_row* row, const full_row* old,
               cdc::pgoutput::old_kind old_kind = cdc::pgoutput::old_kind::full) {
        changed.clear();
        const auto new_tuple = row ? tuple_of(*row) : cdc::pgoutput::tuple{};
        const auto old_tuple = old ? tuple_of(*old) : cdc::pgoutput::tuple{};
        auto c =
            fakes::change_of(relation, o, row ? &new_tuple : nullptr, old ? &old_tuple : nullptr,
                             {cdc::lsn{100}, position++}, nullptr, old_kind);
        return t.apply(c, changed);
    }
    bool insert(lookup_table& t, const full_row& row) {
        return apply(t, op::insert, &row, nullptr);
    }
    bool update(lookup_table& t, const full_row& old, const full_row& row) {
        return apply(t, op::update, &row, &old);
    }
    bool remove(lookup_table& t, const full_row& old) {
        return apply(t, op::delete_, nullptr, &old);
    }

    // The key of a subscriber whose `sub` claim is `user`.
    static std::string key(const lookup_table& t, const std::string& user) {
        auto k = t.key_of(json{{"sub", user}});
        EXPECT_TRUE(k.has_value()) << user;
        return k.value_or("");
    }
    static json result(lookup_table& t, const std::string& user) {
        return t.result(t.key_of(json{{"sub", user}}));
    }
    // The keys of `users`, sorted as apply() reports them.
    static std::vector<std::string> keys(const lookup_table& t, std::vector<std::string> users) {
        std::vector<std::string> out;
        for (const auto& u : users)
            out.push_back(key(t, u));
        std::sort(out.begin(), out.end());
        return out;
    }

    cdc::type_catalog types;
    std::shared_ptr<const rules::rule_set> rules;
    table_state table;
    std::shared_ptr<const cdc::relation_schema> relation =
        std::make_shared<cdc::relation_schema>(cdc::relation_schema{16390,
                                                                    "public",
                                                                    "room_members",
                                                                    "public.room_members",
                                                                    'f',
                                                                    {{"user_id", 25, -1, true},
                                                                     {"room_id", 23, -1, true},
                                                                     {"accepted", 16, -1, false},
                                                                     {"nickname", 25, -1, false},
                                                                     {"org_id", 20, -1, false}}});
    std::vector<std::string> changed;
    std::uint32_t position = 0;
};

TEST_F(lookup_table_test, selects_only_the_columns_it_reads_key_first) {
    EXPECT_EQ(make("my_rooms")->columns(), (std::vector<std::string>{"user_id", "room_id"}));
    EXPECT_EQ(make("accepted_rooms")->columns(),
              (std::vector<std::string>{"user_id", "room_id", "accepted"}));
    EXPECT_EQ(make("my_rooms")->column_types(), (std::vector<cdc::oid>{25, 23}));
}

TEST_F(lookup_table_test, loads_rows_into_each_key_s_result) {
    auto t = make("my_rooms");
    load(*t, {"u1", "1", "t", "a", "7"});
    load(*t, {"u1", "2", "t", "a", "7"});
    load(*t, {"u2", "1", "t", "b", "7"});
    EXPECT_EQ(t->rows(), 3u);
    EXPECT_EQ(t->keys(), 2u);
    EXPECT_EQ(result(*t, "u1"), json({1, 2}));
    EXPECT_EQ(result(*t, "u2"), json({1}));
    EXPECT_EQ(result(*t, "u3"), json::array()) << "no rows: an empty result, known";
    EXPECT_EQ(t->result(std::nullopt), json::array());
}

TEST_F(lookup_table_test, an_insert_reports_its_key) {
    auto t = make("my_rooms");
    load(*t, {"u1", "1", "t", "a", "7"});
    ASSERT_TRUE(insert(*t, {"u1", "3", "t", "a", "7"}));
    EXPECT_EQ(changed, keys(*t, {"u1"}));
    EXPECT_EQ(result(*t, "u1"), json({1, 3}));
    ASSERT_TRUE(insert(*t, {"u9", "4", "t", "a", "7"}));
    EXPECT_EQ(changed, keys(*t, {"u9"})) << "a key seen for the first time";
    EXPECT_EQ(t->keys(), 2u);
}

TEST_F(lookup_table_test, a_duplicate_row_adds_a_count_not_a_change) {
    auto t = make("my_rooms");
    load(*t, {"u1", "1", "t", "a", "7"});
    ASSERT_TRUE(insert(*t, {"u1", "1", "t", "b", "7"}));
    EXPECT_TRUE(changed.empty());
    EXPECT_EQ(t->rows(), 2u);
    EXPECT_EQ(result(*t, "u1"), json({1}));
    // Removing one of the two rows with that value changes nothing; the second one does.
    ASSERT_TRUE(remove(*t, {"u1", "1", "t", "a", "7"}));
    EXPECT_TRUE(changed.empty());
    EXPECT_EQ(result(*t, "u1"), json({1}));
    ASSERT_TRUE(remove(*t, {"u1", "1", "t", "b", "7"}));
    EXPECT_EQ(changed, keys(*t, {"u1"}));
    EXPECT_EQ(result(*t, "u1"), json::array());
    EXPECT_EQ(t->rows(), 0u);
    EXPECT_EQ(t->keys(), 0u) << "an empty key is forgotten";
}

TEST_F(lookup_table_test, a_delete_of_a_row_it_does_not_hold_changes_nothing) {
    auto t = make("my_rooms");
    load(*t, {"u1", "1", "t", "a", "7"});
    ASSERT_TRUE(remove(*t, {"u1", "2", "t", "a", "7"}));
    EXPECT_TRUE(changed.empty());
    ASSERT_TRUE(remove(*t, {"u2", "1", "t", "a", "7"}));
    EXPECT_TRUE(changed.empty());
    EXPECT_EQ(result(*t, "u1"), json({1}));
    EXPECT_EQ(t->rows(), 1u);
}

TEST_F(lookup_table_test, an_update_moving_a_row_between_keys_reports_both) {
    auto t = make("my_rooms");
    load(*t, {"u1", "1", "t", "a", "7"});
    load(*t, {"u1", "2", "t", "a", "7"});
    ASSERT_TRUE(update(*t, {"u1", "2", "t", "a", "7"}, {"u2", "2", "t", "a", "7"}));
    EXPECT_EQ(changed, keys(*t, {"u1", "u2"}));
    EXPECT_EQ(result(*t, "u1"), json({1}));
    EXPECT_EQ(result(*t, "u2"), json({2}));
    EXPECT_EQ(t->rows(), 2u);
}

TEST_F(lookup_table_test, an_update_of_the_value_under_one_key_reports_it_once) {
    auto t = make("my_rooms");
    load(*t, {"u1", "1", "t", "a", "7"});
    ASSERT_TRUE(update(*t, {"u1", "1", "t", "a", "7"}, {"u1", "5", "t", "a", "7"}));
    EXPECT_EQ(changed, keys(*t, {"u1"}));
    EXPECT_EQ(result(*t, "u1"), json({5}));
}

TEST_F(lookup_table_test, an_update_of_columns_it_does_not_read_is_no_change) {
    auto t = make("my_rooms");
    load(*t, {"u1", "1", "t", "a", "7"});
    const json* before = &t->result(t->key_of(json{{"sub", "u1"}}));
    ASSERT_TRUE(update(*t, {"u1", "1", "t", "a", "7"}, {"u1", "1", "f", "renamed", "8"}));
    EXPECT_TRUE(changed.empty());
    EXPECT_EQ(&t->result(t->key_of(json{{"sub", "u1"}})), before) << "the cached result stays";
    EXPECT_EQ(t->rows(), 1u);
}

TEST_F(lookup_table_test, its_filter_decides_which_rows_count) {
    auto t = make("accepted_rooms");
    load(*t, {"u1", "1", "t", "a", "7"});
    load(*t, {"u1", "2", "f", "a", "7"});
    load(*t, {"u1", "3", nullptr, "a", "7"});
    EXPECT_EQ(result(*t, "u1"), json({1}));
    EXPECT_EQ(t->rows(), 1u) << "rows the filter refuses are not kept";
    // Accepted: the row joins the result.
    ASSERT_TRUE(update(*t, {"u1", "2", "f", "a", "7"}, {"u1", "2", "t", "a", "7"}));
    EXPECT_EQ(changed, keys(*t, {"u1"}));
    EXPECT_EQ(result(*t, "u1"), json({1, 2}));
    // No longer accepted: it leaves it.
    ASSERT_TRUE(update(*t, {"u1", "1", "t", "a", "7"}, {"u1", "1", "f", "a", "7"}));
    EXPECT_EQ(changed, keys(*t, {"u1"}));
    EXPECT_EQ(result(*t, "u1"), json({2}));
    // Rows the filter refuses come and go unnoticed (NULL is not true).
    ASSERT_TRUE(insert(*t, {"u1", "4", "f", "a", "7"}));
    EXPECT_TRUE(changed.empty());
    ASSERT_TRUE(insert(*t, {"u1", "5", nullptr, "a", "7"}));
    EXPECT_TRUE(changed.empty());
    ASSERT_TRUE(remove(*t, {"u1", "3", nullptr, "a", "7"}));
    EXPECT_TRUE(changed.empty());
    ASSERT_TRUE(update(*t, {"u1", "4", "f", "a", "7"}, {"u2", "4", "f", "a", "7"}));
    EXPECT_TRUE(changed.empty());
    EXPECT_EQ(result(*t, "u1"), json({2}));
}

TEST_F(lookup_table_test, an_old_row_lacking_a_column_it_reads_cannot_be_applied) {
    // Without REPLICA IDENTITY FULL the old row holds the key columns only: which key a row
    // leaves, or whether it passed the filter, is not known, so the lookup must be loaded again.
    auto t = make("accepted_rooms");
    load(*t, {"u1", "1", "t", "a", "7"});
    const full_row key_only = {"u1", "1", not_sent, not_sent, not_sent};
    const full_row now = {"u1", "1", "f", "a", "7"};
    EXPECT_FALSE(apply(*t, op::update, &now, &key_only, cdc::pgoutput::old_kind::key));
    EXPECT_FALSE(apply(*t, op::delete_, nullptr, &key_only, cdc::pgoutput::old_kind::key));
    EXPECT_FALSE(apply(*t, op::update, &now, nullptr)) << "no old row at all";
    EXPECT_FALSE(apply(*t, op::delete_, nullptr, nullptr));
    EXPECT_TRUE(changed.empty());
    EXPECT_EQ(result(*t, "u1"), json({1})) << "nothing half-applied";
    // A key tuple that holds every column the lookup reads is enough.
    auto rooms = make("my_rooms");
    load(*rooms, {"u1", "1", "t", "a", "7"});
    EXPECT_TRUE(apply(*rooms, op::delete_, nullptr, &key_only, cdc::pgoutput::old_kind::key));
    EXPECT_EQ(changed, keys(*rooms, {"u1"}));
}

TEST_F(lookup_table_test, an_unchanged_toasted_value_is_read_from_the_full_old_row) {
    auto t = make("nicknames");
    load(*t, {"u1", "1", "t", "a long nickname", "7"});
    // The nickname did not change, so pgoutput does not send it again ('u').
    const full_row old = {"u1", "1", "t", "a long nickname", "7"};
    auto row = tuple_of({"u2", "1", "t", "", "7"});
    row[3] = {cdc::pgoutput::datum_kind::unchanged_toast, {}};
    const auto old_tuple = tuple_of(old);
    changed.clear();
    auto c = fakes::change_of(relation, op::update, &row, &old_tuple, {cdc::lsn{100}, 0});
    ASSERT_TRUE(t->apply(c, changed));
    EXPECT_EQ(changed, keys(*t, {"u1", "u2"}));
    EXPECT_EQ(result(*t, "u2"), json({"a long nickname"}));
}

TEST_F(lookup_table_test, truncate_empties_every_result_and_reports_every_key) {
    auto t = make("my_rooms");
    load(*t, {"u1", "1", "t", "a", "7"});
    load(*t, {"u2", "1", "t", "a", "7"});
    ASSERT_TRUE(apply(*t, op::truncate, nullptr, nullptr));
    std::sort(changed.begin(), changed.end());
    EXPECT_EQ(changed, keys(*t, {"u1", "u2"}));
    EXPECT_EQ(t->rows(), 0u);
    EXPECT_EQ(t->keys(), 0u);
    EXPECT_EQ(result(*t, "u1"), json::array());
}

TEST_F(lookup_table_test, a_row_with_a_null_key_belongs_to_nobody) {
    auto t = make("my_rooms");
    load(*t, {nullptr, "1", "t", "a", "7"});
    EXPECT_EQ(t->rows(), 0u);
    EXPECT_EQ(t->keys(), 0u);
    ASSERT_TRUE(insert(*t, {nullptr, "2", "t", "a", "7"}));
    EXPECT_TRUE(changed.empty());
    // A row gaining a key joins that key's result.
    ASSERT_TRUE(update(*t, {nullptr, "2", "t", "a", "7"}, {"u1", "2", "t", "a", "7"}));
    EXPECT_EQ(changed, keys(*t, {"u1"}));
    EXPECT_EQ(result(*t, "u1"), json({2}));
}

TEST_F(lookup_table_test, a_null_output_is_json_null_in_the_result) {
    // As in SQL, a NULL in the result makes `x not in lookup.l` unknown.
    auto t = make("my_rooms");
    load(*t, {"u1", "1", "t", "a", "7"});
    load(*t, {"u1", nullptr, "t", "a", "7"});
    EXPECT_EQ(result(*t, "u1"), json({1, nullptr}));
    ASSERT_TRUE(insert(*t, {"u1", nullptr, "t", "b", "7"}));
    EXPECT_TRUE(changed.empty()) << "a second NULL adds a count";
    ASSERT_TRUE(remove(*t, {"u1", nullptr, "t", "a", "7"}));
    EXPECT_TRUE(changed.empty());
    ASSERT_TRUE(remove(*t, {"u1", nullptr, "t", "b", "7"}));
    EXPECT_EQ(changed, keys(*t, {"u1"}));
    EXPECT_EQ(result(*t, "u1"), json({1}));
}

TEST_F(lookup_table_test, key_of_reads_a_claim_as_the_key_column_reads_it) {
    auto t = make("my_rooms"); // user_id text = auth.sub
    EXPECT_TRUE(t->key_of(json{{"sub", "u1"}}).has_value());
    EXPECT_NE(t->key_of(json{{"sub", "u1"}}), t->key_of(json{{"sub", "u2"}}));
    EXPECT_EQ(t->key_of(json{{"sub", 42}}), t->key_of(json{{"sub", "42"}}))
        << "a number against a text column is its decimal text";
    EXPECT_EQ(t->key_of(json{{"other", "u1"}}), std::nullopt) << "missing";
    EXPECT_EQ(t->key_of(json::object()), std::nullopt);
    EXPECT_EQ(t->key_of(json{{"sub", nullptr}}), std::nullopt) << "null";
    EXPECT_EQ(t->key_of(json{{"sub", {"u1", "u2"}}}), std::nullopt) << "an array";
    EXPECT_EQ(t->key_of(json{{"sub", {{"id", "u1"}}}}), std::nullopt) << "an object";

    auto by_org = make("org_rooms"); // org_id bigint = auth.org
    EXPECT_TRUE(by_org->key_of(json{{"org", 7}}).has_value());
    EXPECT_EQ(by_org->key_of(json{{"org", 7}}), by_org->key_of(json{{"org", "7"}}))
        << "text as the column type's input function reads it";
    EXPECT_EQ(by_org->key_of(json{{"org", "4.5"}}), std::nullopt) << "text bigint refuses";
    EXPECT_EQ(by_org->key_of(json{{"org", "seven"}}), std::nullopt);
    EXPECT_EQ(by_org->key_of(json{{"org", {7}}}), std::nullopt);
    // The numeric key finds the rows loaded from text.
    load(*by_org, {"u1", "3", "t", "a", "7"});
    EXPECT_EQ(by_org->result(by_org->key_of(json{{"org", 7}})), json({3}));
    EXPECT_EQ(by_org->result(by_org->key_of(json{{"org", "07"}})), json({3}));
}

TEST_F(lookup_table_test, result_values_take_the_output_column_s_type) {
    auto rooms = make("my_rooms"); // integer
    load(*rooms, {"u1", "12", "t", "a", "7"});
    EXPECT_TRUE(result(*rooms, "u1")[0].is_number_integer());
    EXPECT_EQ(result(*rooms, "u1"), json({12}));

    auto names = make("nicknames"); // text
    load(*names, {"u1", "1", "t", "12", "7"});
    load(*names, {"u1", "1", "t", "say \"hi\"", "7"});
    EXPECT_EQ(result(*names, "u1"), json({"12", "say \"hi\""}));

    auto flags = make("flags"); // boolean
    load(*flags, {"u1", "1", "t", "a", "7"});
    load(*flags, {"u1", "2", "f", "a", "7"});
    load(*flags, {"u1", "3", "t", "a", "7"});
    EXPECT_EQ(result(*flags, "u1"), json({true, false}));
}

} // namespace
} // namespace pgpush::push
