// `pgpush serve` end to end on rules that must fail closed and agree with Postgres: the
// snapshot (run by Postgres) and the live stream (matched by pgpush) give a subscriber the same
// rows, and what Postgres would refuse is refused.
//
// Nothing here sleeps to synchronise. To show that something did NOT arrive, a test makes a
// later change the client must see (a marker row) and checks that nothing came before it:
// changes reach a connection in commit order.

#include <set>
#include <string>
#include <vector>

#include "rules/like.hpp"
#include "tests/integration/serve_fixture.hpp"

namespace pgpush::testing {
namespace {

using nlohmann::json;

class serve_rules_test : public serve_test {
protected:
    static void SetUpTestSuite() {
        serve_test::SetUpTestSuite();
        if (created_) return;
        created_ = true;
        cluster_->exec(R"(
            CREATE TABLE rules_marker (id int PRIMARY KEY);
            CREATE TABLE rules_numbers (id int PRIMARY KEY, b bigint, i int);
            CREATE TABLE rules_names (id int PRIMARY KEY, u text);
            CREATE TABLE rules_icu (id int PRIMARY KEY, s text COLLATE "en-US-x-icu");
            CREATE TABLE rules_open (id int PRIMARY KEY);
        )");
    }

    // The rules of every test here: one table per item, and the marker.
    static std::string rules() {
        return R"(
tables:
  rules_marker:
    rows: "true"
    columns: "*"
  rules_numbers:
    rows: "row.b <= auth.uid"
    columns: "*"
  rules_names:
    rows: "row.u like auth.name"
    columns: "*"
  rules_icu:
    rows: "true"
    columns: "*"
  rules_open:
    rows: "auth.rooms is not null"
    columns: "*"
)";
    }

    void fresh_start() {
        pg().exec(R"(
            TRUNCATE rules_marker, rules_numbers, rules_names, rules_icu, rules_open;
            SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE NOT active;
        )");
        start(rules());
    }

    // Subscribes `c` to the marker table (empty snapshot).
    static void watch_marker(ws_client& c) {
        EXPECT_TRUE(subscribe(c, "marker", "SELECT id FROM rules_marker").empty());
    }

    void insert_marker(int id) {
        pg().exec("INSERT INTO rules_marker VALUES (" + std::to_string(id) + ")");
    }

    // Every message `c` got up to the insert of marker row `id` (which is last).
    static std::vector<json> until_marker(ws_client& c, int id) {
        std::vector<json> seen;
        while (auto m = c.next()) {
            seen.push_back(*m);
            if ((*m)["type"] == "insert" && (*m)["id"] == "marker" && (*m)["row"]["id"] == id) {
                return seen;
            }
        }
        ADD_FAILURE() << "the marker " << id << " did not come; got " << json(seen).dump();
        return seen;
    }

    // The reply to a subscription that must fail: an error with `code`.
    static json expect_refused(ws_client& c, const std::string& id, const std::string& query,
                               const std::string& code) {
        c.send(json{{"type", "subscribe"}, {"id", id}, {"query", query}});
        auto m = c.next();
        EXPECT_TRUE(m) << "no reply to " << query;
        if (!m) return json::object();
        EXPECT_EQ((*m)["type"], "error") << query << ": " << m->dump();
        EXPECT_EQ((*m)["code"], code) << query << ": " << m->dump();
        EXPECT_EQ((*m)["id"], id) << m->dump();
        return *m;
    }

    static std::set<int> ids(const json& rows) {
        std::set<int> out;
        for (const auto& r : rows)
            out.insert(r["id"].get<int>());
        return out;
    }

    static inline bool created_ = false;
};

// A string claim that is not exactly a bigint ("4.5", "2.50", "NaN", "1e2") is NULL: the rule
// `row.b <= auth.uid` grants no row, in the snapshot or live. A bigint claim in text form
// (" 4 ") is one.
TEST_F(serve_rules_test, a_claim_that_is_not_exactly_a_bigint_grants_no_rows) {
    fresh_start();
    pg().exec("INSERT INTO rules_numbers VALUES (1, 1, 1), (2, 2, 2), (3, 3, 3)");
    auto control = connect({{"sub", "c"}, {"uid", " 4 "}});
    EXPECT_EQ(ids(subscribe(*control, "n", "SELECT id FROM rules_numbers")),
              (std::set<int>{1, 2, 3}));
    watch_marker(*control);

    std::vector<std::unique_ptr<ws_client>> refused;
    for (const char* uid : {"4.5", "2.50", "NaN", "1e2", "99999999999.0"}) {
        auto c = connect({{"sub", uid}, {"uid", uid}});
        EXPECT_TRUE(subscribe(*c, "n", "SELECT id FROM rules_numbers").empty()) << uid;
        watch_marker(*c);
        refused.push_back(std::move(c));
    }
    pg().exec("INSERT INTO rules_numbers VALUES (4, 1, 1)");
    insert_marker(1);
    auto seen = until_marker(*control, 1);
    ASSERT_EQ(seen.size(), 2u) << json(seen).dump();
    EXPECT_EQ(seen[0]["type"], "insert");
    EXPECT_EQ(seen[0]["row"]["id"], 4);
    for (auto& c : refused) {
        auto got = until_marker(*c, 1);
        EXPECT_EQ(got.size(), 1u) << "a claim Postgres would not read as a bigint saw rows: "
                                  << json(got).dump();
    }
}

// Literals and parameters Postgres would refuse for the column's type are bad_query, and the
// connection carries on.
TEST_F(serve_rules_test, a_literal_postgres_would_refuse_is_bad_query) {
    fresh_start();
    auto c = connect({{"sub", "c"}, {"uid", 10}});
    expect_refused(*c, "a", "SELECT id FROM rules_numbers WHERE i = '2.50'", "bad_query");
    expect_refused(*c, "b", "SELECT id FROM rules_numbers WHERE b < '1e2'", "bad_query");
    expect_refused(*c, "c", "SELECT id FROM rules_numbers WHERE b <= '9223372036854775808'",
                   "bad_query");
    expect_refused(*c, "d", "SELECT id FROM rules_numbers WHERE i = '99999999999'", "bad_query");
    c->send(json{{"type", "subscribe"},
                 {"id", "e"},
                 {"query", "SELECT id FROM rules_numbers WHERE b = $1"},
                 {"params", {"4.5"}}});
    auto m = c->next();
    ASSERT_TRUE(m);
    EXPECT_EQ((*m)["code"], "bad_query") << m->dump();
    expect_refused(*c, "f",
                   "SELECT id FROM rules_names WHERE u LIKE '%" +
                       std::string(rules::like_max_pattern_chars, 'a') + "'",
                   "bad_query");
    // Still served: a valid subscription on the same connection works.
    pg().exec("INSERT INTO rules_numbers VALUES (1, 7, 7)");
    EXPECT_EQ(ids(subscribe(*c, "ok", "SELECT id FROM rules_numbers WHERE b = ' 7 '")),
              std::set<int>{1});
}

// A numeric claim used as a LIKE pattern is its decimal text: the snapshot has the rows whose u
// is '42' and the live stream their inserts; no error, and nothing shows the client SQL.
TEST_F(serve_rules_test, a_numeric_claim_as_a_like_pattern_is_its_decimal_text) {
    fresh_start();
    pg().exec("INSERT INTO rules_names VALUES (1, '42'), (2, '420'), (3, 'x'), (4, '42')");
    auto c = connect({{"sub", "c"}, {"name", 42}});
    c->send(json{{"type", "subscribe"}, {"id", "n"}, {"query", "SELECT id, u FROM rules_names"}});
    json rows = json::array();
    while (auto m = c->next()) {
        ASSERT_NE((*m)["type"], "error") << m->dump();
        EXPECT_EQ(m->dump().find("operator"), std::string::npos) << m->dump();
        if ((*m)["type"] == "rows") {
            for (const auto& r : (*m)["rows"])
                rows.push_back(r);
        }
        if ((*m)["type"] == "ready") break;
    }
    EXPECT_EQ(ids(rows), (std::set<int>{1, 4}));
    watch_marker(*c);
    pg().exec("INSERT INTO rules_names VALUES (5, '42'), (6, '421')");
    insert_marker(1);
    auto seen = until_marker(*c, 1);
    ASSERT_EQ(seen.size(), 2u) << json(seen).dump();
    EXPECT_EQ(seen[0]["type"], "insert") << seen[0].dump();
    EXPECT_EQ(seen[0]["row"], json({{"id", 5}, {"u", "42"}})) << seen[0].dump();
}

// A text column with an ICU collation: `s < 'a'` selects in C order (byte order, as
// documented) in the snapshot as in the live stream, so the client's copy is the query's result.
// In en-US order 'A', 'B' and 'Z' sort after 'a'; in C order before it.
TEST_F(serve_rules_test, a_column_with_an_icu_collation_orders_the_same_in_snapshot_and_live) {
    fresh_start();
    pg().exec("INSERT INTO rules_icu VALUES (1, 'A'), (2, 'B'), (3, 'a'), (4, 'b'), (5, 'Z'), "
              "(6, '_'), (7, '\u00e4')");
    // The database's own order differs: the test means something.
    ASSERT_EQ(pg().query_value("SELECT string_agg(id::text, ',' ORDER BY id) FROM rules_icu "
                               "WHERE s < 'a'"),
              "6");
    auto c = connect({{"sub", "c"}});
    EXPECT_EQ(ids(subscribe(*c, "s", "SELECT id, s FROM rules_icu WHERE s < 'a'")),
              (std::set<int>{1, 2, 5, 6}));
    EXPECT_EQ(ids(subscribe(*c, "like", "SELECT id FROM rules_icu WHERE s LIKE '_'")),
              (std::set<int>{1, 2, 3, 4, 5, 6, 7}));
    EXPECT_EQ(ids(subscribe(*c, "between", "SELECT id FROM rules_icu WHERE s BETWEEN 'B' AND 'b'")),
              (std::set<int>{2, 3, 4, 5, 6}));
    watch_marker(*c);
    pg().exec("INSERT INTO rules_icu VALUES (8, 'C'), (9, 'c')");
    insert_marker(1);
    auto seen = until_marker(*c, 1);
    std::multiset<std::string> events;
    for (const auto& m : seen) {
        if (m["id"] != "marker")
            events.insert(m["id"].get<std::string>() + ":" +
                          std::to_string(m["row"]["id"].get<int>()));
    }
    // 'C' < 'a' in C order, 'c' is not; 'C' is between 'B' and 'b', 'c' is not; both are one
    // character.
    EXPECT_EQ(events, (std::multiset<std::string>{"s:8", "between:8", "like:8", "like:9"}))
        << json(seen).dump();
}

// An array claim is present: `auth.rooms is not null` holds for it (and for an object), not for
// a missing or null claim.
TEST_F(serve_rules_test, an_array_claim_is_not_null) {
    fresh_start();
    pg().exec("INSERT INTO rules_open VALUES (1), (2)");
    auto with_array = connect({{"sub", "a"}, {"rooms", {1}}});
    auto with_object = connect({{"sub", "o"}, {"rooms", {{"main", 1}}}});
    auto with_null = connect({{"sub", "n"}, {"rooms", nullptr}});
    auto without = connect({{"sub", "w"}});
    EXPECT_EQ(ids(subscribe(*with_array, "r", "SELECT id FROM rules_open")), (std::set<int>{1, 2}));
    EXPECT_EQ(ids(subscribe(*with_object, "r", "SELECT id FROM rules_open")),
              (std::set<int>{1, 2}));
    EXPECT_TRUE(subscribe(*with_null, "r", "SELECT id FROM rules_open").empty());
    EXPECT_TRUE(subscribe(*without, "r", "SELECT id FROM rules_open").empty());
    for (auto* c : {with_array.get(), with_object.get(), with_null.get(), without.get()})
        watch_marker(*c);
    pg().exec("INSERT INTO rules_open VALUES (3)");
    insert_marker(1);
    for (auto* c : {with_array.get(), with_object.get()}) {
        auto seen = until_marker(*c, 1);
        ASSERT_EQ(seen.size(), 2u) << json(seen).dump();
        EXPECT_EQ(seen[0]["row"], json({{"id", 3}})) << seen[0].dump();
    }
    for (auto* c : {with_null.get(), without.get()})
        EXPECT_EQ(until_marker(*c, 1).size(), 1u);
}

} // namespace
} // namespace pgpush::testing
