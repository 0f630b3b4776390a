// Differential test of rules/ against PostgreSQL as the oracle: random rows, random predicates
// (SQL, every operator the predicate language has, NULLs, NaN, infinities, mixed numeric types,
// timestamps with offsets, LIKE patterns), each evaluated by Postgres (SELECT ... WHERE) and by
// rules/ (parse, bind, evaluate on the same rows read in the replication stream's text format).
// The results must be identical.
//
// PGPUSH_DIFF_CASES (default 2000) predicates; PGPUSH_DIFF_SEED to replay a failure.

#include <cstdlib>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <libpq-fe.h>

#include "rules/parser.hpp"
#include "rules/predicate.hpp"
#include "tests/support/pg_cluster.hpp"

namespace pgpush::testing {
namespace {

using namespace pgpush::rules;

struct column {
    const char* name;
    const char* sql_type;
    column_family family;
};

const column columns[] = {
    {"i", "integer", column_family::integer},  {"b", "bigint", column_family::integer},
    {"n", "numeric", column_family::numeric},  {"f", "double precision", column_family::floating},
    {"r", "real", column_family::real},        {"t", "text", column_family::text},
    {"ok", "boolean", column_family::boolean}, {"ts", "timestamptz", column_family::timestamp},
    {"d", "date", column_family::date},
};

class generator {
public:
    explicit generator(unsigned seed) : rng_(seed) {}

    int pick(int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng_); }
    bool chance(int percent) { return pick(100) < percent; }

    template <typename T, std::size_t N>
    const T& one_of(const T (&items)[N]) {
        return items[pick(static_cast<int>(N))];
    }

    // A literal of the column's family, in SQL.
    std::string literal(column_family f) {
        static const char* ints[] = {"0",
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
                                     "-0.5"};
        static const char* decimals[] = {"0",
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
                                         "0.30000000000000004"};
        static const char* floats[] = {"0",          "1",
                                       "0.1",        "1.5",
                                       "-2",         "'NaN'",
                                       "'Infinity'", "'-Infinity'",
                                       "1e300",      "0.30000000000000004",
                                       "3",          "0.1000000000000000055511151231257827",
                                       "16777217"};
        static const char* reals[] = {
            "0",          "1",           "0.1",
            "1.5",        "-2",          "'NaN'",
            "'Infinity'", "'-Infinity'", "0.30000000000000004",
            "3",          "'0.1'",       "0.1000000000000000055511151231257827",
            "16777217"};
        static const char* texts[] = {"''",   "'a'", "'b'",        "'ab'", "'abc'",
                                      "'B'",  "'z'", "'\xc3\xa4'", "'a%'", "'it''s'",
                                      "' a'", "'A'", "'aa'"};
        static const char* stamps[] = {"'2024-01-01 00:00:00+00'",
                                       "'2024-01-01'",
                                       "'2024-06-01T12:00:00Z'",
                                       "'2024-06-01 14:00:00+02'",
                                       "'2023-12-31 23:59:59.999999+00'",
                                       "'infinity'",
                                       "'-infinity'",
                                       "'2024-03-10 08:30:00-05:00'"};
        switch (f) {
        case column_family::integer:
            return one_of(ints);
        case column_family::numeric:
            return one_of(decimals);
        case column_family::floating:
            return one_of(floats);
        case column_family::real:
            return one_of(reals); // 1e300 does not fit a real: Postgres refuses it in IN lists
        case column_family::text:
        case column_family::other:
            return one_of(texts);
        case column_family::boolean:
            return chance(50) ? "true" : "false";
        case column_family::timestamp:
        case column_family::date:
            return one_of(stamps);
        }
        return "NULL";
    }

    std::string like_pattern() {
        static const char* parts[] = {"a", "b", "%", "_", "\xc3\xa4", "\\%", "\\_", "z", "ab"};
        std::string p = "'";
        int n = 1 + pick(4);
        for (int k = 0; k < n; ++k)
            p += one_of(parts);
        return p + "'";
    }

    const column& any_column() { return one_of(columns); }

    // A column comparable with `f`: the same family, or any numeric one with a numeric.
    std::string comparable_column(column_family f) {
        std::vector<const column*> ok;
        for (const auto& c : columns) {
            auto is_num = [](column_family x) {
                return x == column_family::integer || x == column_family::numeric ||
                       x == column_family::floating || x == column_family::real;
            };
            bool numeric = is_num(c.family);
            bool fnum = is_num(f);
            auto temporal = [](column_family x) {
                return x == column_family::timestamp || x == column_family::date;
            };
            if (c.family == f || (numeric && fnum) || (temporal(c.family) && temporal(f))) {
                ok.push_back(&c);
            }
        }
        return ok[static_cast<std::size_t>(pick(static_cast<int>(ok.size())))]->name;
    }

    std::string atom() {
        const column& c = any_column();
        const char* ops[] = {"=", "<>", "<", "<=", ">", ">=", "!="};
        switch (pick(9)) {
        case 0:
        case 1: // column op literal (or literal op column)
            if (chance(80)) return fmt::format("{} {} {}", c.name, one_of(ops), literal(c.family));
            return fmt::format("{} {} {}", literal(c.family), one_of(ops), c.name);
        case 2: // column op column
            return fmt::format("{} {} {}", c.name, one_of(ops), comparable_column(c.family));
        case 3: { // [NOT] IN
            std::string list;
            int n = 1 + pick(4);
            for (int k = 0; k < n; ++k) {
                if (k) list += ", ";
                list += chance(15) ? "NULL" : literal(c.family);
            }
            return fmt::format("{} {}IN ({})", c.name, chance(30) ? "NOT " : "", list);
        }
        case 4:
            return fmt::format("{} IS {}NULL", c.name, chance(50) ? "NOT " : "");
        case 5:
            return fmt::format("t {}LIKE {}", chance(30) ? "NOT " : "", like_pattern());
        case 6:
            return fmt::format("{} {}BETWEEN {} AND {}", c.name, chance(30) ? "NOT " : "",
                               literal(c.family), literal(c.family));
        case 7:
            return chance(50) ? "ok" : "NOT ok";
        default:
            return chance(50) ? "true" : "false";
        }
    }

    std::string predicate(int depth = 0) {
        if (depth >= 3 || chance(35)) return atom();
        switch (pick(3)) {
        case 0:
            return fmt::format("({} AND {})", predicate(depth + 1), predicate(depth + 1));
        case 1:
            return fmt::format("({} OR {})", predicate(depth + 1), predicate(depth + 1));
        default:
            return fmt::format("NOT ({})", predicate(depth + 1));
        }
    }

    // A row's values as SQL literals (NULL often, special values sometimes).
    std::string row(int id) {
        std::string out = std::to_string(id);
        for (const auto& c : columns) {
            out += ", ";
            const std::string name = c.name;
            // Values each column can store (the comparison literals range wider).
            static const char* ints[] = {"0", "1",  "-1",  "2",          "3",
                                         "7", "-5", "100", "2147483647", "-2147483648"};
            static const char* bigs[] = {
                "0", "1", "-1", "7", "9007199254740993", "9007199254740992", "-5"};
            static const char* reals[] = {"0",     "1",          "0.1",         "1.5",      "-2",
                                          "'NaN'", "'Infinity'", "'-Infinity'", "16777217", "3"};
            static const char* dates[] = {"'2024-01-01'", "'2023-12-31'", "'2024-06-01'",
                                          "'infinity'", "'2024-03-10'"};
            if (chance(15)) {
                out += "NULL";
            } else if (name == "i") {
                out += one_of(ints);
            } else if (name == "b") {
                out += one_of(bigs);
            } else if (name == "r") {
                out += one_of(reals);
            } else if (name == "d") {
                out += one_of(dates);
            } else {
                out += literal(c.family);
            }
        }
        return out;
    }

private:
    std::mt19937 rng_;
};

struct conn {
    PGconn* c;
    ~conn() { PQfinish(c); }
};
struct res {
    PGresult* r;
    ~res() { PQclear(r); }
};

TEST(rules_differential, predicates_agree_with_postgres) {
    const int cases =
        std::getenv("PGPUSH_DIFF_CASES") ? std::atoi(std::getenv("PGPUSH_DIFF_CASES")) : 2000;
    const unsigned seed = std::getenv("PGPUSH_DIFF_SEED")
                              ? static_cast<unsigned>(std::atoll(std::getenv("PGPUSH_DIFF_SEED")))
                              : std::random_device{}();
    SCOPED_TRACE("PGPUSH_DIFF_SEED=" + std::to_string(seed));
    generator gen(seed);

    pg_cluster pg;
    std::string ddl = "CREATE TABLE diff (id int PRIMARY KEY";
    for (const auto& c : columns)
        ddl += fmt::format(", {} {}", c.name, c.sql_type);
    pg.exec(ddl + ")");
    const int rows = 120;
    std::string insert = "INSERT INTO diff VALUES ";
    for (int id = 1; id <= rows; ++id)
        insert += (id > 1 ? ", (" : "(") + gen.row(id) + ")";
    pg.exec(insert);

    // The session settings of the replication stream, so rows read here are the text it carries.
    conn db{PQconnectdb((pg.url() + "?options=-c%20DateStyle%3DISO%20-c%20TimeZone%3DUTC%20-c%20"
                                    "extra_float_digits%3D3")
                            .c_str())};
    ASSERT_EQ(PQstatus(db.c), CONNECTION_OK) << PQerrorMessage(db.c);

    table_schema schema{"public", "diff", {{"id", column_family::integer, "integer"}}};
    for (const auto& c : columns)
        schema.columns.push_back({c.name, c.family, c.sql_type});

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

    int failures = 0;
    for (int k = 0; k < cases && failures < 5; ++k) {
        const std::string where = gen.predicate();
        const std::string sql = "SELECT id FROM diff WHERE " + where;
        res r{PQexec(db.c, (sql + " ORDER BY id").c_str())};
        if (PQresultStatus(r.r) != PGRES_TUPLES_OK) {
            ADD_FAILURE() << "the generator wrote SQL Postgres refuses: " << sql << "\n"
                          << PQresultErrorMessage(r.r);
            ++failures;
            continue;
        }
        std::set<int> expected;
        for (int i = 0; i < PQntuples(r.r); ++i)
            expected.insert(std::atoi(PQgetvalue(r.r, i, 0)));

        std::set<int> actual;
        std::set<int> rendered; // the bound predicate rendered back to SQL, run by Postgres
        std::string rendered_sql;
        try {
            auto q = parse_select(sql);
            bind_context ctx;
            ctx.table = &schema;
            const expr* conjuncts[] = {q.where.get()};
            auto p = predicate::bind(conjuncts, ctx);
            for (int i = 0; i < rows; ++i) {
                if (p->evaluate({values[static_cast<std::size_t>(i)], {}, nullptr}) == tri::true_) {
                    actual.insert(i + 1);
                }
            }
            std::vector<std::string> names, params;
            for (const auto& c : schema.columns)
                names.push_back(c.name);
            rendered_sql = "SELECT id FROM diff WHERE " + p->to_sql(names, params);
            std::vector<const char*> pv;
            for (const auto& v : params)
                pv.push_back(v.c_str());
            res rr{PQexecParams(db.c, rendered_sql.c_str(), static_cast<int>(pv.size()), nullptr,
                                pv.data(), nullptr, nullptr, 0)};
            if (PQresultStatus(rr.r) != PGRES_TUPLES_OK) {
                ADD_FAILURE() << "Postgres refused the rendered SQL of: " << sql << "\n"
                              << rendered_sql << "\n"
                              << PQresultErrorMessage(rr.r);
                ++failures;
                continue;
            }
            for (int i = 0; i < PQntuples(rr.r); ++i)
                rendered.insert(std::atoi(PQgetvalue(rr.r, i, 0)));
        } catch (const std::exception& e) {
            ADD_FAILURE() << "rules/ refused what Postgres ran: " << sql << "\n" << e.what();
            ++failures;
            continue;
        }
        if (rendered != expected) {
            ADD_FAILURE() << "the rendered SQL selects other rows than the query:\n  " << sql
                          << "\n  " << rendered_sql;
            ++failures;
        }
        if (actual != expected) {
            std::string diff;
            for (int id : expected) {
                if (!actual.count(id)) diff += fmt::format("  only Postgres: {}\n", id);
            }
            for (int id : actual) {
                if (!expected.count(id)) diff += fmt::format("  only rules/: {}\n", id);
            }
            int show = expected.size() > actual.size() ? *std::next(expected.begin(), 0) : 0;
            for (int id : expected) {
                if (!actual.count(id)) show = id;
            }
            for (int id : actual) {
                if (!expected.count(id)) show = id;
            }
            std::string row;
            if (show > 0) {
                for (std::size_t c = 0; c < schema.columns.size(); ++c) {
                    row += fmt::format(" {}={}", schema.columns[c].name,
                                       nulls[static_cast<std::size_t>(show - 1)][c]
                                           ? "NULL"
                                           : text[static_cast<std::size_t>(show - 1)][c]);
                }
            }
            ADD_FAILURE() << "results differ for: " << sql << "\n"
                          << diff << "row " << show << ":" << row;
            ++failures;
        }
    }
}

} // namespace
} // namespace pgpush::testing
