#include "cdc/change_json.hpp"

#include <memory>
#include <set>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace pgpush::cdc {
namespace {

using pgoutput::datum;
using pgoutput::datum_kind;

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
datum missing() {
    return {datum_kind::missing, {}};
}

// public.orders(id int4 key, note text, tags text[], doc jsonb, "we\"ird" bool)
std::shared_ptr<const relation_schema> orders() {
    auto r = std::make_shared<relation_schema>();
    r->id = 16385;
    r->schema = "public";
    r->name = "orders";
    r->qualified_name = "public.orders";
    r->columns = {{"id", 23, -1, true},
                  {"note", 25, -1, false},
                  {"tags", 1009, -1, false},
                  {"doc", 3802, -1, false},
                  {"we\"ird", 16, -1, false}};
    return r;
}

const std::string commit_time = "\"2026-11-23T10:00:00.123456Z\"";
const transaction_info txn{777, lsn{0x16B3748}, 848'743'200'123'456};

struct json_test : ::testing::Test {
    type_catalog types;
    std::shared_ptr<const relation_schema> relation = orders();

    change make(change_op op, const pgoutput::tuple* row, const pgoutput::tuple* old,
                std::uint32_t index = 0) {
        change c;
        c.op = op;
        c.relation = relation;
        c.row = row;
        c.old = old;
        c.pos = position{lsn{0x16B3748}, index};
        c.txn = &txn;
        return c;
    }

    nlohmann::json render(const change& c) {
        std::string out;
        append_change_json(out, types, c, commit_time);
        EXPECT_NE(out.back(), '\n');
        auto j = nlohmann::json::parse(out, nullptr, false);
        EXPECT_FALSE(j.is_discarded()) << out;
        return j;
    }
};

std::set<std::string> keys(const nlohmann::json& j) {
    std::set<std::string> out;
    for (auto it = j.begin(); it != j.end(); ++it)
        out.insert(it.key());
    return out;
}

const std::set<std::string> base_keys = {"table",    "op",  "row",        "old",
                                         "position", "xid", "commit_time"};

TEST_F(json_test, insert_has_exactly_the_base_keys_and_typed_values) {
    pgoutput::tuple row = {text("1"), text("hello \"you\""), text("{a,NULL}"),
                           text("{\"k\": [1, 2]}"), text("t")};
    auto j = render(make(change_op::insert, &row, nullptr, 3));
    EXPECT_EQ(keys(j), base_keys);
    EXPECT_EQ(j["table"], "public.orders");
    EXPECT_EQ(j["op"], "insert");
    EXPECT_EQ(j["row"], nlohmann::json::parse(R"({"id":1,"note":"hello \"you\"","tags":["a",null],
                                                 "doc":{"k":[1,2]},"we\"ird":true})"));
    EXPECT_TRUE(j["old"].is_null());
    EXPECT_EQ(j["position"], "00000000016B3748-00000003");
    EXPECT_EQ(j["xid"], 777);
    EXPECT_EQ(j["commit_time"], "2026-11-23T10:00:00.123456Z");
}

TEST_F(json_test, row_keeps_column_order) {
    pgoutput::tuple row = {text("1"), null(), null(), null(), null()};
    std::string out;
    append_row_json(out, types, *relation, row, nullptr);
    EXPECT_EQ(out, R"({"id":1,"note":null,"tags":null,"doc":null,"we\"ird":null})");
}

TEST_F(json_test, update_with_key_old_omits_missing_columns) {
    pgoutput::tuple old = {text("1"), missing(), missing(), missing(), missing()};
    pgoutput::tuple row = {text("2"), text("n"), null(), null(), text("f")};
    auto j = render(make(change_op::update, &row, &old));
    EXPECT_EQ(keys(j), base_keys);
    EXPECT_EQ(j["op"], "update");
    EXPECT_EQ(j["old"], nlohmann::json::parse(R"({"id":1})"));
    EXPECT_EQ(j["row"], nlohmann::json::parse(
                            R"({"id":2,"note":"n","tags":null,"doc":null,"we\"ird":false})"));
}

TEST_F(json_test, update_without_old_row_has_null_old) {
    pgoutput::tuple row = {text("2"), null(), null(), null(), null()};
    auto j = render(make(change_op::update, &row, nullptr));
    EXPECT_EQ(keys(j), base_keys);
    EXPECT_TRUE(j["old"].is_null());
}

TEST_F(json_test, unfilled_unchanged_toast_is_left_out_and_listed) {
    pgoutput::tuple row = {text("2"), toast(), null(), toast(), null()};
    auto j = render(make(change_op::update, &row, nullptr));
    auto expected = base_keys;
    expected.insert("unchanged_toast");
    EXPECT_EQ(keys(j), expected);
    EXPECT_EQ(j["unchanged_toast"], nlohmann::json::parse(R"(["note","doc"])"));
    EXPECT_FALSE(j["row"].contains("note"));
    EXPECT_FALSE(j["row"].contains("doc"));
    EXPECT_TRUE(j["row"].contains("tags"));
}

TEST_F(json_test, unchanged_toast_in_the_old_row_is_not_listed) {
    pgoutput::tuple old = {text("1"), toast(), null(), null(), null()};
    pgoutput::tuple row = {text("1"), text("x"), null(), null(), null()};
    auto j = render(make(change_op::update, &row, &old));
    EXPECT_EQ(keys(j), base_keys);
    EXPECT_FALSE(j["old"].contains("note"));
}

TEST_F(json_test, delete_has_null_row_and_the_old_row) {
    pgoutput::tuple old = {text("9"), missing(), missing(), missing(), missing()};
    auto j = render(make(change_op::delete_, nullptr, &old, 1));
    EXPECT_EQ(keys(j), base_keys);
    EXPECT_EQ(j["op"], "delete");
    EXPECT_TRUE(j["row"].is_null());
    EXPECT_EQ(j["old"], nlohmann::json::parse(R"({"id":9})"));
    EXPECT_EQ(j["position"], "00000000016B3748-00000001");
}

TEST_F(json_test, truncate_adds_cascade_and_restart_identity_only_when_set) {
    struct {
        bool cascade;
        bool restart;
    } cases[] = {{false, false}, {true, false}, {false, true}, {true, true}};
    for (auto tc : cases) {
        auto c = make(change_op::truncate, nullptr, nullptr);
        c.truncate_cascade = tc.cascade;
        c.truncate_restart_identity = tc.restart;
        auto j = render(c);
        auto expected = base_keys;
        if (tc.cascade) expected.insert("cascade");
        if (tc.restart) expected.insert("restart_identity");
        EXPECT_EQ(keys(j), expected) << tc.cascade << tc.restart;
        EXPECT_EQ(j["op"], "truncate");
        EXPECT_TRUE(j["row"].is_null());
        EXPECT_TRUE(j["old"].is_null());
        if (tc.cascade) {
            EXPECT_EQ(j["cascade"], true);
        }
        if (tc.restart) {
            EXPECT_EQ(j["restart_identity"], true);
        }
    }
}

TEST_F(json_test, binary_datums_print_as_bytea_hex) {
    pgoutput::tuple row = {text("1"), binary(std::string_view("\x00\xAB\x10", 3)), null(), null(),
                           null()};
    auto j = render(make(change_op::insert, &row, nullptr));
    EXPECT_EQ(j["row"]["note"], "\\x00ab10");
}

TEST_F(json_test, values_that_are_not_utf8_still_give_valid_json) {
    pgoutput::tuple row = {text("1"), text("bad \xC0\x80 bytes"), null(), text("{not json"),
                           null()};
    auto j = render(make(change_op::insert, &row, nullptr));
    EXPECT_EQ(j["row"]["doc"], "{not json");
    EXPECT_TRUE(j["row"]["note"].is_string());
}

TEST_F(json_test, missing_transaction_gives_xid_zero) {
    pgoutput::tuple row = {text("1"), null(), null(), null(), null()};
    auto c = make(change_op::insert, &row, nullptr);
    c.txn = nullptr;
    EXPECT_EQ(render(c)["xid"], 0);
}

TEST_F(json_test, append_change_json_only_appends) {
    pgoutput::tuple row = {text("1"), null(), null(), null(), null()};
    std::string out = "[";
    append_change_json(out, types, make(change_op::insert, &row, nullptr), commit_time);
    out.push_back(']');
    auto j = nlohmann::json::parse(out);
    ASSERT_TRUE(j.is_array());
    EXPECT_EQ(j[0]["op"], "insert");
}

} // namespace
} // namespace pgpush::cdc
