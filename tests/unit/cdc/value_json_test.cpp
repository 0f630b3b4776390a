#include "cdc/value_json.hpp"

#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace pgpush::cdc {
namespace {

// Built-in OIDs.
constexpr oid bool_oid = 16, bytea_oid = 17, int8_oid = 20, int2_oid = 21, int4_oid = 23,
              text_oid = 25, json_oid = 114, float4_oid = 700, float8_oid = 701, date_oid = 1082,
              timestamp_oid = 1114, timestamptz_oid = 1184, numeric_oid = 1700, jsonb_oid = 3802,
              bool_array = 1000, int4_array = 1007, text_array = 1009, box_array = 1020,
              float8_array = 1022, timestamptz_array = 1185, numeric_array = 1231,
              jsonb_array = 3807;

// Types the tests add, as catalog_loader would.
constexpr oid triple = 90001;       // composite (a int4, b text, c text)
constexpr oid tagged = 90002;       // composite (id int4, tags text[])
constexpr oid triple_array = 90003; // triple[]
constexpr oid posint = 90010;       // domain over int4
constexpr oid int_list = 90011;     // domain over int4[]
constexpr oid posint_small = 90012; // domain over posint
constexpr oid posint_array = 90013; // posint[]
constexpr oid mood = 90020;         // enum
constexpr oid with_unknown = 90030; // composite (x <unknown oid 99999>)
constexpr oid unknown_oid = 123456;

type_catalog test_catalog() {
    type_catalog c;
    c.put({triple,
           "public.triple",
           type_kind::composite,
           0,
           ',',
           {{"a", int4_oid}, {"b", text_oid}, {"c", text_oid}}});
    c.put({tagged,
           "public.tagged",
           type_kind::composite,
           0,
           ',',
           {{"id", int4_oid}, {"tags", text_array}}});
    c.put({triple_array, "public._triple", type_kind::array, triple, ',', {}});
    c.put({posint, "public.posint", type_kind::domain, int4_oid, ',', {}});
    c.put({int_list, "public.int_list", type_kind::domain, int4_array, ',', {}});
    c.put({posint_small, "public.posint_small", type_kind::domain, posint, ',', {}});
    c.put({posint_array, "public._posint", type_kind::array, posint, ',', {}});
    c.put({mood, "public.mood", type_kind::text, 0, ',', {}});
    c.put({with_unknown, "public.with_unknown", type_kind::composite, 0, ',', {{"x", 99999}}});
    return c;
}

struct value_case {
    const char* name;
    oid type;
    std::string text;
    std::string expected; // the JSON text, exactly
};

std::string as_string(std::string_view s) {
    return "\"" + std::string(s) + "\"";
}

void run(const std::vector<value_case>& cases) {
    const auto types = test_catalog();
    for (const auto& c : cases) {
        std::string out;
        append_value_json(out, types, c.type, c.text);
        EXPECT_EQ(out, c.expected) << c.name << " (" << c.text << ")";
        EXPECT_TRUE(nlohmann::json::accept(out)) << c.name << ": not JSON: " << out;
    }
}

TEST(value_json, numbers_are_json_numbers_and_specials_are_strings) {
    run({
        {"int4", int4_oid, "42", "42"},
        {"negative int4", int4_oid, "-7", "-7"},
        {"int2 zero", int2_oid, "0", "0"},
        {"int8 max", int8_oid, "9223372036854775807", "9223372036854775807"},
        {"int4 that is not a number", int4_oid, "abc", as_string("abc")},
        {"float8", float8_oid, "1.5", "1.5"},
        {"float8 exponent", float8_oid, "1e-07", "1e-07"},
        {"float8 big exponent", float8_oid, "1.7976931348623157e+308", "1.7976931348623157e+308"},
        {"float4", float4_oid, "3.14", "3.14"},
        {"float8 NaN", float8_oid, "NaN", as_string("NaN")},
        {"float8 Infinity", float8_oid, "Infinity", as_string("Infinity")},
        {"float8 -Infinity", float8_oid, "-Infinity", as_string("-Infinity")},
        {"float4 NaN", float4_oid, "NaN", as_string("NaN")},
    });
}

TEST(value_json, numerics_are_numbers_only_when_a_double_reads_them_exactly) {
    run({
        {"0.1", numeric_oid, "0.1", "0.1"},
        {"trailing zero kept as written", numeric_oid, "12.50", "12.50"},
        {"negative", numeric_oid, "-0.5", "-0.5"},
        {"integer", numeric_oid, "100", "100"},
        {"zero with scale", numeric_oid, "0.000", "0.000"},
        {"2^53", numeric_oid, "9007199254740992", "9007199254740992"},
        {"2^53 + 1", numeric_oid, "9007199254740993", as_string("9007199254740993")},
        {"20 digits", numeric_oid, "12345678901234567890", as_string("12345678901234567890")},
        {"0.1 to 34 places", numeric_oid, "0.1000000000000000055511151231257827",
         as_string("0.1000000000000000055511151231257827")},
        {"underflows a double", numeric_oid, "0." + std::string(399, '0') + "1",
         as_string("0." + std::string(399, '0') + "1")},
        {"overflows a double", numeric_oid, "1" + std::string(400, '0'),
         as_string("1" + std::string(400, '0'))},
        {"NaN", numeric_oid, "NaN", as_string("NaN")},
        {"Infinity", numeric_oid, "Infinity", as_string("Infinity")},
        {"-Infinity", numeric_oid, "-Infinity", as_string("-Infinity")},
    });
}

TEST(value_json, numeric_round_trips_only_exact_doubles) {
    struct {
        const char* text;
        bool expected;
    } cases[] = {
        {"0.1", true},
        {"12.50", true},
        {"0", true},
        {"-0", true},
        {"0.000", true},
        {"-12.5", true},
        {"3.141592653589793", true},
        {"1000000000000000000000", true}, // 1e21 is a double exactly
        {"1.5e-05", true},
        {"9007199254740992", true},
        {"9007199254740993", false},
        {"12345678901234567890", false},
        {"0.1000000000000000055511151231257827", false},
        {"3.1415926535897932", false},
        {"1e-400", false},
        {"1e400", false},
        {"", false},
        {"abc", false},
        {"NaN", false},
        {"Infinity", false},
        {"1.5x", false},
    };
    for (const auto& c : cases)
        EXPECT_EQ(numeric_round_trips(c.text), c.expected) << c.text;
}

TEST(value_json, booleans_text_and_json) {
    run({
        {"true", bool_oid, "t", "true"},
        {"false", bool_oid, "f", "false"},
        {"unexpected bool text", bool_oid, "yes", as_string("yes")},
        {"text with escapes", text_oid, "say \"hi\"\n", R"("say \"hi\"\n")"},
        {"empty text", text_oid, "", R"("")"},
        {"bytea hex text", bytea_oid, "\\x0a0b", R"("\\x0a0b")"},
        {"date stays a string", date_oid, "2024-01-02", as_string("2024-01-02")},
        {"json minified", json_oid, "{ \"a\" : [1, 2] }", R"({"a":[1,2]})"},
        {"jsonb", jsonb_oid, "{\"a\": 1, \"b\": {\"c\": null}}", R"({"a":1,"b":{"c":null}})"},
        {"json scalar", json_oid, " 42 ", "42"},
        {"json string", jsonb_oid, "\"s p\"", R"("s p")"},
        {"invalid json falls back to a string", json_oid, "{bad", as_string("{bad")},
        {"enum is a string", mood, "happy", as_string("happy")},
    });
}

// value_json promises valid JSON whatever the text. A json value with invalid UTF-8 in a string
// (possible in a SQL_ASCII database) must not be embedded as it is.
TEST(value_json, json_value_with_invalid_utf8_still_gives_valid_json) {
    const auto types = test_catalog();
    for (oid type : {json_oid, jsonb_oid}) {
        std::string out;
        append_value_json(out, types, type, "{\"k\": \"bad \xC0\x80 bytes\"}");
        EXPECT_TRUE(nlohmann::json::accept(out)) << type << ": not JSON: " << out;
    }
}

TEST(value_json, timestamps_become_rfc_3339) {
    run({
        {"timestamptz +00", timestamptz_oid, "2024-01-02 03:04:05.5+00",
         as_string("2024-01-02T03:04:05.5Z")},
        {"timestamptz whole seconds", timestamptz_oid, "2024-01-02 03:04:05+00",
         as_string("2024-01-02T03:04:05Z")},
        {"timestamptz microseconds", timestamptz_oid, "2024-01-02 03:04:05.123456+00",
         as_string("2024-01-02T03:04:05.123456Z")},
        {"timestamptz +00:00", timestamptz_oid, "2024-01-02 03:04:05+00:00",
         as_string("2024-01-02T03:04:05Z")},
        {"timestamptz +05:30 kept", timestamptz_oid, "2024-01-02 03:04:05+05:30",
         as_string("2024-01-02T03:04:05+05:30")},
        {"timestamptz +05 padded", timestamptz_oid, "2024-01-02 03:04:05+05",
         as_string("2024-01-02T03:04:05+05:00")},
        {"timestamptz -08 padded", timestamptz_oid, "2024-01-02 03:04:05.25-08",
         as_string("2024-01-02T03:04:05.25-08:00")},
        {"timestamptz infinity", timestamptz_oid, "infinity", as_string("infinity")},
        {"timestamptz -infinity", timestamptz_oid, "-infinity", as_string("-infinity")},
        {"timestamptz BC", timestamptz_oid, "0044-03-15 12:00:00+00 BC",
         as_string("0044-03-15 12:00:00+00 BC")},
        {"timestamptz without a zone", timestamptz_oid, "2024-01-02 03:04:05",
         as_string("2024-01-02 03:04:05")},
        {"timestamp", timestamp_oid, "2024-01-02 03:04:05", as_string("2024-01-02T03:04:05")},
        {"timestamp fraction", timestamp_oid, "2024-01-02 03:04:05.123456",
         as_string("2024-01-02T03:04:05.123456")},
        {"timestamp infinity", timestamp_oid, "infinity", as_string("infinity")},
        {"timestamp BC", timestamp_oid, "0044-03-15 12:00:00 BC",
         as_string("0044-03-15 12:00:00 BC")},
        {"timestamp year 10000", timestamp_oid, "10000-01-01 00:00:00",
         as_string("10000-01-01 00:00:00")},
        {"timestamp with a zone it should not have", timestamp_oid, "2024-01-02 03:04:05+00",
         as_string("2024-01-02 03:04:05+00")},
    });
}

TEST(value_json, arrays_become_json_arrays_of_their_element_type) {
    run({
        {"int4[]", int4_array, "{1,2,3}", "[1,2,3]"},
        {"nested", int4_array, "{{1,2},{3,4}}", "[[1,2],[3,4]]"},
        {"empty", int4_array, "{}", "[]"},
        {"NULL element", int4_array, "{1,NULL,3}", "[1,null,3]"},
        {"NULL vs quoted \"NULL\"", text_array, R"({NULL,"NULL"})", R"([null,"NULL"])"},
        {"lowercase null", text_array, "{null}", "[null]"},
        {"escapes", text_array, R"({"a\"b","c\\d","e,f","{g}"})", R"(["a\"b","c\\d","e,f","{g}"])"},
        {"backslash outside quotes", text_array, R"({a\,b})", R"(["a,b"])"},
        {"quoted empty string", text_array, R"({""})", R"([""])"},
        {"unquoted whitespace trimmed, inner kept", text_array, "{ a b , c }", R"(["a b","c"])"},
        {"quoted whitespace kept", text_array, R"({" a "})", R"([" a "])"},
        {"dimension decoration", int4_array, "[0:1]={5,6}", "[5,6]"},
        {"two-dimension decoration", int4_array, "[1:2][1:1]={{1},{2}}", "[[1],[2]]"},
        {"box uses ';'", box_array, "{(1,1),(0,0);(3,3),(2,2)}",
         R"~(["(1,1),(0,0)","(3,3),(2,2)"])~"},
        {"float8[] specials", float8_array, "{1.5,NaN,-Infinity}", R"([1.5,"NaN","-Infinity"])"},
        {"numeric[]", numeric_array, "{0.1,12345678901234567890}",
         R"([0.1,"12345678901234567890"])"},
        {"jsonb[]", jsonb_array, R"({"{\"a\": 1}",NULL})", R"([{"a":1},null])"},
        {"timestamptz[]", timestamptz_array, R"({"2024-01-02 03:04:05+00"})",
         R"(["2024-01-02T03:04:05Z"])"},
        {"bool[]", bool_array, "{t,f}", "[true,false]"},
        {"non-ascii element", text_array, "{gr\xC3\xBC\xC3\x9F}", "[\"gr\xC3\xBC\xC3\x9F\"]"},
    });
}

TEST(value_json, malformed_arrays_fall_back_to_a_string_of_the_text) {
    std::vector<value_case> cases;
    for (const char* bad : {"{1,2", "{1,,2}", "1,2", "{1,2}x", "[0:1]{1,2}", "{\"unterminated}",
                            "{{1,2}", "", "{,}", "{1,2}}", "{a\\"}) {
        cases.push_back({bad, int4_array, bad, ""});
        nlohmann::json j = std::string(bad);
        cases.back().expected = j.dump();
    }
    run(cases);
}

TEST(value_json, composites_become_objects_of_their_fields) {
    run({
        {"null field, quoted spaces", triple, R"((1,"a b",))", R"({"a":1,"b":"a b","c":null})"},
        {"doubled quotes", triple, R"((1,"say ""hi""",x))", R"({"a":1,"b":"say \"hi\"","c":"x"})"},
        {"backslash escape", triple, R"((1,"a\\b",c))", R"({"a":1,"b":"a\\b","c":"c"})"},
        {"quoted empty string is not null", triple, R"((1,"",x))", R"({"a":1,"b":"","c":"x"})"},
        {"all null", triple, "(,,)", R"({"a":null,"b":null,"c":null})"},
        {"delimiters inside quotes", triple, R"~((2,"x,y)",z))~",
         R"~({"a":2,"b":"x,y)","c":"z"})~"},
        {"array field", tagged, R"((7,"{x,y}"))", R"({"id":7,"tags":["x","y"]})"},
        {"array of composites", triple_array, R"~({"(1,x,y)",NULL})~",
         R"([{"a":1,"b":"x","c":"y"},null])"},
        {"field of unknown type is a string", with_unknown, "(abc)", R"({"x":"abc"})"},
    });
}

TEST(value_json, composites_that_do_not_match_the_catalog_fall_back_to_a_string) {
    run({
        {"too few fields", triple, "(1,2)", as_string("(1,2)")},
        {"too many fields", triple, "(1,2,3,4)", as_string("(1,2,3,4)")},
        {"no parentheses", triple, "1,2,3", as_string("1,2,3")},
        {"unterminated quote", triple, R"~((1,"abc,x))~", R"~("(1,\"abc,x)")~"},
        {"empty", triple, "", R"("")"},
    });
}

TEST(value_json, domains_encode_as_their_base_type) {
    run({
        {"domain over int4", posint, "5", "5"},
        {"domain over int4[]", int_list, "{1,2}", "[1,2]"},
        {"domain over a domain", posint_small, "6", "6"},
        {"array of a domain", posint_array, "{1,NULL}", "[1,null]"},
    });
}

TEST(value_json, unknown_types_are_strings) {
    run({
        {"unknown scalar", unknown_oid, "x", as_string("x")},
        {"unknown that looks like a number", unknown_oid, "42", as_string("42")},
        {"unknown that looks like an array", unknown_oid, "{1,2}", as_string("{1,2}")},
    });
}

TEST(value_json, appends_after_existing_text) {
    const auto types = test_catalog();
    std::string out = "[";
    append_value_json(out, types, int4_oid, "1");
    out.push_back(',');
    append_value_json(out, types, text_array, "{a}");
    out.push_back(']');
    EXPECT_EQ(out, R"([1,["a"]])");
}

TEST(value_json, malformed_array_fallback_discards_the_partial_output) {
    const auto types = test_catalog();
    std::string out = "x:";
    append_value_json(out, types, int4_array, "{1,2,oops");
    EXPECT_EQ(out, R"(x:"{1,2,oops")");
}

TEST(value_json, binary_values_print_as_bytea_hex) {
    std::string out;
    append_binary_json(out, std::string_view("\x0a\x0b\x00\xff", 4));
    EXPECT_EQ(out, R"("\\x0a0b00ff")");
    EXPECT_EQ(nlohmann::json::parse(out).get<std::string>(), "\\x0a0b00ff");
    out.clear();
    append_binary_json(out, "");
    EXPECT_EQ(out, R"("\\x")");
}

} // namespace
} // namespace pgpush::cdc
