// Every built-in type family to JSON, checked against a real server's output. One row holds a
// column per case; each case says what JSON its value must become.

#include <fmt/format.h>

#include "tests/integration/tail_fixture.hpp"

namespace pgpush::testing {
namespace {

using nlohmann::json;

struct type_case {
    const char* type;    // column type
    const char* literal; // SQL expression for the value
    const char* json;    // expected JSON of the value
};

// clang-format off
const type_case cases[] = {
    {"smallint", "42", "42"},
    {"integer", "-7", "-7"},
    {"bigint", "9007199254740993", "9007199254740993"},
    {"oid", "12", "12"},
    {"real", "1.5", "1.5"},
    {"double precision", "0.1", "0.1"},
    {"double precision", "1e300", "1e300"},
    {"double precision", "'NaN'", "\"NaN\""},
    {"double precision", "'Infinity'", "\"Infinity\""},
    {"real", "'-Infinity'", "\"-Infinity\""},
    {"numeric", "12.50", "12.50"},
    {"numeric", "-0.000001", "-0.000001"},
    {"numeric", "12345678901234567890.123", "\"12345678901234567890.123\""},
    {"numeric", "0.1000000000000000055511151231257827", "\"0.1000000000000000055511151231257827\""},
    {"numeric", "'NaN'", "\"NaN\""},
    {"numeric", "'Infinity'", "\"Infinity\""},
    {"boolean", "true", "true"},
    {"boolean", "false", "false"},
    {"text", "E'h\\u00e9llo \"q\"\\n\\t'", "\"h\\u00e9llo \\\"q\\\"\\n\\t\""},
    {"varchar(10)", "'abc'", "\"abc\""},
    {"char(5)", "'ab'", "\"ab   \""},
    {"json", "'{\"a\": 1,  \"b\": [true, null]}'", "{\"a\":1,\"b\":[true,null]}"},
    {"jsonb", "'{\"b\": [true, null], \"a\": 1.50}'", "{\"a\":1.50,\"b\":[true,null]}"},
    {"jsonb", "'\"just a string\"'", "\"just a string\""},
    {"integer[]", "'{1,2,NULL}'", "[1,2,null]"},
    {"text[]", "'{\"a b\",\"c,d\",NULL,\"NULL\",\"q\\\"x\"}'", "[\"a b\",\"c,d\",null,\"NULL\",\"q\\\"x\"]"},
    {"integer[]", "'{{1,2},{3,4}}'", "[[1,2],[3,4]]"},
    {"integer[]", "'[0:1]={5,6}'", "[5,6]"},
    {"integer[]", "'{}'", "[]"},
    {"jsonb[]", "ARRAY['{\"x\": 1}'::jsonb, 'null']", "[{\"x\":1},null]"},
    {"boolean[]", "'{t,f}'", "[true,false]"},
    {"numeric[]", "'{1.5,NaN}'", "[1.5,\"NaN\"]"},
    {"timestamptz[]", "ARRAY['2024-01-02 03:04:05+00'::timestamptz]", "[\"2024-01-02T03:04:05Z\"]"},
    {"box[]", "'{(1,1),(0,0);(2,2),(1,1)}'", "[\"(1,1),(0,0)\",\"(2,2),(1,1)\"]"},
    {"bytea", "'\\xdeadbeef'", "\"\\\\xdeadbeef\""},
    {"uuid", "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'", "\"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11\""},
    {"date", "'2024-02-29'", "\"2024-02-29\""},
    {"time", "'13:45:00.5'", "\"13:45:00.5\""},
    {"timetz", "'13:45:00+02'", "\"13:45:00+02\""},
    {"timestamp", "'2024-01-02 03:04:05.678'", "\"2024-01-02T03:04:05.678\""},
    {"timestamptz", "'2024-01-02 03:04:05.25+02'", "\"2024-01-02T01:04:05.25Z\""},
    {"timestamptz", "'infinity'", "\"infinity\""},
    {"interval", "'1 day 2 hours 3.5 seconds'", "\"P1DT2H3.5S\""},
    {"inet", "'10.0.0.1/8'", "\"10.0.0.1/8\""},
    {"int4range", "'[1,5)'", "\"[1,5)\""},
    {"money", "12.34", "\"$12.34\""},
    {"point", "'(1,2)'", "\"(1,2)\""},
    {"bit(3)", "B'101'", "\"101\""},
    {"xml", "'<a>1</a>'", "\"<a>1</a>\""},
    {"tsvector", "'b a'", "\"'a' 'b'\""},
    {"text", "NULL", "null"},
    {"mood", "'happy'", "\"happy\""},
    {"mood[]", "'{happy,sad}'", "[\"happy\",\"sad\"]"},
    {"posint", "5", "5"},
    {"int_list", "'{1,2}'", "[1,2]"},
    {"pair", "ROW(1, 'a b')", "{\"x\":1,\"label\":\"a b\"}"},
    {"pair", "ROW(NULL, '')", "{\"x\":null,\"label\":\"\"}"},
    {"pair", "ROW(2, 'say \"hi\", (ok)')", "{\"x\":2,\"label\":\"say \\\"hi\\\", (ok)\"}"},
    {"pair[]", "ARRAY[ROW(1, 'a')::pair, ROW(2, NULL)::pair]", "[{\"x\":1,\"label\":\"a\"},{\"x\":2,\"label\":null}]"},
    {"nested", "ROW(ROW(3, 'in')::pair, '{7,8}')", "{\"p\":{\"x\":3,\"label\":\"in\"},\"tags\":[7,8]}"},
};
// clang-format on

TEST_F(tail_test, every_type_becomes_the_right_json) {
    pg().exec("CREATE TYPE mood AS ENUM ('happy', 'sad')");
    pg().exec("CREATE DOMAIN posint AS integer CHECK (VALUE > 0)");
    pg().exec("CREATE DOMAIN int_list AS integer[]");
    pg().exec("CREATE TYPE pair AS (x integer, label text)");
    pg().exec("CREATE TYPE nested AS (p pair, tags integer[])");

    std::string columns = "id int PRIMARY KEY";
    std::string values = "1";
    for (std::size_t i = 0; i < std::size(cases); ++i) {
        columns += fmt::format(", c{} {}", i, cases[i].type);
        values += fmt::format(", {}", cases[i].literal);
    }
    pg().exec("CREATE TABLE all_types (" + columns + ")");
    auto tail = start_tail({"--table", "all_types"});
    pg().exec("INSERT INTO all_types VALUES (" + values + ")");
    std::string raw = next_raw(*tail);
    json row = json::parse(raw)["row"];
    for (std::size_t i = 0; i < std::size(cases); ++i) {
        std::string col = fmt::format("c{}", i);
        EXPECT_EQ(row[col], json::parse(cases[i].json))
            << cases[i].type << " " << cases[i].literal << "\nraw line: " << raw;
    }
    // Exact numerics keep their digits: check the text, not a double's reading of it.
    EXPECT_NE(raw.find("\"c10\":12.50,"), std::string::npos) << raw;
    EXPECT_NE(raw.find("\"c11\":-0.000001,"), std::string::npos) << raw;
}

TEST_F(tail_test, types_created_mid_stream_are_loaded) {
    pg().exec("CREATE TYPE status AS ENUM ('open')");
    pg().exec("CREATE TABLE tickets (id int PRIMARY KEY, s status)");
    auto tail = start_tail({"--table", "tickets"});
    pg().exec("INSERT INTO tickets VALUES (1, 'open')");
    EXPECT_EQ(next(*tail)["row"], json({{"id", 1}, {"s", "open"}}));
    pg().exec("ALTER TYPE status ADD VALUE 'closed'");
    pg().exec("CREATE TYPE point3 AS (x int, y int, z int)");
    pg().exec("ALTER TABLE tickets ADD COLUMN p point3[]");
    pg().exec("INSERT INTO tickets VALUES (2, 'closed', ARRAY[ROW(3, 4, 5)::point3])");
    EXPECT_EQ(next(*tail)["row"],
              json({{"id", 2}, {"s", "closed"}, {"p", {{{"x", 3}, {"y", 4}, {"z", 5}}}}}));
}

} // namespace
} // namespace pgpush::testing
