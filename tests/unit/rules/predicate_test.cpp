#include "rules/predicate.hpp"

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "rules/parser.hpp"
#include "rules/rule_set.hpp"

namespace pgpush::rules {
namespace {

using nlohmann::json;

const table_schema& messages() {
    static const table_schema schema{"public",
                                     "messages",
                                     {
                                         {"id", column_family::integer, "integer"},
                                         {"room_id", column_family::integer, "integer"},
                                         {"sender_id", column_family::integer, "bigint"},
                                         {"body", column_family::text, "text"},
                                         {"score", column_family::floating, "double precision"},
                                         {"price", column_family::numeric, "numeric"},
                                         {"sent_at", column_family::timestamp, "timestamptz"},
                                         {"flag", column_family::boolean, "boolean"},
                                         {"mood", column_family::other, "mood"},
                                     }};
    return schema;
}

constexpr std::size_t room_id = 1, sender_id = 2, body = 3, flag = 7;

// A row of `messages` from cells given in Postgres text form (as the replication stream carries
// them); nullopt is NULL. Columns not named are NULL. Texts must outlive the row.
using cells = std::vector<std::pair<std::string_view, std::optional<std::string_view>>>;

std::vector<value> row_of(const cells& cs) {
    std::vector<value> row(messages().columns.size());
    for (const auto& [name, text] : cs) {
        auto pos = messages().find(name);
        if (!pos) throw std::invalid_argument("no column " + std::string(name));
        if (text) row[*pos] = from_pg_text(messages().columns[*pos].family, *text);
    }
    return row;
}

std::string show(tri t) {
    return t == tri::true_ ? "true" : (t == tri::false_ ? "false" : "unknown");
}

std::string show(std::optional<tri> t) {
    return t ? show(*t) : "not constant";
}

struct binding {
    const json* claims = nullptr;
    std::vector<json> params;
    bool allow_old = false;
    bool allow_payload = false;
    const table_schema* table = &messages();
};

binding claims_only(const json& claims) {
    binding b;
    b.claims = &claims;
    return b;
}

std::unique_ptr<predicate> bind_text(std::string_view text, dialect d, const binding& b = {}) {
    auto e = parse_expression(text, d);
    bind_context ctx;
    ctx.table = b.table;
    ctx.claims = b.claims;
    ctx.params = b.params;
    ctx.allow_old = b.allow_old;
    ctx.allow_payload = b.allow_payload;
    const expr* one[] = {e.get()};
    return predicate::bind(one, ctx);
}

std::unique_ptr<predicate> sql(std::string_view text, const binding& b = {}) {
    return bind_text(text, dialect::sql, b);
}

std::unique_ptr<predicate> rules_expr(std::string_view text, const json& claims, binding b = {}) {
    b.claims = &claims;
    return bind_text(text, dialect::rules, b);
}

tri eval(const predicate& p, const std::vector<value>& row, const std::vector<value>& old = {},
         const json* payload = nullptr) {
    return p.evaluate(row_values{row, old, payload});
}

// Expects bind to fail with `code`; returns the error's offset (or npos).
std::size_t bind_fails(std::string_view text, dialect d, bind_error_code code,
                       const binding& b = {}) {
    try {
        auto p = bind_text(text, d, b);
        ADD_FAILURE() << text << ": bound as " << p->to_string();
    } catch (const bind_error& e) {
        EXPECT_EQ(to_string(e.code), to_string(code)) << text << ": " << e.what();
        return e.offset;
    } catch (const parse_error& e) {
        ADD_FAILURE() << text << ": parse_error " << e.what();
    }
    return std::string::npos;
}

struct eval_case {
    const char* expr;
    cells row;
    const char* expected;
};

void expect_sql_cases(const std::vector<eval_case>& cases, const binding& b = {}) {
    for (const auto& c : cases) {
        std::string what = c.expr;
        for (const auto& [name, text] : c.row) {
            what += std::string(" | ") + std::string(name) + "=" +
                    (text ? "'" + std::string(*text) + "'" : "NULL");
        }
        try {
            auto p = sql(c.expr, b);
            EXPECT_EQ(show(eval(*p, row_of(c.row))), c.expected) << what;
        } catch (const std::exception& e) {
            ADD_FAILURE() << what << ": " << e.what();
        }
    }
}

TEST(predicate, and_or_not_follow_three_valued_truth_tables) {
    // a = flag, b = (room_id = 1); each is true, false or unknown (NULL).
    const std::optional<std::string_view> flags[] = {"t", "f", std::nullopt};
    const std::optional<std::string_view> rooms[] = {"1", "2", std::nullopt};
    const char* and_table[3][3] = {
        {"true", "false", "unknown"}, {"false", "false", "false"}, {"unknown", "false", "unknown"}};
    const char* or_table[3][3] = {
        {"true", "true", "true"}, {"true", "false", "unknown"}, {"true", "unknown", "unknown"}};
    const char* not_table[3] = {"false", "true", "unknown"};
    const char* names[3] = {"true", "false", "unknown"};
    auto p_and = sql("flag AND room_id = 1");
    auto p_or = sql("flag OR room_id = 1");
    auto p_not = sql("NOT flag");
    auto p_not_cmp = sql("NOT (room_id = 1)");
    for (int a = 0; a < 3; ++a) {
        for (int b = 0; b < 3; ++b) {
            auto row = row_of({{"flag", flags[a]}, {"room_id", rooms[b]}});
            const std::string what = std::string("a=") + names[a] + " b=" + names[b];
            EXPECT_EQ(show(eval(*p_and, row)), and_table[a][b]) << "AND " << what;
            EXPECT_EQ(show(eval(*p_or, row)), or_table[a][b]) << "OR " << what;
        }
        EXPECT_EQ(show(eval(*p_not, row_of({{"flag", flags[a]}}))), not_table[a]) << a;
        EXPECT_EQ(show(eval(*p_not_cmp, row_of({{"room_id", rooms[a]}}))), not_table[a]) << a;
    }
}

TEST(predicate, comparisons_with_null_are_unknown_and_is_null_never_is) {
    expect_sql_cases({
        {"room_id = 1", {{"room_id", std::nullopt}}, "unknown"},
        {"room_id <> 1", {{"room_id", std::nullopt}}, "unknown"},
        {"room_id < 1", {{"room_id", std::nullopt}}, "unknown"},
        {"room_id >= 1", {{"room_id", std::nullopt}}, "unknown"},
        {"room_id = sender_id", {{"room_id", "1"}, {"sender_id", std::nullopt}}, "unknown"},
        {"room_id IS NULL", {{"room_id", std::nullopt}}, "true"},
        {"room_id IS NULL", {{"room_id", "1"}}, "false"},
        {"room_id IS NOT NULL", {{"room_id", std::nullopt}}, "false"},
        {"room_id IS NOT NULL", {{"room_id", "1"}}, "true"},
        {"NOT room_id IS NULL", {{"room_id", std::nullopt}}, "false"},
        {"body IS NULL", {{"body", ""}}, "false"},                  // '' is not NULL
        {"room_id IS NULL", {{"room_id", "not a number"}}, "true"}, // unreadable: NULL
    });
}

TEST(predicate, evaluates_rows_shorter_than_the_schema_as_nulls) {
    auto p = sql("body IS NULL AND room_id IS NULL");
    EXPECT_EQ(show(p->evaluate(row_values{})), "true");
    const std::vector<value> just_id = {value::integer(1)};
    EXPECT_EQ(show(p->evaluate(row_values{just_id, {}, nullptr})), "true");
}

TEST(predicate, in_lists_follow_sql_null_rules) {
    expect_sql_cases({
        {"room_id IN (1, NULL)", {{"room_id", "1"}}, "true"},
        {"room_id IN (1, NULL)", {{"room_id", "2"}}, "unknown"},
        {"room_id IN (1, NULL)", {{"room_id", std::nullopt}}, "unknown"},
        {"room_id NOT IN (1, NULL)", {{"room_id", "1"}}, "false"},
        {"room_id NOT IN (1, NULL)", {{"room_id", "2"}}, "unknown"},
        {"room_id NOT IN (1, NULL)", {{"room_id", std::nullopt}}, "unknown"},
        {"room_id IN (1, 2)", {{"room_id", "2"}}, "true"},
        {"room_id IN (1, 2)", {{"room_id", "3"}}, "false"},
        {"room_id IN (1, 2)", {{"room_id", std::nullopt}}, "unknown"},
        {"room_id NOT IN (1, 2)", {{"room_id", "3"}}, "true"},
        {"room_id NOT IN (1, 2)", {{"room_id", "1"}}, "false"},
        {"room_id NOT IN (1, 2)", {{"room_id", std::nullopt}}, "unknown"},
        {"room_id IN (1.5, 2.0)", {{"room_id", "2"}}, "true"},
        {"room_id IN ('1', '2')", {{"room_id", "2"}}, "true"},
        {"body IN ('a', 'b')", {{"body", "b"}}, "true"},
        {"body IN ('a', 'b')", {{"body", "B"}}, "false"},
    });
}

TEST(predicate, between_is_greater_or_equal_and_less_or_equal) {
    binding null_param;
    null_param.params = {json(nullptr)};
    expect_sql_cases({
        {"room_id BETWEEN 1 AND 3", {{"room_id", "0"}}, "false"},
        {"room_id BETWEEN 1 AND 3", {{"room_id", "1"}}, "true"},
        {"room_id BETWEEN 1 AND 3", {{"room_id", "3"}}, "true"},
        {"room_id BETWEEN 1 AND 3", {{"room_id", "4"}}, "false"},
        {"room_id BETWEEN 1 AND 3", {{"room_id", std::nullopt}}, "unknown"},
        {"room_id BETWEEN 3 AND 1", {{"room_id", "2"}}, "false"}, // not SYMMETRIC
        {"room_id NOT BETWEEN 1 AND 3", {{"room_id", "0"}}, "true"},
        {"room_id NOT BETWEEN 1 AND 3", {{"room_id", "2"}}, "false"},
        {"room_id NOT BETWEEN 1 AND 3", {{"room_id", std::nullopt}}, "unknown"},
        {"body BETWEEN 'a' AND 'c'", {{"body", "b"}}, "true"},
        {"body BETWEEN 'a' AND 'c'", {{"body", "cc"}}, "false"},
        {"price BETWEEN 1 AND 2.5", {{"price", "2.50"}}, "true"},
    });
    // A NULL bound: x >= lo AND x <= NULL is false when x < lo, else unknown.
    expect_sql_cases(
        {
            {"room_id BETWEEN 1 AND $1", {{"room_id", "0"}}, "false"},
            {"room_id BETWEEN 1 AND $1", {{"room_id", "2"}}, "unknown"},
            {"room_id NOT BETWEEN 1 AND $1", {{"room_id", "0"}}, "true"},
            {"room_id NOT BETWEEN 1 AND $1", {{"room_id", "2"}}, "unknown"},
        },
        null_param);
}

TEST(predicate, numbers_compare_across_integer_decimal_and_float) {
    expect_sql_cases({
        {"price = 7", {{"price", "7.00"}}, "true"},
        {"price = 7.0", {{"price", "7"}}, "true"},
        {"price > 6.999", {{"price", "7.00"}}, "true"},
        {"price < 7.001", {{"price", "7.00"}}, "true"},
        {"price = 0.1000000000000000000001", {{"price", "0.1"}}, "false"}, // exact
        {"price = 'NaN'", {{"price", "NaN"}}, "true"},
        {"price > 'Infinity'", {{"price", "NaN"}}, "true"},
        {"price > 1e300", {{"price", "Infinity"}}, "true"},
        {"price = 'Infinity'", {{"price", "Infinity"}}, "true"},
        {"price < '-Infinity'", {{"price", "-Infinity"}}, "false"},
        {"price < -1e300", {{"price", "-Infinity"}}, "true"},
        {"price = '-0.0'", {{"price", "0"}}, "true"},
        {"score = 0.1", {{"score", "0.1"}}, "true"},
        {"score = 0.1000000000000000000001", {{"score", "0.1"}}, "true"}, // in double
        {"score > 0.3", {{"score", "0.30000000000000004"}}, "true"},
        {"score = 'NaN'", {{"score", "NaN"}}, "true"},
        {"score > 'Infinity'", {{"score", "NaN"}}, "true"},
        {"score >= 1e308", {{"score", "Infinity"}}, "true"},
        {"score < 0", {{"score", "-Infinity"}}, "true"},
        {"score = 0", {{"score", "-0"}}, "true"},
        {"score = price", {{"score", "0.5"}, {"price", "0.50"}}, "true"},
        {"room_id = 7.0", {{"room_id", "7"}}, "true"},
        {"room_id < 7.5", {{"room_id", "7"}}, "true"},
        {"room_id = 7.5", {{"room_id", "7"}}, "false"},
        {"room_id = '7'", {{"room_id", "7"}}, "true"},
        {"room_id = ' 7 '", {{"room_id", "7"}}, "true"},
        {"room_id = score", {{"room_id", "7"}, {"score", "7"}}, "true"},
        {"room_id < price", {{"room_id", "7"}, {"price", "7.01"}}, "true"},
        {"sender_id = 9223372036854775807", {{"sender_id", "9223372036854775807"}}, "true"},
        {"sender_id < 9223372036854775808", {{"sender_id", "9223372036854775807"}}, "true"},
        {"sender_id > -9223372036854775809", {{"sender_id", "-9223372036854775808"}}, "true"},
    });
}

TEST(predicate, text_compares_in_byte_order_and_like_is_case_sensitive) {
    expect_sql_cases({
        {"body < 'b'", {{"body", "B"}}, "true"},
        {"body < 'b'", {{"body", "a"}}, "true"},
        {"body < 'b'", {{"body", "b"}}, "false"},
        {"body < 'b'", {{"body", "\xC3\xA9"}}, "false"},
        {"body < 'b'", {{"body", ""}}, "true"},
        {"body > 'Z'", {{"body", "a"}}, "true"},
        {"body = 'a'", {{"body", "A"}}, "false"},
        {"body <> 'a'", {{"body", "A"}}, "true"},
        {"body LIKE 'a%'", {{"body", "abc"}}, "true"},
        {"body LIKE 'a%'", {{"body", "Abc"}}, "false"},
        {"body NOT LIKE 'a%'", {{"body", "xbc"}}, "true"},
        {"body LIKE 'a%'", {{"body", std::nullopt}}, "unknown"},
        {"body NOT LIKE 'a%'", {{"body", std::nullopt}}, "unknown"},
        {"body LIKE 'a\\_c'", {{"body", "a_c"}}, "true"},
        {"body LIKE 'a\\_c'", {{"body", "abc"}}, "false"},
        {"body LIKE '_'", {{"body", "\xE6\x97\xA5"}}, "true"},
        {"mood = 'happy'", {{"mood", "happy"}}, "true"},
        {"mood LIKE 'ha%'", {{"mood", "happy"}}, "true"},
    });
}

TEST(predicate, timestamps_compare_as_instants) {
    expect_sql_cases({
        {"sent_at = '2024-01-02T01:04:05Z'", {{"sent_at", "2024-01-02 03:04:05+02"}}, "true"},
        {"sent_at = '2024-01-02 03:04:05+02:00'", {{"sent_at", "2024-01-02 03:04:05+02"}}, "true"},
        {"sent_at = '2024-01-02 03:04:05'", {{"sent_at", "2024-01-02 03:04:05+02"}}, "false"},
        {"sent_at > '2024-01-02 03:00:00+02'", {{"sent_at", "2024-01-02 03:04:05+02"}}, "true"},
        {"sent_at < '2024-01-02 01:04:05.000001+00'",
         {{"sent_at", "2024-01-02 03:04:05+02"}},
         "true"},
        {"sent_at BETWEEN '2024-01-02' AND '2024-01-03'",
         {{"sent_at", "2024-01-02 03:04:05+02"}},
         "true"},
        {"sent_at < 'infinity'", {{"sent_at", "2024-01-02 03:04:05+02"}}, "true"},
        {"sent_at > '-infinity'", {{"sent_at", "2024-01-02 03:04:05+02"}}, "true"},
        {"sent_at > '9999-12-31'", {{"sent_at", "infinity"}}, "true"},
        {"sent_at = 'infinity'", {{"sent_at", "infinity"}}, "true"},
        {"sent_at > '2024-01-01'", {{"sent_at", std::nullopt}}, "unknown"},
    });
}

TEST(predicate, booleans_accept_postgres_boolean_literals) {
    expect_sql_cases({
        {"flag", {{"flag", "t"}}, "true"},
        {"flag", {{"flag", "f"}}, "false"},
        {"flag = true", {{"flag", "t"}}, "true"},
        {"flag = 'yes'", {{"flag", "t"}}, "true"},
        {"flag <> 'off'", {{"flag", "t"}}, "true"},
        {"flag = 'f'", {{"flag", "f"}}, "true"},
        {"flag = false", {{"flag", std::nullopt}}, "unknown"},
        {"flag IS NOT NULL AND NOT flag", {{"flag", "f"}}, "true"},
    });
}

TEST(predicate, literals_of_the_wrong_type_are_bind_errors) {
    struct {
        const char* text;
        std::size_t offset;
    } cases[] = {
        {"body = 5", 7},
        {"5 = body", 0},
        {"room_id = 'abc'", 10},
        {"room_id = ''", 10},
        {"room_id = true", 10},
        {"price = 'abc'", 8},
        {"score = 'x'", 8},
        {"sent_at > 'yesterday'", 10},
        {"sent_at > 5", 10},
        {"flag = 'maybe'", 7},
        {"flag = 1", 7},
        {"mood = 5", 7},
        {"body LIKE 5", 10},
        {"room_id LIKE '1%'", 0},
        {"room_id = body", 0},
        {"sent_at = flag", 0},
        {"room_id IN (1, 'x')", 15},
        {"score BETWEEN 'a' AND 1", 14},
        {"5", 0},
        {"'abc'", 0},
        {"body", 0},
        {"room_id", 0},
        {"NOT body", 4},
        {"room_id = 1 AND 7", 16},
    };
    for (const auto& c : cases) {
        EXPECT_EQ(bind_fails(c.text, dialect::sql, bind_error_code::type_mismatch), c.offset)
            << c.text;
    }
}

TEST(predicate, unknown_columns_are_bind_errors) {
    const json claims = json::object();
    binding with_old;
    with_old.claims = &claims;
    with_old.allow_old = true;
    EXPECT_EQ(bind_fails("nope = 1", dialect::sql, bind_error_code::unknown_column), 0U);
    EXPECT_EQ(
        bind_fails("room_id = 1 AND x IS NULL", dialect::sql, bind_error_code::unknown_column),
        16U);
    EXPECT_EQ(bind_fails("other.room_id = 1", dialect::sql, bind_error_code::unknown_column), 0U);
    EXPECT_EQ(
        bind_fails("row.nope == 1", dialect::rules, bind_error_code::unknown_column, with_old), 0U);
    EXPECT_EQ(
        bind_fails("old.nope == 1", dialect::rules, bind_error_code::unknown_column, with_old), 0U);
    // Column names are case-sensitive once parsed: "Room_ID" is not room_id.
    bind_fails("\"Room_ID\" = 1", dialect::sql, bind_error_code::unknown_column);
    // The table's own name as a qualifier is fine.
    auto p = sql("messages.room_id = 1");
    EXPECT_EQ(show(eval(*p, row_of({{"room_id", "1"}}))), "true");
}

TEST(predicate, claims_are_substituted_and_missing_ones_deny) {
    struct {
        const char* expr;
        json claims;
        cells row;
        const char* expected;
    } cases[] = {
        {"row.sender_id == auth.sub", {{"sub", 42}}, {{"sender_id", "42"}}, "true"},
        {"row.sender_id == auth.sub", {{"sub", 42}}, {{"sender_id", "43"}}, "false"},
        {"row.sender_id == auth.sub", {{"sub", 42}}, {{"sender_id", std::nullopt}}, "unknown"},
        {"row.sender_id == auth.sub", json::object(), {{"sender_id", "42"}}, "unknown"},
        {"row.sender_id != auth.sub", json::object(), {{"sender_id", "42"}}, "unknown"},
        {"not (row.sender_id == auth.sub)", json::object(), {{"sender_id", "42"}}, "unknown"},
        {"row.sender_id == auth.sub", {{"sub", nullptr}}, {{"sender_id", "42"}}, "unknown"},
        // a string claim meets an integer column: read as a number
        {"row.sender_id == auth.sub", {{"sub", "42"}}, {{"sender_id", "42"}}, "true"},
        {"row.sender_id == auth.sub", {{"sub", " 42"}}, {{"sender_id", "42"}}, "true"},
        // claims that do not fit become NULL (deny), never an error
        {"row.sender_id == auth.sub", {{"sub", "abc"}}, {{"sender_id", "42"}}, "unknown"},
        {"row.sender_id == auth.sub", {{"sub", true}}, {{"sender_id", "1"}}, "unknown"},
        {"row.sender_id == auth.sub",
         {{"sub", json::array({42})}},
         {{"sender_id", "42"}},
         "unknown"},
        {"row.sender_id == auth.sub", {{"sub", {{"id", 42}}}}, {{"sender_id", "42"}}, "unknown"},
        {"row.sent_at > auth.since", {{"since", 5}}, {{"sent_at", "2024-01-01"}}, "unknown"},
        {"row.flag == auth.flag", {{"flag", "nope"}}, {{"flag", "t"}}, "unknown"},
        // a float claim against an integer column compares in double
        {"row.sender_id == auth.sub", {{"sub", 42.0}}, {{"sender_id", "42"}}, "true"},
        // a numeric claim meets a text column: compared as its text
        {"row.body == auth.n", {{"n", 42}}, {{"body", "42"}}, "true"},
        {"row.body == auth.n", {{"n", 1.5}}, {{"body", "1.5"}}, "true"},
        {"row.body == auth.n", {{"n", 42}}, {{"body", "42.0"}}, "false"},
        // other types
        {"row.sent_at > auth.since",
         {{"since", "2024-01-01T00:00:00Z"}},
         {{"sent_at", "2024-01-02 00:00:00+00"}},
         "true"},
        {"row.flag == auth.flag", {{"flag", true}}, {{"flag", "t"}}, "true"},
        {"row.flag == auth.flag", {{"flag", "yes"}}, {{"flag", "t"}}, "true"},
        // nested paths and bracket paths
        {"row.sender_id == auth.user.id", {{"user", {{"id", 42}}}}, {{"sender_id", "42"}}, "true"},
        {"row.sender_id == auth.user.id", {{"user", 5}}, {{"sender_id", "42"}}, "unknown"},
        {"row.sender_id == auth['https://x/id']",
         {{"https://x/id", 42}},
         {{"sender_id", "42"}},
         "true"},
        {"row.sender_id == auth.app['x'].id",
         {{"app", {{"x", {{"id", 7}}}}}},
         {{"sender_id", "7"}},
         "true"},
    };
    for (const auto& c : cases) {
        const std::string what = std::string(c.expr) + " with " + c.claims.dump();
        try {
            auto p = rules_expr(c.expr, c.claims);
            EXPECT_EQ(show(eval(*p, row_of(c.row))), c.expected) << what;
        } catch (const std::exception& e) {
            ADD_FAILURE() << what << ": " << e.what();
        }
    }
}

// A string claim is read by the input function of the column's type, exactly; text Postgres
// would refuse (for that type: int4 and int8 differ) is NULL and denies. JSON numbers stay
// numbers.
TEST(predicate, string_claims_postgres_would_refuse_for_the_column_type_are_null) {
    struct {
        const char* expr;
        json claims;
        cells row;
        const char* expected;
    } cases[] = {
        // sender_id is bigint
        {"row.sender_id <= auth.uid", {{"uid", "4.5"}}, {{"sender_id", "1"}}, "unknown"},
        {"row.sender_id <= auth.uid", {{"uid", "2.50"}}, {{"sender_id", "1"}}, "unknown"},
        {"row.sender_id <= auth.uid", {{"uid", "NaN"}}, {{"sender_id", "1"}}, "unknown"},
        {"row.sender_id <= auth.uid", {{"uid", "1e2"}}, {{"sender_id", "1"}}, "unknown"},
        {"row.sender_id <= auth.uid", {{"uid", "42.0"}}, {{"sender_id", "1"}}, "unknown"},
        {"row.sender_id <= auth.uid", {{"uid", ""}}, {{"sender_id", "1"}}, "unknown"},
        {"row.sender_id <= auth.uid",
         {{"uid", "9223372036854775808"}},
         {{"sender_id", "1"}},
         "unknown"},
        {"row.sender_id <= auth.uid", {{"uid", "99999999999"}}, {{"sender_id", "1"}}, "true"},
        {"row.sender_id <= auth.uid", {{"uid", " 42 "}}, {{"sender_id", "42"}}, "true"},
        {"row.sender_id <= auth.uid", {{"uid", "+42"}}, {{"sender_id", "43"}}, "false"},
        {"not (row.sender_id > auth.uid)", {{"uid", "4.5"}}, {{"sender_id", "9"}}, "unknown"},
        // room_id is integer: beyond int4 is refused, as a string; a number compares as one
        {"row.room_id <= auth.uid", {{"uid", "99999999999"}}, {{"room_id", "1"}}, "unknown"},
        {"row.room_id >= auth.uid", {{"uid", "-2147483649"}}, {{"room_id", "1"}}, "unknown"},
        {"row.room_id <= auth.uid", {{"uid", 99999999999}}, {{"room_id", "1"}}, "true"},
        {"row.room_id <= auth.uid", {{"uid", 4.5}}, {{"room_id", "4"}}, "true"},
        // NOT IN with an element Postgres would refuse: unknown unless another one matches
        {"row.room_id not in auth.nums", {{"nums", {"2.50"}}}, {{"room_id", "1"}}, "unknown"},
        {"row.room_id not in auth.nums", {{"nums", {"2.50"}}}, {{"room_id", "2"}}, "unknown"},
        {"row.room_id not in auth.nums", {{"nums", {1, "2.50"}}}, {{"room_id", "1"}}, "false"},
        {"row.room_id in auth.nums", {{"nums", {"1e0", " 1"}}}, {{"room_id", "1"}}, "true"},
        {"row.room_id in auth.nums", {{"nums", {"1e0"}}}, {{"room_id", "1"}}, "unknown"},
        // numeric, double precision and boolean read their own way
        {"row.price == auth.p", {{"p", "2.50"}}, {{"price", "2.5"}}, "true"},
        {"row.price == auth.p", {{"p", "1e2"}}, {{"price", "100"}}, "true"},
        {"row.price == auth.p", {{"p", "NaN"}}, {{"price", "NaN"}}, "true"},
        {"row.price == auth.p", {{"p", "0x10"}}, {{"price", "16"}}, "unknown"},
        {"row.score == auth.p", {{"p", "0x10"}}, {{"score", "16"}}, "true"},
        {"row.score == auth.p", {{"p", "1e400"}}, {{"score", "Infinity"}}, "unknown"},
        {"row.flag == auth.f", {{"f", "tr"}}, {{"flag", "t"}}, "true"},
        {"row.flag == auth.f", {{"f", "o"}}, {{"flag", "t"}}, "unknown"},
        // no Postgres text holds a NUL
        {"row.body == auth.n", {{"n", std::string("a\0b", 3)}}, {{"body", "a"}}, "unknown"},
        {"row.body != auth.n", {{"n", std::string("a\0b", 3)}}, {{"body", "a"}}, "unknown"},
        // a claim meeting a constant is read by the constant's type (bigint for an integer)
        {"auth.level > 3 and row.room_id = 1", {{"level", "5"}}, {{"room_id", "1"}}, "true"},
        {"auth.level > 3 and row.room_id = 1", {{"level", "5.5"}}, {{"room_id", "1"}}, "unknown"},
    };
    for (const auto& c : cases) {
        const std::string what = std::string(c.expr) + " with " + c.claims.dump();
        try {
            auto p = rules_expr(c.expr, c.claims);
            EXPECT_EQ(show(eval(*p, row_of(c.row))), c.expected) << what;
        } catch (const std::exception& e) {
            ADD_FAILURE() << what << ": " << e.what();
        }
    }
}

// Literals and $N parameters meeting a column are untyped literals to Postgres: text its input
// function refuses is an error there, so it is one here (bad_query for a subscription).
TEST(predicate, literals_and_parameters_postgres_would_refuse_are_bind_errors) {
    const char* refused[] = {
        "room_id = '2.50'",
        "room_id = '4.5'",
        "sender_id < '1e2'",
        "sender_id <= '9223372036854775808'",
        "sender_id >= '-9223372036854775809'",
        "room_id = '99999999999'",
        "room_id = '-2147483649'",
        "room_id = 'NaN'",
        "room_id = ''",
        "room_id IN (1, '2.5')",
        "room_id BETWEEN '1' AND '2.0'",
        "price = '0x10'",
        "score = '1e400'",
        "flag = 'o'",
    };
    for (const char* text : refused)
        bind_fails(text, dialect::sql, bind_error_code::type_mismatch);
    binding b;
    for (const char* param : {"2.50", "1e2", "99999999999", " 4.5", "NaN", ""}) {
        b.params = {param};
        bind_fails("room_id = $1", dialect::sql, bind_error_code::type_mismatch, b);
    }
    b.params = {std::string("x\0y", 3)};
    bind_fails("body = $1", dialect::sql, bind_error_code::type_mismatch, b);
    struct {
        const char* expr;
        cells row;
        const char* expected;
    } accepted[] = {
        {"room_id = ' 42 '", {{"room_id", "42"}}, "true"},
        {"room_id = '+42'", {{"room_id", "42"}}, "true"},
        {"room_id = '2147483647'", {{"room_id", "2147483647"}}, "true"},
        {"sender_id = '99999999999'", {{"sender_id", "99999999999"}}, "true"},
        {"price = '1e2'", {{"price", "100"}}, "true"},
        {"price = 'NaN'", {{"price", "NaN"}}, "true"},
        {"score = '0x10'", {{"score", "16"}}, "true"},
        {"score = ' -inf '", {{"score", "-Infinity"}}, "true"},
        {"flag = 'TRU'", {{"flag", "t"}}, "true"},
        // number literals are no text: no input function reads them
        {"room_id = 99999999999", {{"room_id", "1"}}, "false"},
        {"room_id < 4.5", {{"room_id", "4"}}, "true"},
    };
    for (const auto& c : accepted) {
        try {
            EXPECT_EQ(show(eval(*sql(c.expr), row_of(c.row))), c.expected) << c.expr;
        } catch (const std::exception& e) {
            ADD_FAILURE() << c.expr << ": " << e.what();
        }
    }
}

// Postgres types an IN list of several items by the common type of the column and the items
// that have a type, and reads quoted items as that type: an integer column meeting a bigint
// or numeric literal reads '99999999999' or '2.50' in the list. A single item is `=`.
TEST(predicate, in_lists_read_quoted_items_as_the_common_type_of_the_list) {
    struct {
        const char* expr;
        cells row;
        const char* expected;
    } cases[] = {
        {"room_id IN (9007199254740993, '99999999999')", {{"room_id", "1"}}, "false"},
        {"room_id IN (1.5, '2.50')", {{"room_id", "2"}}, "false"},
        {"room_id IN (1.5, '2.0')", {{"room_id", "2"}}, "true"},
        {"room_id IN (1, '2')", {{"room_id", "2"}}, "true"},
        {"price IN (1, '2.50')", {{"price", "2.5"}}, "true"},
    };
    for (const auto& c : cases) {
        try {
            EXPECT_EQ(show(eval(*sql(c.expr), row_of(c.row))), c.expected) << c.expr;
        } catch (const std::exception& e) {
            ADD_FAILURE() << c.expr << ": " << e.what();
        }
    }
    bind_fails("room_id IN ('99999999999')", dialect::sql, bind_error_code::type_mismatch);
    bind_fails("room_id IN (1, '99999999999')", dialect::sql, bind_error_code::type_mismatch);
    bind_fails("room_id IN (1, '2.50')", dialect::sql, bind_error_code::type_mismatch);
    binding b;
    b.params = {4.5, "2.50"}; // a JSON number is a double: the list compares as doubles
    EXPECT_EQ(show(eval(*sql("room_id IN ($1, $2)", b), row_of({{"room_id", "2"}}))), "false");
    b.params = {42, "99999999999"}; // and a JSON integer a bigint
    EXPECT_EQ(show(eval(*sql("room_id IN ($1, $2)", b), row_of({{"room_id", "42"}}))), "true");
}

// A literal Postgres would refuse is an error where it stands, even where the rest of the
// expression already decides the outcome: Postgres reads every literal before it evaluates.
TEST(predicate, a_decided_and_or_still_checks_every_literal) {
    bind_fails("false AND room_id = '2.50'", dialect::sql, bind_error_code::type_mismatch);
    bind_fails("true OR room_id = '2.50'", dialect::sql, bind_error_code::type_mismatch);
    bind_fails("1 = 2 AND (room_id < 'abc' OR true)", dialect::sql, bind_error_code::type_mismatch);
    EXPECT_EQ(show(sql("false AND room_id = '7'")->constant()), "false");
    EXPECT_EQ(show(sql("true OR room_id = '7'")->constant()), "true");
}

// A numeric claim used with LIKE is its decimal text, as it is against a text column; a claim
// that is neither is NULL. Postgres is handed the same text.
TEST(predicate, a_numeric_claim_as_a_like_pattern_is_its_decimal_text) {
    struct {
        const char* expr;
        json claims;
        cells row;
        const char* expected;
    } cases[] = {
        {"row.body like auth.name", {{"name", 42}}, {{"body", "42"}}, "true"},
        {"row.body like auth.name", {{"name", 42}}, {{"body", "420"}}, "false"},
        {"row.body not like auth.name", {{"name", 42}}, {{"body", "420"}}, "true"},
        {"row.body like auth.name", {{"name", -7}}, {{"body", "-7"}}, "true"},
        {"row.body like auth.name", {{"name", 4.5}}, {{"body", "4.5"}}, "true"},
        {"row.body like auth.name", {{"name", true}}, {{"body", "true"}}, "unknown"},
        {"row.body like auth.name", {{"name", {1}}}, {{"body", "1"}}, "unknown"},
        {"row.body like auth.name", json::object(), {{"body", "1"}}, "unknown"},
        {"auth.n like '4%' and row.room_id = 1", {{"n", 42}}, {{"room_id", "1"}}, "true"},
        {"auth.n like '5%' or row.room_id = 1", {{"n", 42}}, {{"room_id", "2"}}, "false"},
    };
    for (const auto& c : cases) {
        const std::string what = std::string(c.expr) + " with " + c.claims.dump();
        try {
            auto p = rules_expr(c.expr, c.claims);
            EXPECT_EQ(show(eval(*p, row_of(c.row))), c.expected) << what;
        } catch (const std::exception& e) {
            ADD_FAILURE() << what << ": " << e.what();
        }
    }
    const json claims = {{"name", 42}};
    auto p = rules_expr("row.body like auth.name", claims);
    std::vector<std::string> names, params;
    for (const auto& col : messages().columns)
        names.push_back(col.name);
    EXPECT_EQ(p->to_sql(names, params), "((\"body\" COLLATE \"C\") LIKE $1::text)");
    EXPECT_EQ(params, std::vector<std::string>{"42"});
}

// Patterns Postgres refuses ("must not end with escape character") and patterns over
// like_max_pattern_chars: errors as literals and parameters, NULL as claims. A pattern is a value.
TEST(predicate, like_patterns_postgres_would_refuse_or_over_the_cap) {
    const std::string at_cap(like_max_pattern_chars, '%');
    const std::string over_cap(like_max_pattern_chars + 1, '%');
    bind_fails("body LIKE 'abc\\'", dialect::sql, bind_error_code::type_mismatch);
    bind_fails("body NOT LIKE '" + over_cap + "'", dialect::sql, bind_error_code::type_mismatch);
    EXPECT_EQ(show(eval(*sql("body LIKE '" + at_cap + "'"), row_of({{"body", "x"}}))), "true");
    binding b;
    b.params = {"abc\\"};
    bind_fails("body LIKE $1", dialect::sql, bind_error_code::type_mismatch, b);
    b.params = {over_cap};
    bind_fails("body LIKE $1", dialect::sql, bind_error_code::type_mismatch, b);
    b.params = {std::string("a\0%", 3)};
    bind_fails("body LIKE $1", dialect::sql, bind_error_code::type_mismatch, b);
    for (const json& pattern : {json("abc\\"), json(over_cap), json(std::string("%\0", 2))}) {
        const json claims = {{"p", pattern}};
        EXPECT_EQ(show(eval(*rules_expr("row.body like auth.p", claims), row_of({{"body", "x"}}))),
                  "unknown");
        EXPECT_EQ(
            show(eval(*rules_expr("row.body not like auth.p", claims), row_of({{"body", "x"}}))),
            "unknown");
    }
    bind_fails("'abc' LIKE body", dialect::sql, bind_error_code::bad_expression);
    bind_fails("body LIKE body", dialect::sql, bind_error_code::bad_expression);
}

// An array or object claim is there, though it compares with nothing: IS NULL is false for it.
TEST(predicate, is_null_sees_array_and_object_claims_and_payload_fields) {
    const json claims = {{"arr", {1, 2}},
                         {"empty", json::array()},
                         {"obj", {{"a", 1}}},
                         {"nul", nullptr},
                         {"s", ""}};
    struct {
        const char* expr;
        const char* expected;
    } cases[] = {
        {"auth.arr is not null", "true"},   {"auth.arr is null", "false"},
        {"auth.empty is not null", "true"}, {"auth.obj is not null", "true"},
        {"auth.obj is null", "false"},      {"auth.nul is null", "true"},
        {"auth.missing is null", "true"},   {"auth.missing.deeper is null", "true"},
        {"auth.obj.a is not null", "true"}, {"auth.s is not null", "true"},
        {"auth.arr = 1", "unknown"},
    };
    for (const auto& c : cases) {
        auto p = rules_expr(c.expr, claims);
        EXPECT_EQ(show(p->constant()), c.expected) << c.expr;
    }
    binding channel;
    channel.table = nullptr;
    channel.allow_payload = true;
    auto p = rules_expr("payload.to is not null", claims, channel);
    const json with_object = {{"to", {{"id", 1}}}}, with_array = {{"to", {1}}},
               with_null = {{"to", nullptr}}, without = json::object();
    EXPECT_EQ(show(eval(*p, {}, {}, &with_object)), "true");
    EXPECT_EQ(show(eval(*p, {}, {}, &with_array)), "true");
    EXPECT_EQ(show(eval(*p, {}, {}, &with_null)), "false");
    EXPECT_EQ(show(eval(*p, {}, {}, &without)), "false");
}

const table_schema& typed() {
    static const table_schema schema{"public",
                                     "typed",
                                     {
                                         {"s", column_family::text, "text"},
                                         {"v", column_family::text, "character varying(20)"},
                                         {"u", column_family::text, "uuid"},
                                         {"c", column_family::text, "\"char\""},
                                         {"mood", column_family::other, "mood"},
                                         {"i", column_family::integer, "integer"},
                                         {"r", column_family::real, "real"},
                                         {"t", column_family::text, "text"},
                                         {"ch", column_family::text, "character(4)"},
                                     }};
    return schema;
}

// The snapshot's SQL: every parameter cast to what it meets, text ordered and LIKEd in C
// (COLLATE "C") whatever the column's collation, equality kept indexable.
TEST(predicate, to_sql_casts_every_parameter_and_compares_text_in_c) {
    struct {
        const char* expr;
        std::vector<json> params;
        const char* sql;
        std::vector<std::string> values;
    } cases[] = {
        {"s < 'a'", {}, R"((("s" COLLATE "C") < $1::text))", {"a"}},
        {"'a' >= s", {}, R"(($1::text >= ("s" COLLATE "C")))", {"a"}},
        {"s = 'a'", {}, R"(("s" = $1::text AND ("s" COLLATE "C") = $1::text))", {"a"}},
        {"s <> 'a'", {}, R"((("s" COLLATE "C") <> $1::text))", {"a"}},
        {"s = t", {}, R"((("s" COLLATE "C") = ("t" COLLATE "C")))", {}},
        {"s IN ('a', 'b')",
         {},
         R"(("s" IN ($1::text, $2::text) AND ("s" COLLATE "C") IN ($1::text, $2::text)))",
         {"a", "b"}},
        {"s NOT IN ('a')", {}, R"((("s" COLLATE "C") NOT IN ($1::text)))", {"a"}},
        {"s BETWEEN 'a' AND 'b'",
         {},
         R"((("s" COLLATE "C") BETWEEN $1::text AND $2::text))",
         {"a", "b"}},
        {"s LIKE 'a%'", {}, R"((("s" COLLATE "C") LIKE $1::text))", {"a%"}},
        {"v < $1", {"x"}, R"((("v" COLLATE "C") < $1::text))", {"x"}},
        {"u = 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'",
         {},
         R"(("u" = $1::uuid))",
         {"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"}},
        {"u < s", {}, R"((("u"::text COLLATE "C") < ("s"::text COLLATE "C")))", {}},
        {"u LIKE 'a0%'", {}, R"((("u"::text COLLATE "C") LIKE $1::text))", {"a0%"}},
        {"c = 'x'", {}, R"((("c"::text COLLATE "C") = $1::text))", {"x"}},
        {"mood = 'happy'", {}, R"((("mood"::text COLLATE "C") = $1::text))", {"happy"}},
        {"mood LIKE 'h%'", {}, R"((("mood"::text COLLATE "C") LIKE $1::text))", {"h%"}},
        {"ch = 'ab'", {}, R"(((textin(bpcharout("ch")) COLLATE "C") = $1::text))", {"ab"}},
        {"ch LIKE 'ab'", {}, R"(((textin(bpcharout("ch")) COLLATE "C") LIKE $1::text))", {"ab"}},
        {"i = '7'", {}, R"(("i" = $1::int8))", {"7"}},
        {"i < 2.5", {}, R"(("i" < $1::numeric))", {"2.5"}},
        {"r = '0.1'", {}, R"(("r" = $1::float8))", {"0.10000000149011612"}},
        {"i IN (1, NULL)", {}, R"(("i" IN ($1::int8, NULL)))", {"1"}},
    };
    std::vector<std::string> names;
    for (const auto& col : typed().columns)
        names.push_back(col.name);
    for (const auto& c : cases) {
        binding b;
        b.table = &typed();
        b.params = c.params;
        try {
            auto p = sql(c.expr, b);
            std::vector<std::string> params;
            EXPECT_EQ(p->to_sql(names, params), c.sql) << c.expr;
            EXPECT_EQ(params, c.values) << c.expr;
        } catch (const std::exception& e) {
            ADD_FAILURE() << c.expr << ": " << e.what();
        }
    }
    binding b;
    b.table = &typed();
    bind_fails("u = 'not-a-uuid'", dialect::sql, bind_error_code::type_mismatch, b);
    auto p = sql("u = '{A0EEBC999C0B4EF8BB6D6BB9BD380A11}'", b);
    std::vector<value> row(typed().columns.size());
    row[2] = value::text("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
    EXPECT_EQ(show(eval(*p, row)), "true");
}

TEST(predicate, bound_predicates_do_not_borrow_from_claims_or_the_expression) {
    std::unique_ptr<predicate> p;
    {
        json claims = {{"name", "alice"}, {"rooms", {"x", "y"}}};
        p = rules_expr("row.body == auth.name or row.body in auth.rooms", claims);
        claims["name"] = "mallory-with-a-much-longer-name-to-force-reallocation";
        claims["rooms"] = json::array();
    }
    EXPECT_EQ(show(eval(*p, row_of({{"body", "alice"}}))), "true");
    EXPECT_EQ(show(eval(*p, row_of({{"body", "y"}}))), "true");
    EXPECT_EQ(show(eval(*p, row_of({{"body", "z"}}))), "false");
}

TEST(predicate, array_claims_feed_in) {
    struct {
        const char* expr;
        json claims;
        cells row;
        const char* expected;
    } cases[] = {
        {"row.room_id in auth.rooms", {{"rooms", {1, 2, 3}}}, {{"room_id", "2"}}, "true"},
        {"row.room_id in auth.rooms", {{"rooms", {1, 2, 3}}}, {{"room_id", "4"}}, "false"},
        {"row.room_id in auth.rooms",
         {{"rooms", {1, 2, 3}}},
         {{"room_id", std::nullopt}},
         "unknown"},
        {"row.room_id not in auth.rooms", {{"rooms", {1, 2}}}, {{"room_id", "3"}}, "true"},
        {"row.room_id not in auth.rooms", {{"rooms", {1, 2}}}, {{"room_id", "1"}}, "false"},
        {"row.room_id in auth.rooms", {{"rooms", {"1", "2"}}}, {{"room_id", "1"}}, "true"},
        {"row.room_id in auth.rooms", {{"rooms", {1, "x", nullptr}}}, {{"room_id", "1"}}, "true"},
        {"row.room_id in auth.rooms",
         {{"rooms", {1, "x", nullptr}}},
         {{"room_id", "2"}},
         "unknown"},
        {"row.body in auth.tags", {{"tags", {1, "a"}}}, {{"body", "1"}}, "true"},
        {"row.body in auth.tags", {{"tags", {1, "a"}}}, {{"body", "b"}}, "false"},
        {"row.room_id in auth.org.rooms",
         {{"org", {{"rooms", json::array({5})}}}},
         {{"room_id", "5"}},
         "true"},
        {"row.room_id in [auth.a, auth.b]", {{"a", 1}, {"b", 2}}, {{"room_id", "2"}}, "true"},
        {"row.room_id in [auth.a, auth.b]", {{"a", 1}}, {{"room_id", "2"}}, "unknown"},
        // not an array: NULL, so unknown either way
        {"row.room_id in auth.rooms", {{"rooms", 5}}, {{"room_id", "5"}}, "unknown"},
        {"row.room_id not in auth.rooms", {{"rooms", 5}}, {{"room_id", "6"}}, "unknown"},
        {"row.room_id in auth.rooms", json::object(), {{"room_id", "5"}}, "unknown"},
        {"row.room_id not in auth.rooms", json::object(), {{"room_id", "5"}}, "unknown"},
        // empty array: IN is false, NOT IN true, even for a NULL subject
        {"row.room_id in auth.rooms", {{"rooms", json::array()}}, {{"room_id", "5"}}, "false"},
        {"row.room_id not in auth.rooms", {{"rooms", json::array()}}, {{"room_id", "5"}}, "true"},
        {"row.room_id in auth.rooms",
         {{"rooms", json::array()}},
         {{"room_id", std::nullopt}},
         "false"},
    };
    for (const auto& c : cases) {
        const std::string what = std::string(c.expr) + " with " + c.claims.dump();
        try {
            auto p = rules_expr(c.expr, c.claims);
            EXPECT_EQ(show(eval(*p, row_of(c.row))), c.expected) << what;
        } catch (const std::exception& e) {
            ADD_FAILURE() << what << ": " << e.what();
        }
    }
}

// ---- lookups: bound exactly as array claims, with the resolver's result ----

// Points every lookup ref of `e` at `l`, as the loader does by name.
void resolve_lookups(expr& e, const lookup_rule& l) {
    if (e.type == expr::kind::ref && e.space == ref_space::lookup) e.lookup = &l;
    for (auto& a : e.args)
        resolve_lookups(*a, l);
}

const lookup_rule& rooms_lookup() {
    static const lookup_rule l = [] {
        lookup_rule r;
        r.name = "rooms";
        r.table = "public.room_members";
        r.output = "room_id";
        r.key_column = "user_id";
        r.claim_path = {"sub"};
        r.columns = {"user_id", "room_id"};
        return r;
    }();
    return l;
}

// Binds a rules expression whose lookup refs read `result` (nullptr: not known).
std::unique_ptr<predicate> with_lookup(std::string_view text, const json* result,
                                       const json& claims = json::object()) {
    auto e = parse_expression(text, dialect::rules);
    resolve_lookups(*e, rooms_lookup());
    bind_context ctx;
    ctx.table = &messages();
    ctx.claims = &claims;
    ctx.lookups = [result](const lookup_rule& l) -> const json* {
        EXPECT_EQ(&l, &rooms_lookup());
        return result;
    };
    const expr* one[] = {e.get()};
    return predicate::bind(one, ctx);
}

TEST(predicate, lookups_bind_as_array_claims_of_their_result) {
    struct {
        const char* expr;
        json result;
        cells row;
        const char* expected;
    } cases[] = {
        {"row.room_id in lookup.rooms", {1, 2, 3}, {{"room_id", "2"}}, "true"},
        {"row.room_id in lookup.rooms", {1, 2, 3}, {{"room_id", "4"}}, "false"},
        {"row.room_id in lookup.rooms", {1, 2, 3}, {{"room_id", std::nullopt}}, "unknown"},
        {"row.room_id not in lookup.rooms", {1, 2}, {{"room_id", "3"}}, "true"},
        {"row.room_id not in lookup.rooms", {1, 2}, {{"room_id", "1"}}, "false"},
        // Elements are read as the column's type, as claims are.
        {"row.room_id in lookup.rooms", {"1", "2"}, {{"room_id", "1"}}, "true"},
        {"row.room_id in lookup.rooms", {"4.5"}, {{"room_id", "4"}}, "unknown"},
        {"row.body in lookup.rooms", {1, "a"}, {{"body", "1"}}, "true"},
        {"row.flag in lookup.rooms", {true}, {{"flag", "t"}}, "true"},
        {"row.sent_at in lookup.rooms",
         {"2024-01-02 03:04:05+00"},
         {{"sent_at", "2024-01-02T03:04:05Z"}},
         "true"},
        // A NULL in the result: NOT IN can no longer be true (SQL's rule for IN lists).
        {"row.room_id in lookup.rooms", {1, nullptr}, {{"room_id", "1"}}, "true"},
        {"row.room_id in lookup.rooms", {1, nullptr}, {{"room_id", "2"}}, "unknown"},
        {"row.room_id not in lookup.rooms", {1, nullptr}, {{"room_id", "2"}}, "unknown"},
        // Empty: IN is false and NOT IN true, whatever the subject.
        {"row.room_id in lookup.rooms", json::array(), {{"room_id", "5"}}, "false"},
        {"row.room_id in lookup.rooms", json::array(), {{"room_id", std::nullopt}}, "false"},
        {"row.room_id not in lookup.rooms", json::array(), {{"room_id", "5"}}, "true"},
        // Not an array: unknown either way.
        {"row.room_id in lookup.rooms", 5, {{"room_id", "5"}}, "unknown"},
        {"row.room_id not in lookup.rooms", json::object(), {{"room_id", "5"}}, "unknown"},
        // A constant subject folds; the result compares with nothing outside IN.
        {"7 in lookup.rooms", {7}, {}, "true"},
        {"'7' not in lookup.rooms", {7}, {}, "false"},
        {"row.room_id = lookup.rooms", {1}, {{"room_id", "1"}}, "unknown"},
        {"lookup.rooms is not null", json::array(), {}, "true"},
        {"lookup.rooms is null", json::array(), {}, "false"},
    };
    for (const auto& c : cases) {
        const std::string what = std::string(c.expr) + " with " + c.result.dump();
        try {
            auto p = with_lookup(c.expr, &c.result);
            EXPECT_EQ(show(eval(*p, row_of(c.row))), c.expected) << what;
        } catch (const std::exception& e) {
            ADD_FAILURE() << what << ": " << e.what();
        }
    }
}

TEST(predicate, a_lookup_not_known_binds_as_a_missing_claim_and_denies) {
    struct {
        const char* expr;
        cells row;
        const char* expected;
    } cases[] = {
        {"row.room_id in lookup.rooms", {{"room_id", "1"}}, "unknown"},
        {"row.room_id not in lookup.rooms", {{"room_id", "1"}}, "unknown"},
        {"not (row.room_id in lookup.rooms)", {{"room_id", "1"}}, "unknown"},
        {"lookup.rooms is null", {}, "true"},
        {"row.room_id in lookup.rooms or row.sender_id = 5", {{"sender_id", "5"}}, "true"},
        {"row.room_id in lookup.rooms or row.sender_id = 5", {{"sender_id", "6"}}, "unknown"},
    };
    for (const auto& c : cases) {
        auto p = with_lookup(c.expr, nullptr);
        EXPECT_EQ(show(eval(*p, row_of(c.row))), c.expected) << c.expr;
    }
    EXPECT_EQ(with_lookup("row.room_id in lookup.rooms", nullptr)->constant(), tri::unknown);
}

TEST(predicate, a_lookup_result_is_an_in_list_indexed_by_its_column) {
    const json result = {3, 1, 2};
    auto p = with_lookup("row.room_id in lookup.rooms", &result);
    auto hint = p->index();
    ASSERT_TRUE(hint.has_value());
    EXPECT_EQ(hint->column, room_id);
    EXPECT_TRUE(hint->exact);
    std::vector<std::string> keys;
    for (const auto& v : hint->values)
        keys.push_back(index_key(v, column_family::integer).value_or("?"));
    EXPECT_EQ(keys, (std::vector<std::string>{"3", "1", "2"}));
    EXPECT_EQ(p->to_string(), "$col1 IN (3, 1, 2)");

    auto with_more = with_lookup("row.room_id in lookup.rooms and row.flag", &result);
    ASSERT_TRUE(with_more->index().has_value());
    EXPECT_FALSE(with_more->index()->exact);

    // NOT IN is no index.
    EXPECT_FALSE(with_lookup("row.room_id not in lookup.rooms", &result)->index().has_value());
}

TEST(predicate, bound_predicates_do_not_borrow_from_a_lookup_result) {
    std::unique_ptr<predicate> p;
    {
        json result = {"alice", "bob"};
        p = with_lookup("row.body in lookup.rooms", &result);
        result = json::array({"mallory-with-a-much-longer-name-to-force-reallocation"});
    }
    EXPECT_EQ(show(eval(*p, row_of({{"body", "bob"}}))), "true");
    EXPECT_EQ(show(eval(*p, row_of({{"body", "mallory"}}))), "false");
}

TEST(predicate, lookups_without_a_resolver_or_a_definition_are_bind_errors) {
    // No resolver: the context does not take lookups (a lookup's own filter, for one).
    auto e = parse_expression("row.room_id in lookup.rooms", dialect::rules);
    resolve_lookups(*e, rooms_lookup());
    const json claims = json::object();
    bind_context ctx;
    ctx.table = &messages();
    ctx.claims = &claims;
    const expr* one[] = {e.get()};
    try {
        predicate::bind(one, ctx);
        ADD_FAILURE() << "bound without a resolver";
    } catch (const bind_error& err) {
        EXPECT_EQ(err.code, bind_error_code::bad_expression);
        EXPECT_EQ(err.offset, 15U);
        EXPECT_STREQ(err.what(), "lookup.rooms cannot be used here");
    }
    // Parsed on its own, a ref names no lookup: the loader resolves them.
    auto unresolved = parse_expression("lookup.rooms is null", dialect::rules);
    ctx.lookups = [](const lookup_rule&) -> const json* { return nullptr; };
    const expr* two[] = {unresolved.get()};
    try {
        predicate::bind(two, ctx);
        ADD_FAILURE() << "bound an unresolved lookup";
    } catch (const bind_error& err) {
        EXPECT_EQ(err.code, bind_error_code::bad_expression);
        EXPECT_STREQ(err.what(), "lookup.rooms is not defined");
    }
}

TEST(predicate, auth_without_claims_is_a_bind_error) {
    binding none; // claims == nullptr
    EXPECT_EQ(bind_fails("row.room_id == auth.room", dialect::rules,
                         bind_error_code::bad_expression, none),
              15U);
    EXPECT_EQ(bind_fails("row.room_id in auth.rooms", dialect::rules,
                         bind_error_code::bad_expression, none),
              15U);
}

TEST(predicate, parameters_are_typed_like_literals) {
    auto with = [](std::vector<json> params) {
        binding b;
        b.params = std::move(params);
        return b;
    };
    struct {
        const char* expr;
        std::vector<json> params;
        cells row;
        const char* expected;
    } cases[] = {
        {"room_id = $1", {7}, {{"room_id", "7"}}, "true"},
        {"room_id = $1", {7}, {{"room_id", "8"}}, "false"},
        {"room_id = $1", {"7"}, {{"room_id", "7"}}, "true"},
        {"room_id = $1", {7.0}, {{"room_id", "7"}}, "true"},
        {"room_id = $1", {nullptr}, {{"room_id", "7"}}, "unknown"},
        {"room_id = $2", {1, 7}, {{"room_id", "7"}}, "true"},
        {"room_id IN ($1, $2)", {1, 2}, {{"room_id", "2"}}, "true"},
        {"sent_at > $1", {"2024-01-01"}, {{"sent_at", "2024-01-02 00:00:00+00"}}, "true"},
        {"flag = $1", {true}, {{"flag", "t"}}, "true"},
        {"body = $1", {"x"}, {{"body", "x"}}, "true"},
        {"body LIKE $1", {"a%"}, {{"body", "abc"}}, "true"},
        {"price = $1", {"7.50"}, {{"price", "7.5"}}, "true"},
    };
    for (const auto& c : cases) {
        const std::string what = std::string(c.expr) + " with " + json(c.params).dump();
        try {
            auto p = sql(c.expr, with(c.params));
            EXPECT_EQ(show(eval(*p, row_of(c.row))), c.expected) << what;
        } catch (const std::exception& e) {
            ADD_FAILURE() << what << ": " << e.what();
        }
    }
    EXPECT_EQ(
        bind_fails("room_id = $1", dialect::sql, bind_error_code::type_mismatch, with({"abc"})),
        10U);
    EXPECT_EQ(bind_fails("body = $1", dialect::sql, bind_error_code::type_mismatch, with({42})),
              7U);
    EXPECT_EQ(bind_fails("room_id = $2", dialect::sql, bind_error_code::bad_param, with({1})), 10U);
    EXPECT_EQ(bind_fails("room_id = $1", dialect::sql, bind_error_code::bad_param, with({})), 10U);
    EXPECT_EQ(bind_fails("room_id = $1", dialect::sql, bind_error_code::bad_param,
                         with({json::array({1, 2})})),
              10U);
    EXPECT_EQ(bind_fails("room_id = $1", dialect::sql, bind_error_code::bad_param,
                         with({json::object({{"a", 1}})})),
              10U);
}

TEST(predicate, old_row_only_where_allowed) {
    const json claims = json::object();
    EXPECT_EQ(bind_fails("old.room_id != row.room_id", dialect::rules,
                         bind_error_code::bad_expression, claims_only(claims)),
              0U);
    binding b;
    b.allow_old = true;
    auto p = rules_expr("old.room_id != row.room_id", claims, b);
    EXPECT_EQ(show(eval(*p, row_of({{"room_id", "1"}}), row_of({{"room_id", "2"}}))), "true");
    EXPECT_EQ(show(eval(*p, row_of({{"room_id", "1"}}), row_of({{"room_id", "1"}}))), "false");
    EXPECT_EQ(show(eval(*p, row_of({{"room_id", "1"}}), {})), "unknown"); // old row unknown
    EXPECT_EQ(p->columns(), std::vector<std::size_t>{room_id});
}

TEST(predicate, payload_only_in_channel_filters_and_read_from_the_payload_json) {
    const json claims = {{"room", 5}, {"rooms", {1, 2}}, {"name", "bob"}};
    binding channel;
    channel.table = nullptr;
    channel.allow_payload = true;
    struct {
        const char* expr;
        json payload;
        const char* expected;
    } cases[] = {
        {"payload.room == auth.room", {{"room", 5}}, "true"},
        {"payload.room == auth.room", {{"room", 6}}, "false"},
        {"payload.room == auth.room", {{"room", "5"}}, "true"},
        {"payload.room == auth.room", {{"room", nullptr}}, "unknown"},
        {"payload.room == auth.room", json::object(), "unknown"},
        {"payload.room == auth.room", json::array({5}), "unknown"},
        {"payload.room == auth.room", "5", "unknown"},
        {"payload.room in auth.rooms", {{"room", 2}}, "true"},
        {"payload.room in auth.rooms", {{"room", 3}}, "false"},
        {"payload.user.name == auth.name", {{"user", {{"name", "bob"}}}}, "true"},
        {"payload['user'].name like 'b%'", {{"user", {{"name", "bob"}}}}, "true"},
        {"payload.urgent", {{"urgent", true}}, "true"},
        {"payload.urgent", {{"urgent", "yes"}}, "unknown"},
        {"payload.kind is null", json::object(), "true"},
        {"payload.n > 1.5", {{"n", 2}}, "true"},
    };
    for (const auto& c : cases) {
        const std::string what = std::string(c.expr) + " on " + c.payload.dump();
        try {
            auto p = rules_expr(c.expr, claims, channel);
            EXPECT_EQ(show(p->evaluate(row_values{{}, {}, &c.payload})), c.expected) << what;
        } catch (const std::exception& e) {
            ADD_FAILURE() << what << ": " << e.what();
        }
    }
    auto p = rules_expr("payload.room == auth.room", claims, channel);
    EXPECT_EQ(show(p->evaluate(row_values{})), "unknown"); // no payload at all
    binding no_table = claims_only(claims);
    no_table.table = nullptr;
    no_table.allow_payload = true;

    EXPECT_EQ(bind_fails("payload.room == 1", dialect::rules, bind_error_code::bad_expression,
                         claims_only(claims)),
              0U);
    EXPECT_EQ(
        bind_fails("row.room_id == 1", dialect::rules, bind_error_code::bad_expression, no_table),
        0U);
}

TEST(predicate, constants_fold) {
    const json claims = {
        {"roles", json::array({"admin"})}, {"sub", 42}, {"admin", true}, {"nick", "yes"}};
    struct {
        const char* expr;
        std::optional<tri> expected;
    } cases[] = {
        {"'admin' in auth.roles or row.room_id == 1", tri::true_},
        {"'admin' in auth.roles and row.room_id == 1", std::nullopt},
        {"'guest' in auth.roles and row.room_id == 1", tri::false_},
        {"'guest' in auth.roles or row.room_id == 1", std::nullopt},
        {"'admin' in auth.missing", tri::unknown},
        {"'admin' in auth.sub", tri::unknown},
        {"auth.sub == 42", tri::true_},
        {"auth.sub == 43", tri::false_},
        {"auth.sub != 43", tri::true_},
        {"auth.missing == 1", tri::unknown},
        {"not auth.missing == 1", tri::unknown},
        {"auth.missing == 1 or true", tri::true_},
        {"auth.missing == 1 and false", tri::false_},
        {"auth.missing == 1 or false", tri::unknown},
        {"auth.missing is null", tri::true_},
        {"auth.sub is not null", tri::true_},
        {"auth.missing == 1 or row.room_id == 1", std::nullopt},
        {"auth.admin", tri::true_},
        {"not auth.admin", tri::false_},
        {"auth.nick", tri::unknown},
        {"1 = 1", tri::true_},
        {"1 = 2", tri::false_},
        {"1 = 1.0", tri::true_},
        {"'a' < 'b'", tri::true_},
        {"'a' like 'a%'", tri::true_},
        {"'a' not like 'a%'", tri::false_},
        {"2 between 1 and 3", tri::true_},
        {"2 not between 1 and 3", tri::false_},
        {"1 in [1, null]", tri::true_},
        {"2 in [1, null]", tri::unknown},
        {"2 not in [1, null]", tri::unknown},
        {"2 not in [1, 3]", tri::true_},
        {"true", tri::true_},
        {"not true", tri::false_},
        {"true and true and true", tri::true_},
        {"row.room_id == 1 or true", tri::true_},
        {"row.room_id == 1 and false", tri::false_},
        {"row.room_id == 1", std::nullopt},
    };
    for (const auto& c : cases) {
        try {
            auto p = rules_expr(c.expr, claims);
            EXPECT_EQ(show(p->constant()), show(c.expected)) << c.expr;
            if (c.expected) {
                // A constant predicate evaluates to its constant on any row.
                EXPECT_EQ(show(eval(*p, row_of({{"room_id", "1"}}))), show(*c.expected)) << c.expr;
                EXPECT_EQ(show(eval(*p, {})), show(*c.expected)) << c.expr;
            }
        } catch (const std::exception& e) {
            ADD_FAILURE() << c.expr << ": " << e.what();
        }
    }
}

TEST(predicate, folding_keeps_an_unknown_conjunct_so_the_row_cannot_make_it_true) {
    const json claims = json::object();
    auto p = rules_expr("auth.missing == 1 or row.room_id == 1", claims);
    EXPECT_EQ(show(eval(*p, row_of({{"room_id", "1"}}))), "true");
    EXPECT_EQ(show(eval(*p, row_of({{"room_id", "2"}}))), "unknown");
    auto q = rules_expr("auth.missing == 1 and row.room_id == 1", claims);
    EXPECT_EQ(show(q->constant()), "not constant");
    EXPECT_EQ(show(eval(*q, row_of({{"room_id", "1"}}))), "unknown");
    EXPECT_EQ(show(eval(*q, row_of({{"room_id", "2"}}))), "false");
}

TEST(predicate, binds_a_conjunction_of_several_expressions) {
    auto a = parse_expression("room_id = 1", dialect::sql);
    auto b = parse_expression("body = 'x'", dialect::sql);
    auto f = parse_expression("1 = 2", dialect::sql);
    bind_context ctx;
    ctx.table = &messages();

    auto none = predicate::bind({}, ctx);
    EXPECT_EQ(show(none->constant()), "true");
    const expr* only_null[] = {nullptr};
    EXPECT_EQ(show(predicate::bind(only_null, ctx)->constant()), "true");

    const expr* both[] = {a.get(), nullptr, b.get()};
    auto p = predicate::bind(both, ctx);
    EXPECT_EQ(show(p->constant()), "not constant");
    EXPECT_EQ(show(eval(*p, row_of({{"room_id", "1"}, {"body", "x"}}))), "true");
    EXPECT_EQ(show(eval(*p, row_of({{"room_id", "1"}, {"body", "y"}}))), "false");
    EXPECT_EQ(show(eval(*p, row_of({{"room_id", "2"}, {"body", "x"}}))), "false");

    const expr* with_false[] = {a.get(), f.get()};
    EXPECT_EQ(show(predicate::bind(with_false, ctx)->constant()), "false");
}

TEST(predicate, index_hint_names_an_equality_or_in_conjunct) {
    const json claims = {{"rooms", {1, 2}}};
    struct {
        const char* expr;
        dialect lang;
        std::vector<json> params;
        bool has_hint;
        std::size_t column;
        std::vector<std::string> values; // index keys of the hint's values
        bool exact;
    } cases[] = {
        {"room_id = 7", dialect::sql, {}, true, room_id, {"7"}, true},
        {"7 = room_id", dialect::sql, {}, true, room_id, {"7"}, true},
        {"room_id = '7'", dialect::sql, {}, true, room_id, {"7"}, true},
        {"room_id = $1", dialect::sql, {7}, true, room_id, {"7"}, true},
        {"body = 'x'", dialect::sql, {}, true, body, {"x"}, true},
        {"room_id IN (1, 2)", dialect::sql, {}, true, room_id, {"1", "2"}, true},
        {"room_id IN (1, NULL)", dialect::sql, {}, true, room_id, {"1"}, true},
        {"room_id IN (1, 2) AND body LIKE 'a%'",
         dialect::sql,
         {},
         true,
         room_id,
         {"1", "2"},
         false},
        {"room_id = 7 AND sender_id IN (1, 2, 3)", dialect::sql, {}, true, room_id, {"7"}, false},
        {"sender_id IN (1, 2, 3) AND room_id = 7", dialect::sql, {}, true, room_id, {"7"}, false},
        {"row.room_id in auth.rooms", dialect::rules, {}, true, room_id, {"1", "2"}, true},
        {"row.room_id in auth.rooms and row.flag",
         dialect::rules,
         {},
         true,
         room_id,
         {"1", "2"},
         false},
        {"row.room_id == 7 and auth.missing == 1", dialect::rules, {}, true, room_id, {"7"}, false},
        {"room_id = 7 OR room_id = 8", dialect::sql, {}, false, 0, {}, false},
        {"room_id NOT IN (1)", dialect::sql, {}, false, 0, {}, false},
        {"room_id > 7", dialect::sql, {}, false, 0, {}, false},
        {"room_id <> 7", dialect::sql, {}, false, 0, {}, false},
        {"room_id = sender_id", dialect::sql, {}, false, 0, {}, false},
        {"NOT room_id = 7", dialect::sql, {}, false, 0, {}, false},
        {"room_id = $1", dialect::sql, {nullptr}, false, 0, {}, false},
        {"flag", dialect::sql, {}, false, 0, {}, false},
        {"1 = 1", dialect::sql, {}, false, 0, {}, false},
    };
    for (const auto& c : cases) {
        binding b;
        b.claims = &claims;
        b.params = c.params;
        auto p = bind_text(c.expr, c.lang, b);
        auto hint = p->index();
        ASSERT_EQ(hint.has_value(), c.has_hint) << c.expr;
        if (!hint) continue;
        EXPECT_EQ(hint->column, c.column) << c.expr;
        EXPECT_EQ(hint->exact, c.exact) << c.expr;
        std::vector<std::string> keys;
        for (const auto& v : hint->values) {
            keys.push_back(index_key(v, messages().columns[hint->column].family).value_or("?"));
        }
        EXPECT_EQ(keys, c.values) << c.expr;
    }
}

TEST(predicate, columns_lists_every_position_read_once_in_order) {
    EXPECT_EQ(sql("body LIKE 'a%' AND room_id = 1 OR flag")->columns(),
              (std::vector<std::size_t>{room_id, body, flag}));
    EXPECT_EQ(sql("room_id = 1 AND room_id < 5")->columns(), std::vector<std::size_t>{room_id});
    EXPECT_EQ(sql("true")->columns(), std::vector<std::size_t>{});
    const json claims = json::object();
    binding b;
    b.allow_old = true;
    EXPECT_EQ(rules_expr("old.room_id != row.sender_id", claims, b)->columns(),
              (std::vector<std::size_t>{room_id, sender_id}));
}

TEST(predicate, renders_bound_form_for_logs) {
    EXPECT_EQ(sql("room_id = '7'")->to_string(), "$col1 = 7");
    EXPECT_EQ(sql("body LIKE 'a%' AND NOT flag")->to_string(), "($col3 LIKE 'a%' AND NOT $col7)");
}

TEST(bind_error_code, has_stable_names) {
    EXPECT_EQ(to_string(bind_error_code::unknown_column), "unknown_column");
    EXPECT_EQ(to_string(bind_error_code::type_mismatch), "type_mismatch");
    EXPECT_EQ(to_string(bind_error_code::bad_param), "bad_param");
    EXPECT_EQ(to_string(bind_error_code::bad_expression), "bad_expression");
}

TEST(table_schema, finds_columns_and_qualifies_its_name) {
    EXPECT_EQ(messages().find("room_id"), room_id);
    EXPECT_EQ(messages().find("ROOM_ID"), std::nullopt);
    EXPECT_EQ(messages().find(""), std::nullopt);
    EXPECT_EQ(messages().qualified(), "public.messages");
}

} // namespace
} // namespace pgpush::rules
