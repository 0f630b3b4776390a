// Differential test of rules/ against PostgreSQL as the oracle: random rows, random predicates
// (SQL, every operator the predicate language has, NULLs, NaN, infinities, mixed numeric types,
// timestamps with offsets, LIKE patterns, a text column with an ICU collation, uuid), each
// evaluated by Postgres (SELECT ... WHERE) and by rules/ (parse, bind, evaluate on the same rows
// read in the replication stream's text format), and the bound predicate rendered back to SQL
// (what a snapshot runs) evaluated by Postgres again. The three must select the same rows.
//
// Three sources of constants, each with values that are near misses for the column's type
// ("4.5", "2.50", "NaN", "1e2", " 42 ", "+7", "99999999999", "9223372036854775808",
// "-2147483649", "", "abc", ...):
//  - literals: Postgres raises an error for some; rules/ must then refuse the query
//    (bad_query), and refuse nothing Postgres runs;
//  - $N parameters: the oracle runs them as literals (strings) or typed numbers (JSON numbers);
//  - claims (rules.yaml expressions): the oracle reads a string claim with the column type's
//    own input function (claim_as(), NULL where it raises an error), a JSON number as a number
//    (as text against a text column), an array or object as NULL except for IS [NOT] NULL.
// rules/ compares text in C order whatever the column's collation: the oracle writes the ICU
// column as (tc COLLATE "C").
//
// PGPUSH_DIFF_CASES (default 2000) predicates per test; PGPUSH_DIFF_SEED to replay a failure.

#include <cstdlib>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <nlohmann/json.hpp>

#include "rules/like.hpp"
#include "rules/parser.hpp"
#include "rules/predicate.hpp"
#include "tests/support/pg_cluster.hpp"

namespace pgpush::testing {
namespace {

using namespace pgpush::rules;
using nlohmann::json;

struct column {
    const char* name;
    const char* sql_type;  // in CREATE TABLE
    const char* type_name; // as format_type() spells it (what the engine is given)
    const char* cast;      // the type, for claim_as(..., NULL::<cast>)
    column_family family;
    std::vector<const char*> literals; // SQL
    std::vector<const char*> rows;     // SQL, values the column can hold
    std::vector<const char*> strings;  // string claims and parameters
    const char* oracle = nullptr;      // how the oracle writes the column, if not by name
};

// Text Postgres' integer input refuses or reads differently from a number: near misses.
#define NEAR_MISS_NUMBERS                                                                          \
    "4.5", "2.50", "NaN", "1e2", " 42 ", "+7", "99999999999", "9223372036854775808",               \
        "-2147483649", "", "abc", "7", "-1", "0x10", "42.0"

const std::vector<const char*> text_literals = {"''",   "'a'", "'b'",        "'ab'", "'abc'",
                                                "'B'",  "'z'", "'\xc3\xa4'", "'a%'", "'it''s'",
                                                "' a'", "'A'", "'aa'",       "'42'", "'Z'"};
const std::vector<const char*> text_strings = {"",  "a",        "b", "ab", "B",
                                               "A", "\xc3\xa4", "z", "42", " a"};

const column columns[] = {
    {"i",
     "integer",
     "integer",
     "integer",
     column_family::integer,
     {"0",
      "1",
      "-1",
      "2",
      "3",
      "7",
      "-5",
      "100",
      "2147483647",
      "-2147483648",
      "9007199254740993",
      "1.5",
      "2.0",
      "-0.5",
      "'4.5'",
      "'2.50'",
      "'NaN'",
      "'1e2'",
      "' 42 '",
      "'+7'",
      "'99999999999'",
      "'-2147483649'",
      "''",
      "'abc'",
      "'7'",
      "'-1'"},
     {"0", "1", "-1", "2", "3", "7", "-5", "100", "2147483647", "-2147483648", "42"},
     {NEAR_MISS_NUMBERS}},
    {"b",
     "bigint",
     "bigint",
     "bigint",
     column_family::integer,
     {"0", "1", "-1", "7", "9007199254740993", "99999999999", "'99999999999'",
      "'9223372036854775807'", "'9223372036854775808'", "'-9223372036854775809'", "'1e2'", "'4.5'",
      "' 7'"},
     {"0", "1", "-1", "7", "9007199254740993", "9007199254740992", "-5", "99999999999"},
     {NEAR_MISS_NUMBERS, "9223372036854775807", "-9223372036854775808"}},
    {"sm",
     "smallint",
     "smallint",
     "smallint",
     column_family::integer,
     {"0", "1", "7", "40000", "'32767'", "'32768'", "'-32769'", "'7'", "'7.0'"},
     {"0", "1", "-1", "7", "32767", "-32768"},
     {NEAR_MISS_NUMBERS, "32768", "-32768"}},
    {"n",
     "numeric",
     "numeric",
     "numeric",
     column_family::numeric,
     {"0",
      "1",
      "1.5",
      "-1.25",
      "2.50",
      "3",
      "0.1",
      "1e2",
      "12345678901234567890.5",
      "'NaN'",
      "'Infinity'",
      "'-Infinity'",
      "-0.000001",
      "0.30000000000000004",
      "'2.50'",
      "' 1e2 '",
      "'abc'",
      "''",
      "'0x10'",
      "'inf'",
      "'1e131072'"},
     {"0", "1", "1.5", "-1.25", "2.50", "3", "0.1", "100", "12345678901234567890.5", "'NaN'",
      "'Infinity'", "'-Infinity'", "42"},
     {NEAR_MISS_NUMBERS, "Infinity", "-inf", "1e131072"}},
    {"f",
     "double precision",
     "double precision",
     "double precision",
     column_family::floating,
     {"0",          "1",
      "0.1",        "1.5",
      "-2",         "'NaN'",
      "'Infinity'", "'-Infinity'",
      "1e300",      "0.30000000000000004",
      "3",          "0.1000000000000000055511151231257827",
      "16777217",   "'0x10'",
      "'1e400'",    "'1e-400'",
      "' inf '",    "'nan'",
      "'4.5'",      "'abc'"},
     {"0", "1", "0.1", "1.5", "-2", "'NaN'", "'Infinity'", "'-Infinity'", "1e300", "16", "42"},
     {NEAR_MISS_NUMBERS, "1e400", "1e-400", "inf", "Infinity", "4.9e-324"}},
    {"r",
     "real",
     "real",
     "real",
     column_family::real,
     {"0", "1", "0.1", "1.5", "-2", "'NaN'", "'Infinity'", "'-Infinity'", "0.30000000000000004",
      "3", "'0.1'", "0.1000000000000000055511151231257827", "16777217", "'1e39'", "'0x10'",
      "'4.5'"},
     {"0", "1", "0.1", "1.5", "-2", "'NaN'", "'Infinity'", "'-Infinity'", "16777217", "3"},
     {NEAR_MISS_NUMBERS, "0.1", "1e39", "1e-50"}},
    {"t", "text", "text", "text", column_family::text, text_literals, text_literals, text_strings},
    {"tc", "text COLLATE \"en-US-x-icu\"", "text", "text", column_family::text, text_literals,
     text_literals, text_strings, "(tc COLLATE \"C\")"},
    {"ok",
     "boolean",
     "boolean",
     "boolean",
     column_family::boolean,
     {"true", "false", "'tr'", "'o'", "'yes'", "'0'", "'of'", "'maybe'"},
     {"true", "false"},
     {"t", "tr", "o", "of", "off", "YES", "1", "10", "", "true "}},
    {"ts",
     "timestamptz",
     "timestamp with time zone",
     "timestamptz",
     column_family::timestamp,
     {"'2024-01-01 00:00:00+00'", "'2024-01-01'", "'2024-06-01T12:00:00Z'",
      "'2024-06-01 14:00:00+02'", "'2023-12-31 23:59:59.999999+00'", "'infinity'", "'-infinity'",
      "'2024-03-10 08:30:00-05:00'"},
     {"'2024-01-01 00:00:00+00'", "'2024-01-01'", "'2024-06-01T12:00:00Z'",
      "'2024-06-01 14:00:00+02'", "'2023-12-31 23:59:59.999999+00'", "'infinity'", "'-infinity'",
      "'2024-03-10 08:30:00-05:00'"},
     {"2024-01-01 00:00:00+00", "2024-06-01T12:00:00Z", "infinity", "abc", "", "4.5"}},
    {"d",
     "date",
     "date",
     "date",
     column_family::date,
     {"'2024-01-01 00:00:00+00'", "'2024-01-01'", "'2024-06-01T12:00:00Z'", "'infinity'",
      "'2024-03-10 08:30:00-05:00'"},
     {"'2024-01-01'", "'2023-12-31'", "'2024-06-01'", "'infinity'", "'2024-03-10'"},
     {"2024-01-01", "2024-06-01 23:00-05", "infinity", "abc", "", "7"}},
    {"u",
     "uuid",
     "uuid",
     "uuid",
     column_family::text,
     {"'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'", "'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'",
      "'{a0eebc999c0b4ef8bb6d6bb9bd380a12}'", "'00000000-0000-0000-0000-000000000000'",
      "'ffffffff-ffff-ffff-ffff-ffffffffffff'", "'not-a-uuid'",
      "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1'"},
     {"'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'", "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12'",
      "'00000000-0000-0000-0000-000000000000'", "'ffffffff-ffff-ffff-ffff-ffffffffffff'",
      "'8f14e45f-ceea-467f-a0e6-4a1c0e1d2c3b'"},
     {"A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12",
      "{00000000000000000000000000000000}", "not-a-uuid", "", "42"}},
};

bool numeric(column_family f) {
    return f == column_family::integer || f == column_family::numeric ||
           f == column_family::floating || f == column_family::real;
}

// SQL's quoting of a string; nullopt for one no Postgres text can hold (a NUL byte).
std::optional<std::string> sql_quoted(std::string_view s) {
    if (s.find('\0') != std::string_view::npos) return std::nullopt;
    std::string out = "'";
    for (char c : s) {
        if (c == '\'') out += '\'';
        out += c;
    }
    return out + "'";
}

// A JSON number's text as the engine writes it (for text columns and LIKE).
std::string number_text(const json& v) {
    if (v.is_number_integer()) return v.dump();
    return fmt::format("{}", v.get<double>());
}

// Both spellings of a piece of predicate: for rules/ and for the oracle.
struct both {
    std::string mine, oracle;
};

class generator {
public:
    generator(unsigned seed, bool claims) : rng_(seed), claims_(claims) {}

    int pick(int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng_); }
    bool chance(int percent) { return pick(100) < percent; }
    template <typename T>
    const T& one_of(const std::vector<T>& items) {
        return items[static_cast<std::size_t>(pick(static_cast<int>(items.size())))];
    }
    template <typename T, std::size_t N>
    const T& one_of(const T (&items)[N]) {
        return items[pick(static_cast<int>(N))];
    }

    // Each case starts here: no parameters, no claims.
    void reset() {
        params_.clear();
        claims_json_ = json::object();
    }
    const std::vector<json>& params() const { return params_; }
    const json& claims() const { return claims_json_; }

    both ref(const column& c) {
        return {(claims_ ? std::string("row.") : std::string()) + c.name,
                c.oracle ? c.oracle : c.name};
    }

    // A constant meeting column `c`: a literal, or (SQL) a $N parameter.
    // In an IN list of several items a real column makes integer items reals (as Postgres types
    // such a list): JSON numbers stay out of those lists, where a double would make it float8.
    both literal(const column& c, bool in_list = false) {
        std::string lit = one_of(c.literals);
        if (claims_ || !chance(25)) return {lit, lit};
        // A parameter: a string (which Postgres reads as it reads a literal) or a JSON number.
        if (chance(70) || (in_list && c.family == column_family::real)) {
            const std::string s = one_of(c.strings);
            params_.push_back(s);
            return {"$" + std::to_string(params_.size()), *sql_quoted(s)};
        }
        static const json numbers[] = {42, 7, -1, 0, 99999999999, 4.5, 0.1, 1e20};
        const json& n = one_of(numbers);
        params_.push_back(n);
        // A number meeting anything but a number is an error, as in Postgres.
        if (!numeric(c.family)) return {"$" + std::to_string(params_.size()), number_text(n)};
        return {"$" + std::to_string(params_.size()), n.is_number_integer()
                                                          ? "(" + n.dump() + ")::int8"
                                                          : "(" + number_text(n) + ")::float8"};
    }

    // A claim value for a use against column `c`.
    json claim_value(const column& c) {
        switch (pick(10)) {
        case 0:
        case 1:
        case 2:
        case 3:
            return one_of(c.strings);
        case 4: {
            static const json numbers[] = {42, 7, 1, -1, 0, 4.5, 0.1, 99999999999, 32768, -2.5};
            return one_of(numbers);
        }
        case 5:
            return chance(50);
        case 6:
            return nullptr;
        case 7:
            return json::array({1, 2});
        case 8:
            return json{{"a", 1}};
        default:
            return json(json::value_t::discarded); // missing
        }
    }

    // A new claim holding `v` (left out when discarded), as auth.cN.
    std::string claim(const json& v) {
        const std::string key = "c" + std::to_string(++claim_n_);
        if (!v.is_discarded()) claims_json_[key] = v;
        return "auth." + key;
    }

    // What the oracle substitutes for claim `v` meeting column `c`.
    std::string claim_sql(const json& v, const column& c) {
        if (v.is_string()) {
            auto q = sql_quoted(v.get<std::string>());
            if (!q) return "NULL";
            return fmt::format("claim_as({}, NULL::{})", *q, c.cast);
        }
        if (v.is_boolean()) {
            return c.family == column_family::boolean ? (v.get<bool>() ? "true" : "false") : "NULL";
        }
        if (v.is_number()) {
            if (numeric(c.family)) {
                return v.is_number_integer() ? "(" + v.dump() + ")::int8"
                                             : "(" + number_text(v) + ")::float8";
            }
            if (c.family == column_family::text) {
                return fmt::format("claim_as('{}', NULL::{})", number_text(v), c.cast);
            }
        }
        return "NULL"; // null, missing, array, object, or a number meeting a boolean or a time
    }

    // A value to compare with `c`: a literal, or in rules expressions sometimes a claim.
    both constant(const column& c, bool in_list = false) {
        if (!claims_ || chance(50) || (in_list && c.family == column_family::real)) {
            return literal(c, in_list);
        }
        const json v = claim_value(c);
        return {claim(v), claim_sql(v, c)};
    }

    const column& any_column() { return one_of(columns); }

    // A column comparable with `c`: the same family, or any numeric one with a numeric; uuid
    // only with itself.
    const column& comparable_column(const column& c) {
        std::vector<const column*> ok;
        for (const auto& o : columns) {
            auto temporal = [](column_family x) {
                return x == column_family::timestamp || x == column_family::date;
            };
            const bool uuid_c = std::string_view(c.name) == "u",
                       uuid_o = std::string_view(o.name) == "u";
            if (uuid_c != uuid_o) continue;
            if (o.family == c.family || (numeric(o.family) && numeric(c.family)) ||
                (temporal(o.family) && temporal(c.family))) {
                ok.push_back(&o);
            }
        }
        return *ok[static_cast<std::size_t>(pick(static_cast<int>(ok.size())))];
    }

    both like_pattern() {
        static const char* parts[] = {"a", "b", "%", "_", "\xc3\xa4", "\\%", "\\_", "z", "ab", "4"};
        std::string p;
        int n = 1 + pick(4);
        for (int k = 0; k < n; ++k)
            p += one_of(parts);
        if (!claims_ || chance(50)) {
            if (!claims_ && chance(15)) {
                params_.push_back(p);
                return {"$" + std::to_string(params_.size()), *sql_quoted(p)};
            }
            return {*sql_quoted(p), *sql_quoted(p)};
        }
        // A claim: a pattern, one Postgres would refuse (NULL), a number (its decimal text).
        json v = p;
        if (chance(15)) v = p + "\\";
        if (chance(25)) {
            static const json numbers[] = {42, 4, -7, 4.5, 0.1};
            v = one_of(numbers);
        }
        if (chance(5)) v = json::array({"a"});
        std::string oracle = "NULL";
        if (v.is_string() && check_like_pattern(v.get<std::string>()) == like_pattern_error::none) {
            oracle = *sql_quoted(v.get<std::string>());
        } else if (v.is_number()) {
            oracle = "'" + number_text(v) + "'";
        }
        return {claim(v), oracle};
    }

    both atom() {
        const column& c = any_column();
        const both x = ref(c);
        const char* ops[] = {"=", "<>", "<", "<=", ">", ">=", "!="};
        switch (pick(claims_ ? 11 : 9)) {
        case 0:
        case 1: { // column op constant (or constant op column)
            const char* op = one_of(ops);
            const both k = constant(c);
            if (chance(80))
                return {x.mine + " " + op + " " + k.mine, x.oracle + " " + op + " " + k.oracle};
            return {k.mine + " " + op + " " + x.mine, k.oracle + " " + op + " " + x.oracle};
        }
        case 2: { // column op column
            const char* op = one_of(ops);
            const both y = ref(comparable_column(c));
            return {x.mine + " " + op + " " + y.mine, x.oracle + " " + op + " " + y.oracle};
        }
        case 3: { // [NOT] IN a list
            std::string mine, oracle;
            int n = 1 + pick(4);
            for (int k = 0; k < n; ++k) {
                const both item = chance(15) ? both{"NULL", "NULL"} : constant(c, true);
                mine += (k ? ", " : "") + item.mine;
                oracle += (k ? ", " : "") + item.oracle;
            }
            const char* neg = chance(30) ? "NOT " : "";
            return {fmt::format("{} {}IN ({})", x.mine, neg, mine),
                    fmt::format("{} {}IN ({})", x.oracle, neg, oracle)};
        }
        case 4: {
            const char* neg = chance(50) ? "NOT " : "";
            return {fmt::format("{} IS {}NULL", x.mine, neg),
                    fmt::format("{} IS {}NULL", x.oracle, neg)};
        }
        case 5: { // LIKE, on the text columns
            const both s = ref(columns[chance(50) ? 6 : 7]);
            const both p = like_pattern();
            const char* neg = chance(30) ? "NOT " : "";
            return {fmt::format("{} {}LIKE {}", s.mine, neg, p.mine),
                    fmt::format("{} {}LIKE {}", s.oracle, neg, p.oracle)};
        }
        case 6: {
            const both lo = constant(c), hi = constant(c);
            const char* neg = chance(30) ? "NOT " : "";
            return {fmt::format("{} {}BETWEEN {} AND {}", x.mine, neg, lo.mine, hi.mine),
                    fmt::format("{} {}BETWEEN {} AND {}", x.oracle, neg, lo.oracle, hi.oracle)};
        }
        case 7:
            return chance(50) ? ref(columns[8]) : both{"NOT " + ref(columns[8]).mine, "NOT ok"};
        case 8:
            return chance(50) ? both{"true", "true"} : both{"false", "false"};
        case 9: { // rules: [NOT] IN an array claim
            const column& ic = c.family == column_family::real ? columns[0] : c;
            const both y = ref(ic);
            const char* neg = chance(30) ? "not " : "";
            json arr = json::array();
            for (int n = pick(4); n > 0; --n) {
                json v = claim_value(ic);
                if (!v.is_discarded()) arr.push_back(v);
            }
            std::string oracle;
            if (chance(10)) arr = claim_value(ic); // not an array: NULL
            if (!arr.is_array()) {
                oracle = "NULL::boolean";
            } else if (arr.empty()) {
                oracle = *neg ? "true" : "false";
            } else {
                std::string items;
                for (const auto& v : arr)
                    items += (items.empty() ? "" : ", ") + claim_sql(v, ic);
                oracle = fmt::format("{} {}IN ({})", y.oracle, *neg ? "NOT " : "", items);
            }
            return {fmt::format("{} {}in {}", y.mine, neg, claim(arr)), oracle};
        }
        default: { // rules: a claim IS [NOT] NULL (arrays and objects are not NULL)
            const json v = claim_value(c);
            const bool negated = chance(50);
            const bool null = v.is_discarded() || v.is_null();
            return {fmt::format("{} is {}null", claim(v), negated ? "not " : ""),
                    null != negated ? "true" : "false"};
        }
        }
    }

    both predicate(int depth = 0) {
        if (depth >= 3 || chance(35)) return atom();
        const char* and_ = claims_ ? "and" : "AND";
        const char* or_ = claims_ ? "or" : "OR";
        switch (pick(3)) {
        case 0: {
            const both a = predicate(depth + 1), b = predicate(depth + 1);
            return {fmt::format("({} {} {})", a.mine, and_, b.mine),
                    fmt::format("({} AND {})", a.oracle, b.oracle)};
        }
        case 1: {
            const both a = predicate(depth + 1), b = predicate(depth + 1);
            return {fmt::format("({} {} {})", a.mine, or_, b.mine),
                    fmt::format("({} OR {})", a.oracle, b.oracle)};
        }
        default: {
            const both a = predicate(depth + 1);
            return {fmt::format("{} ({})", claims_ ? "not" : "NOT", a.mine),
                    fmt::format("NOT ({})", a.oracle)};
        }
        }
    }

    // A row's values as SQL literals (NULL often).
    std::string row(int id) {
        std::string out = std::to_string(id);
        for (const auto& c : columns) {
            out += ", ";
            out += chance(15) ? "NULL" : one_of(c.rows);
        }
        return out;
    }

private:
    std::mt19937 rng_;
    bool claims_;
    std::vector<json> params_;
    json claims_json_ = json::object();
    int claim_n_ = 0;
};

struct conn {
    PGconn* c;
    ~conn() { PQfinish(c); }
};
struct res {
    PGresult* r;
    ~res() { PQclear(r); }
};

class rules_differential : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        pg_ = new pg_cluster();
        std::string ddl = "CREATE TABLE diff (id int PRIMARY KEY";
        for (const auto& c : columns)
            ddl += fmt::format(", {} {}", c.name, c.sql_type);
        pg_->exec(ddl + ")");
        // A string claim is what the column type's input function makes of it; NULL where that
        // raises an error.
        pg_->exec(R"(
            CREATE FUNCTION claim_as(t text, sample anyelement) RETURNS anyelement
            LANGUAGE plpgsql IMMUTABLE AS $$
            DECLARE r sample%TYPE;
            BEGIN
                EXECUTE format('SELECT %L::%s', t, pg_typeof(sample)) INTO r;
                RETURN r;
            EXCEPTION WHEN others THEN
                RETURN NULL;
            END $$)");
    }
    static void TearDownTestSuite() {
        delete pg_;
        pg_ = nullptr;
    }

    void run(bool claims);

    static inline pg_cluster* pg_ = nullptr;
};

void rules_differential::run(bool claims) {
    const int cases =
        std::getenv("PGPUSH_DIFF_CASES") ? std::atoi(std::getenv("PGPUSH_DIFF_CASES")) : 2000;
    const unsigned seed = std::getenv("PGPUSH_DIFF_SEED")
                              ? static_cast<unsigned>(std::atoll(std::getenv("PGPUSH_DIFF_SEED")))
                              : std::random_device{}();
    SCOPED_TRACE("PGPUSH_DIFF_SEED=" + std::to_string(seed));
    generator gen(seed, claims);

    const int rows = 120;
    pg_->exec("TRUNCATE diff");
    std::string insert = "INSERT INTO diff VALUES ";
    for (int id = 1; id <= rows; ++id)
        insert += (id > 1 ? ", (" : "(") + gen.row(id) + ")";
    pg_->exec(insert);

    // The session settings of the replication stream, so rows read here are the text it carries.
    conn db{PQconnectdb((pg_->url() + "?options=-c%20DateStyle%3DISO%20-c%20TimeZone%3DUTC%20-c%20"
                                      "extra_float_digits%3D3")
                            .c_str())};
    ASSERT_EQ(PQstatus(db.c), CONNECTION_OK) << PQerrorMessage(db.c);

    table_schema schema{"public", "diff", {{"id", column_family::integer, "integer"}}};
    for (const auto& c : columns)
        schema.columns.push_back({c.name, c.family, c.type_name});

    res all{PQexec(db.c, "SELECT * FROM diff ORDER BY id")};
    ASSERT_EQ(PQresultStatus(all.r), PGRES_TUPLES_OK);
    std::vector<std::vector<std::string>> text(static_cast<std::size_t>(rows));
    std::vector<std::vector<bool>> nulls(static_cast<std::size_t>(rows));
    std::vector<std::vector<value>> values(static_cast<std::size_t>(rows));
    for (int r = 0; r < rows; ++r) {
        auto& t = text[static_cast<std::size_t>(r)];
        for (int c = 0; c < PQnfields(all.r); ++c) {
            t.emplace_back(PQgetvalue(all.r, r, c));
            nulls[static_cast<std::size_t>(r)].push_back(PQgetisnull(all.r, r, c));
        }
    }
    for (int r = 0; r < rows; ++r) {
        auto ur = static_cast<std::size_t>(r);
        for (std::size_t c = 0; c < schema.columns.size(); ++c) {
            values[ur].push_back(
                nulls[ur][c] ? value::null() : from_pg_text(schema.columns[c].family, text[ur][c]));
        }
    }
    std::vector<std::string> names;
    for (const auto& c : schema.columns)
        names.push_back(c.name);

    int failures = 0, refused = 0, selected_some = 0;
    for (int k = 0; k < cases && failures < 5; ++k) {
        gen.reset();
        const both where = gen.predicate();
        const std::string oracle_sql = "SELECT id FROM diff WHERE " + where.oracle + " ORDER BY id";
        const std::string what =
            (claims ? "rules: " : "query: ") + where.mine +
            (gen.params().empty() ? "" : "\n  params: " + json(gen.params()).dump()) +
            (claims ? "\n  claims: " + gen.claims().dump() : "") + "\n  oracle: " + oracle_sql;
        res r{PQexec(db.c, oracle_sql.c_str())};
        const bool postgres_refused = PQresultStatus(r.r) != PGRES_TUPLES_OK;

        std::unique_ptr<rules::predicate> p;
        std::string bind_error_text;
        try {
            expr_ptr e;
            if (claims) {
                e = parse_expression(where.mine, dialect::rules);
            } else {
                e = std::move(parse_select("SELECT id FROM diff WHERE " + where.mine).where);
            }
            bind_context ctx;
            ctx.table = &schema;
            ctx.claims = &gen.claims();
            ctx.params = gen.params();
            const expr* conjuncts[] = {e.get()};
            p = predicate::bind(conjuncts, ctx);
        } catch (const bind_error& e) {
            bind_error_text = e.what();
        } catch (const std::exception& e) {
            ADD_FAILURE() << "rules/ could not parse what the generator wrote: " << what << "\n"
                          << e.what();
            ++failures;
            continue;
        }
        if (postgres_refused || !p) {
            if (postgres_refused && !p) {
                ++refused;
                continue;
            }
            ADD_FAILURE() << (postgres_refused ? "Postgres refused what rules/ accepted: "
                                               : "rules/ refused what Postgres ran: ")
                          << what << "\n"
                          << (postgres_refused ? PQresultErrorMessage(r.r) : bind_error_text);
            ++failures;
            continue;
        }
        std::set<int> expected;
        for (int i = 0; i < PQntuples(r.r); ++i)
            expected.insert(std::atoi(PQgetvalue(r.r, i, 0)));
        if (!expected.empty()) ++selected_some;

        std::set<int> actual;
        for (int i = 0; i < rows; ++i) {
            if (p->evaluate({values[static_cast<std::size_t>(i)], {}, nullptr}) == tri::true_) {
                actual.insert(i + 1);
            }
        }
        // The bound predicate as a snapshot runs it.
        std::vector<std::string> params;
        const std::string rendered_sql = "SELECT id FROM diff WHERE " + p->to_sql(names, params);
        std::vector<const char*> pv;
        for (const auto& v : params)
            pv.push_back(v.c_str());
        res rr{PQexecParams(db.c, rendered_sql.c_str(), static_cast<int>(pv.size()), nullptr,
                            pv.data(), nullptr, nullptr, 0)};
        if (PQresultStatus(rr.r) != PGRES_TUPLES_OK) {
            ADD_FAILURE() << "Postgres refused the rendered SQL of: " << what << "\n"
                          << rendered_sql << "\n  " << json(params).dump() << "\n"
                          << PQresultErrorMessage(rr.r);
            ++failures;
            continue;
        }
        std::set<int> rendered;
        for (int i = 0; i < PQntuples(rr.r); ++i)
            rendered.insert(std::atoi(PQgetvalue(rr.r, i, 0)));
        if (rendered != expected) {
            ADD_FAILURE() << "the rendered SQL selects other rows than the oracle:\n  " << what
                          << "\n  " << rendered_sql << "\n  " << json(params).dump();
            ++failures;
        }
        if (actual != expected) {
            std::string diff;
            int show = 0;
            for (int id : expected) {
                if (!actual.count(id)) {
                    diff += fmt::format("  only Postgres: {}\n", id);
                    show = id;
                }
            }
            for (int id : actual) {
                if (!expected.count(id)) {
                    diff += fmt::format("  only rules/: {}\n", id);
                    show = id;
                }
            }
            std::string row;
            for (std::size_t c = 0; show > 0 && c < schema.columns.size(); ++c) {
                row += fmt::format(" {}={}", schema.columns[c].name,
                                   nulls[static_cast<std::size_t>(show - 1)][c]
                                       ? "NULL"
                                       : text[static_cast<std::size_t>(show - 1)][c]);
            }
            ADD_FAILURE() << "results differ for: " << what << "\n"
                          << diff << "row " << show << ":" << row;
            ++failures;
        }
    }
    // The generator must reach both sides: queries Postgres refuses (and rules/ with it), and
    // predicates that select rows.
    if (cases >= 500 && failures == 0) {
        EXPECT_GT(refused, cases / 50) << "too few refused queries to test refusing";
        EXPECT_GT(selected_some, cases / 10) << "too few predicates select anything";
    }
}

TEST_F(rules_differential, queries_with_literals_and_parameters_agree_with_postgres) {
    run(false);
}

TEST_F(rules_differential, rules_with_claims_agree_with_postgres) {
    run(true);
}

} // namespace
} // namespace pgpush::testing
