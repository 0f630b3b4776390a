#include "push/protocol.hpp"

#include <limits>
#include <set>

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

// One value of every JSON type, and the ones that stress conversions.
struct typed_value {
    const char* name;
    json value;
};
const std::vector<typed_value>& every_type() {
    static const std::vector<typed_value> v = {
        {"integer", 7},
        {"negative integer", -7},
        {"float", 1.5},
        {"null", nullptr},
        {"true", true},
        {"false", false},
        {"empty array", json::array()},
        {"empty object", json::object()},
        {"string", "x"},
        {"empty string", ""},
        {"array", {1, "x"}},
        {"object", {{"a", 1}}},
        {"max int64", std::numeric_limits<std::int64_t>::max()},
        {"min int64", std::numeric_limits<std::int64_t>::min()},
        {"huge unsigned", std::numeric_limits<std::uint64_t>::max()},
        {"1e300", 1e300},
    };
    return v;
}

TEST(protocol, every_field_of_every_message_of_every_json_type) {
    const std::set<std::string> integers = {"integer", "negative integer", "max int64", "min int64",
                                            "huge unsigned"};
    const std::set<std::string> ids = {"integer",   "negative integer", "max int64",
                                       "min int64", "huge unsigned",    "string"};
    struct field {
        json base;        // a valid message
        const char* name; // the field replaced
        std::set<std::string> accepted;
    };
    const json subscribe_base = {{"type", "subscribe"}, {"id", "s"}, {"query", "q"}};
    const field fields[] = {
        {{{"type", "auth"}, {"token", "t"}}, "type", {}},
        {{{"type", "auth"}, {"token", "t"}}, "token", {"string", "empty string"}},
        {subscribe_base, "id", ids},
        {subscribe_base, "query", {"string", "empty string"}},
        {subscribe_base, "params", {"empty array", "array"}},
        {subscribe_base, "snapshot", {"true", "false"}},
        {subscribe_base, "transactions", {"true", "false"}},
        {subscribe_base, "after", {"null", "string", "empty string"}},
        {{{"type", "unsubscribe"}, {"id", "s"}}, "id", ids},
        {{{"type", "listen"}, {"id", "l"}, {"channel", "c"}}, "id", ids},
        {{{"type", "listen"}, {"id", "l"}, {"channel", "c"}}, "channel", {"string"}},
        {{{"type", "unlisten"}, {"id", "l"}}, "id", ids},
        {{{"type", "ping"}}, "data", {}}, // anything: filled in below
        // Fields a message type does not read are ignored, whatever their type.
        {{{"type", "ping"}}, "query", {}},
    };
    for (const auto& f : fields) {
        for (const auto& t : every_type()) {
            json m = f.base;
            m[f.name] = t.value;
            const std::string text = m.dump();
            const bool anything = std::string(f.name) == "data" ||
                                  (m["type"] == "ping" && std::string(f.name) == "query");
            const bool ok = anything || f.accepted.count(t.name) == 1;
            auto r = parse(text);
            EXPECT_EQ(std::holds_alternative<client_message>(r), ok) << text;
            if (auto* e = std::get_if<parse_error>(&r)) {
                const bool unknown = std::string(f.name) == "type" && t.value.is_string();
                EXPECT_EQ(e->code, unknown ? error_code::unknown_type : error_code::bad_message)
                    << text;
                EXPECT_FALSE(e->message.empty());
            }
        }
    }
    // params: an array of scalars, each of any scalar type.
    for (const auto& t : every_type()) {
        json m = subscribe_base;
        m["params"] = json::array({t.value});
        const bool scalar = !t.value.is_array() && !t.value.is_object();
        EXPECT_EQ(std::holds_alternative<client_message>(parse(m.dump())), scalar) << m.dump();
    }
}

TEST(protocol, ids_are_echoed_as_canonical_json) {
    struct id_case {
        const char* text;
        const char* echoed; // nullptr: refused
    };
    const id_case cases[] = {
        {"7", "7"},
        {"-0", "0"},
        {"18446744073709551615", "18446744073709551615"},
        {"-9223372036854775808", "-9223372036854775808"},
        {"1e2", nullptr},
        {"7.0", nullptr},
        {"1e400", nullptr}, // not JSON nlohmann can hold: the message is not JSON
        {R"("a\u0000b")", R"("a\u0000b")"},
        {R"("\u00e9")", "\"\xc3\xa9\""}, // echoed as UTF-8
        {R"("tab\there")", R"("tab\there")"},
        {"\"raw\ttab\"", nullptr}, // a control character must be escaped
    };
    for (const auto& c : cases) {
        const std::string text = std::string(R"({"type":"unsubscribe","id":)") + c.text + "}";
        auto r = parse(text);
        if (c.echoed) {
            ASSERT_TRUE(std::holds_alternative<client_message>(r)) << text;
            EXPECT_EQ(std::get<unsubscribe>(std::get<client_message>(r)).id, c.echoed) << text;
        } else {
            EXPECT_TRUE(std::holds_alternative<parse_error>(r)) << text;
        }
    }
    // At the limit in bytes, not characters: 64 two-byte characters are 128 bytes.
    std::string e64;
    for (int i = 0; i < 64; ++i)
        e64 += "\xc3\xa9";
    EXPECT_TRUE(std::holds_alternative<client_message>(
        parse(json{{"type", "unsubscribe"}, {"id", e64}}.dump())));
    EXPECT_TRUE(std::holds_alternative<parse_error>(
        parse(json{{"type", "unsubscribe"}, {"id", e64 + "x"}}.dump())));
}

TEST(protocol, deep_nesting_is_refused_before_parsing) {
    auto nested = [](std::size_t depth) {
        // The message object is one level; `data` adds the rest.
        return R"({"type":"ping","data":)" + std::string(depth - 1, '[') +
               std::string(depth - 1, ']') + "}";
    };
    auto at_limit = parse(nested(max_nesting_depth));
    ASSERT_TRUE(std::holds_alternative<client_message>(at_limit));
    auto over = parse(nested(max_nesting_depth + 1));
    ASSERT_TRUE(std::holds_alternative<parse_error>(over));
    EXPECT_EQ(std::get<parse_error>(over).code, error_code::bad_message);
    EXPECT_NE(std::get<parse_error>(over).message.find("nested"), std::string::npos);
    // A whole frame of brackets, and objects: refused without recursing through them.
    EXPECT_TRUE(std::holds_alternative<parse_error>(parse(std::string(64 * 1024, '['))));
    std::string objects;
    for (int i = 0; i < 10000; ++i)
        objects += R"({"a":)";
    EXPECT_TRUE(std::holds_alternative<parse_error>(parse(objects)));
    // Brackets inside strings are text, escaped quotes included.
    const std::string in_string = R"({"type":"ping","data":"\")" + std::string(1000, '[') + R"("})";
    auto r = parse(in_string);
    ASSERT_TRUE(std::holds_alternative<client_message>(r)) << std::get<parse_error>(r).message;
    EXPECT_EQ(std::get<ping>(std::get<client_message>(r)).data, "\"" + std::string(1000, '['));
}

TEST(protocol, arbitrary_bytes_are_refused_as_bad_message) {
    for (const std::string& text :
         {std::string(), std::string("\xff\xfe"),
          std::string("{\"type\":\"ping\",\"data\":\"\xff\"}"),
          // A NUL ends nlohmann's input early: the text after it would be ignored.
          std::string("{\"type\":\"ping\"}\0junk", 19),
          std::string("{\"type\":\"ping\",\"data\":\"a\0b\"}", 27),
          std::string("{\"type\":\"ping\"} x"),
          std::string(R"({"type":"ping"})") + std::string(1, '\0'), std::string("nul\0", 4),
          std::string(R"({"type":"auth","token":"a"})").substr(0, 10)}) {
        auto r = parse(text);
        ASSERT_TRUE(std::holds_alternative<parse_error>(r))
            << json(text).dump(-1, ' ', false, json::error_handler_t::replace);
        EXPECT_EQ(std::get<parse_error>(r).code, error_code::bad_message);
    }
}

TEST(protocol, unknown_types_are_quoted_short_and_valid) {
    // A long type is cut in the message, at a character boundary.
    std::string type = std::string(63, 'x') + "\xc3\xa9" + std::string(10'000, 'y');
    auto r = parse(json{{"type", type}}.dump());
    ASSERT_TRUE(std::holds_alternative<parse_error>(r));
    const auto& e = std::get<parse_error>(r);
    EXPECT_EQ(e.code, error_code::unknown_type);
    EXPECT_LT(e.message.size(), 120u) << e.message;
    const json reply = json::parse(error(e.code, e.message));
    EXPECT_EQ(reply["message"], e.message);
    EXPECT_EQ(e.message.find("\xc3"), std::string::npos) << "half a character";
}

TEST(protocol, after_is_a_position_of_bounded_length) {
    const json base = {{"type", "subscribe"}, {"id", "s"}, {"query", "q"}};
    json m = base;
    m["after"] = std::string(max_position_bytes, 'p');
    EXPECT_TRUE(std::holds_alternative<client_message>(parse(m.dump())));
    m["after"] = std::string(max_position_bytes + 1, 'p');
    auto r = parse(m.dump());
    ASSERT_TRUE(std::holds_alternative<parse_error>(r));
    EXPECT_EQ(std::get<parse_error>(r).code, error_code::bad_message);
    EXPECT_EQ(std::get<parse_error>(r).id, "\"s\"");
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
