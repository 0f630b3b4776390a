#include "push/protocol.hpp"

#include <gtest/gtest.h>

namespace pgpush::push::protocol {
namespace {

using nlohmann::json;

TEST(protocol, parses_each_client_message) {
    auto a = std::get<client_message>(parse(R"({"type":"auth","token":"t.o.k"})"));
    EXPECT_EQ(std::get<auth>(a).token, "t.o.k");

    auto s = std::get<subscribe>(std::get<client_message>(parse(
        R"({"type":"subscribe","id":"s1","query":"SELECT * FROM t","params":[1,"x",null,true],"snapshot":false})")));
    EXPECT_EQ(s.id, "\"s1\"");
    EXPECT_EQ(s.query, "SELECT * FROM t");
    EXPECT_EQ(s.params.size(), 4u);
    EXPECT_FALSE(s.snapshot);
    EXPECT_FALSE(s.after);

    auto numeric = std::get<subscribe>(
        std::get<client_message>(parse(R"({"type":"subscribe","id":7,"query":"q"})")));
    EXPECT_EQ(numeric.id, "7");
    EXPECT_TRUE(numeric.snapshot);
    EXPECT_FALSE(numeric.transactions);

    EXPECT_EQ(std::get<unsubscribe>(
                  std::get<client_message>(parse(R"({"type":"unsubscribe","id":"s1"})")))
                  .id,
              "\"s1\"");
    auto l = std::get<listen>(
        std::get<client_message>(parse(R"({"type":"listen","id":"l","channel":"typing"})")));
    EXPECT_EQ(l.channel, "typing");
    EXPECT_EQ(
        std::get<unlisten>(std::get<client_message>(parse(R"({"type":"unlisten","id":"l"})"))).id,
        "\"l\"");
    EXPECT_EQ(
        std::get<ping>(std::get<client_message>(parse(R"({"type":"ping","data":{"n":1}})"))).data,
        json({{"n", 1}}));
}

TEST(protocol, parses_the_transactions_flag) {
    struct flag {
        const char* text;
        bool transactions;
    };
    const flag cases[] = {
        {R"({"type":"subscribe","id":"s","query":"q"})", false},
        {R"({"type":"subscribe","id":"s","query":"q","transactions":true})", true},
        {R"({"type":"subscribe","id":"s","query":"q","transactions":false})", false},
        {R"({"type":"subscribe","id":"s","query":"q","transactions":true,"after":"p"})", true},
        {R"({"type":"subscribe","id":"s","query":"q","snapshot":false,"transactions":true})", true},
    };
    for (const auto& c : cases) {
        auto r = parse(c.text);
        ASSERT_TRUE(std::holds_alternative<client_message>(r)) << c.text;
        EXPECT_EQ(std::get<subscribe>(std::get<client_message>(r)).transactions, c.transactions)
            << c.text;
    }
}

TEST(protocol, refuses_bad_messages_with_stable_codes) {
    struct bad {
        const char* text;
        error_code code;
        const char* id; // expected id echo, or nullptr
    };
    const bad cases[] = {
        {"not json", error_code::bad_message, nullptr},
        {"[1,2]", error_code::bad_message, nullptr},
        {"{}", error_code::bad_message, nullptr},
        {R"({"type":5})", error_code::bad_message, nullptr},
        {R"({"type":"frobnicate","id":"x"})", error_code::unknown_type, "\"x\""},
        {R"({"type":"subscribe","query":"q"})", error_code::bad_message, nullptr},
        {R"({"type":"subscribe","id":"","query":"q"})", error_code::bad_message, nullptr},
        {R"({"type":"subscribe","id":1.5,"query":"q"})", error_code::bad_message, nullptr},
        {R"({"type":"subscribe","id":"s","query":5})", error_code::bad_message, "\"s\""},
        {R"({"type":"subscribe","id":"s"})", error_code::bad_message, "\"s\""},
        {R"({"type":"subscribe","id":"s","query":"q","params":{}})", error_code::bad_message,
         "\"s\""},
        {R"({"type":"subscribe","id":"s","query":"q","params":[[1]]})", error_code::bad_message,
         "\"s\""},
        {R"({"type":"subscribe","id":"s","query":"q","snapshot":"yes"})", error_code::bad_message,
         "\"s\""},
        {R"({"type":"subscribe","id":"s","query":"q","after":5})", error_code::bad_message,
         "\"s\""},
        {R"({"type":"subscribe","id":"s","query":"q","transactions":"yes"})",
         error_code::bad_message, "\"s\""},
        {R"({"type":"subscribe","id":"s","query":"q","transactions":1})", error_code::bad_message,
         "\"s\""},
        {R"({"type":"subscribe","id":"s","query":"q","transactions":null})",
         error_code::bad_message, "\"s\""},
        {R"({"type":"auth"})", error_code::bad_message, nullptr},
        {R"({"type":"auth","token":7})", error_code::bad_message, nullptr},
        {R"({"type":"listen","id":"l"})", error_code::bad_message, "\"l\""},
        {R"({"type":"listen","id":"l","channel":""})", error_code::bad_message, "\"l\""},
    };
    for (const auto& c : cases) {
        auto r = parse(c.text);
        ASSERT_TRUE(std::holds_alternative<parse_error>(r)) << c.text;
        const auto& e = std::get<parse_error>(r);
        EXPECT_EQ(e.code, c.code) << c.text << ": " << e.message;
        if (c.id) {
            ASSERT_TRUE(e.id) << c.text;
            EXPECT_EQ(*e.id, c.id) << c.text;
        } else {
            EXPECT_FALSE(e.id) << c.text;
        }
        EXPECT_FALSE(e.message.empty());
    }
}

TEST(protocol, limits_field_sizes) {
    std::string long_id(max_id_bytes + 1, 'x');
    auto r = parse(json{{"type", "subscribe"}, {"id", long_id}, {"query", "q"}}.dump());
    EXPECT_TRUE(std::holds_alternative<parse_error>(r));
    std::string long_query(max_query_bytes + 1, 'q');
    r = parse(json{{"type", "subscribe"}, {"id", "s"}, {"query", long_query}}.dump());
    ASSERT_TRUE(std::holds_alternative<parse_error>(r));
    EXPECT_EQ(std::get<parse_error>(r).code, error_code::bad_message);
    json many = json::array();
    for (std::size_t i = 0; i <= max_params; ++i)
        many.push_back(i);
    r = parse(json{{"type", "subscribe"}, {"id", "s"}, {"query", "q"}, {"params", many}}.dump());
    EXPECT_TRUE(std::holds_alternative<parse_error>(r));
}

TEST(protocol, server_messages_are_valid_json_with_the_id_echoed_verbatim) {
    auto e = json::parse(error(error_code::forbidden, "no \"way\"\n", "\"s1\""));
    EXPECT_EQ(
        e,
        json(
            {{"type", "error"}, {"id", "s1"}, {"code", "forbidden"}, {"message", "no \"way\"\n"}}));
    auto no_id = json::parse(error(error_code::unauthenticated, "x"));
    EXPECT_FALSE(no_id.contains("id"));
    EXPECT_EQ(json::parse(ready("7", "00-01")),
              json({{"type", "ready"}, {"id", 7}, {"position", "00-01"}}));
    EXPECT_EQ(json::parse(unsubscribed("\"a\"")), json({{"type", "unsubscribed"}, {"id", "a"}}));
    EXPECT_EQ(json::parse(rows_open("\"s\"") + "{\"a\":1}" + std::string(rows_close)),
              json({{"type", "rows"}, {"id", "s"}, {"rows", {{{"a", 1}}}}}));
    EXPECT_EQ(json::parse(std::string(event_head("update")) + "\"s\"" + ",\"row\":{}}"),
              json({{"type", "update"}, {"id", "s"}, {"row", json::object()}}));
    EXPECT_EQ(json::parse(pong(json{{"n", 1}})), json({{"type", "pong"}, {"data", {{"n", 1}}}}));
}

TEST(protocol, a_transaction_message_holds_its_changes_and_the_last_ones_position) {
    struct batch {
        std::vector<batch_change> changes;
        bool last;
        json expected;
    };
    const std::string insert =
        R"(,"row":{"id":1,"position":"in the row"},"position":"e/p-0","commit_time":"t"})";
    const std::string update =
        R"(,"row":{"id":1},"old":{"id":0},"position":"e/p-1","commit_time":"t"})";
    const std::string truncate = R"(,"position":"e/p-2","commit_time":"t"})";
    const batch cases[] = {
        {{{"insert", insert}}, true, json::parse(R"({"type":"transaction","id":"s","changes":[
             {"type":"insert","row":{"id":1,"position":"in the row"},"position":"e/p-0","commit_time":"t"}],
             "position":"e/p-0","commit_time":"t","last":true})")},
        {{{"insert", insert}, {"update", update}, {"truncate", truncate}},
         false,
         json::parse(R"({"type":"transaction","id":"s","changes":[
             {"type":"insert","row":{"id":1,"position":"in the row"},"position":"e/p-0","commit_time":"t"},
             {"type":"update","row":{"id":1},"old":{"id":0},"position":"e/p-1","commit_time":"t"},
             {"type":"truncate","position":"e/p-2","commit_time":"t"}],
             "position":"e/p-2","commit_time":"t","last":false})")},
    };
    for (const auto& c : cases) {
        const auto text = transaction("\"s\"", c.changes, c.last);
        EXPECT_EQ(json::parse(text), c.expected) << text;
    }
}

TEST(protocol, notify_payload_is_embedded_when_json_else_a_string) {
    EXPECT_EQ(json::parse(notify("\"t\"", "typing", R"({"room": 7})"))["payload"],
              json({{"room", 7}}));
    EXPECT_EQ(json::parse(notify("\"t\"", "typing", "hello"))["payload"], "hello");
    EXPECT_EQ(json::parse(notify("\"t\"", "typing", ""))["payload"], "");
    EXPECT_EQ(json::parse(notify("\"t\"", "ch\"an", "\xff"))["channel"], "ch\"an");
}

TEST(protocol, error_codes_have_stable_names) {
    EXPECT_EQ(to_string(error_code::unauthenticated), "unauthenticated");
    EXPECT_EQ(to_string(error_code::resync_required), "resync_required");
    EXPECT_EQ(to_string(error_code::too_many_subscriptions), "too_many_subscriptions");
    EXPECT_EQ(to_string(error_code::message_too_large), "message_too_large");
}

} // namespace
} // namespace pgpush::push::protocol
