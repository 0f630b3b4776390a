#include "rules/matcher.hpp"

#include <algorithm>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "rules/parser.hpp"
#include "rules/plan.hpp"
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

const table_schema& rooms() {
    static const table_schema schema{
        "chat",
        "rooms",
        {{"id", column_family::integer, "integer"}, {"name", column_family::text, "text"}}};
    return schema;
}

constexpr std::size_t room_id = 1, sender_id = 2, body = 3;

// A row of `messages` from cells in Postgres text form; unnamed columns are NULL.
using cells = std::vector<std::pair<std::string_view, std::optional<std::string_view>>>;

std::vector<value> row_of(const cells& cs, const table_schema& t = messages()) {
    std::vector<value> row(t.columns.size());
    for (const auto& [name, text] : cs) {
        auto pos = t.find(name);
        if (!pos) throw std::invalid_argument("no column " + std::string(name));
        if (text) row[*pos] = from_pg_text(t.columns[*pos].family, *text);
    }
    return row;
}

std::string event_name(event_kind k) {
    switch (k) {
    case event_kind::insert:
        return "insert";
    case event_kind::update:
        return "update";
    case event_kind::delete_:
        return "delete";
    }
    return "?";
}

using hit_set = std::vector<std::pair<subscription_id, std::string>>;

hit_set sorted(const std::vector<hit>& hits) {
    hit_set out;
    for (const auto& h : hits)
        out.emplace_back(h.id, event_name(h.event));
    std::sort(out.begin(), out.end());
    return out;
}

// Owns the bound predicates the matcher borrows.
class matcher_test : public ::testing::Test {
protected:
    const predicate* bind(std::string_view text, dialect d = dialect::sql,
                          const table_schema& t = messages(), bool allow_old = false,
                          std::vector<json> params = {}, const json* claims = nullptr) {
        auto e = parse_expression(text, d);
        bind_context ctx;
        ctx.table = &t;
        ctx.claims = claims ? claims : &claims_;
        ctx.params = params;
        ctx.allow_old = allow_old;
        const expr* one[] = {e.get()};
        predicates_.push_back(predicate::bind(one, ctx));
        return predicates_.back().get();
    }

    void add(subscription_id id, std::string_view filter, std::string_view updates = {}) {
        const predicate* u =
            updates.empty() ? nullptr : bind(updates, dialect::rules, messages(), true);
        m_.add(id, messages(), bind(filter), u);
    }

    hit_set match(change_kind kind, const std::vector<value>& row, const std::vector<value>& old,
                  std::string_view table = "public.messages") {
        std::vector<hit> out;
        m_.match(table, kind, row, old, out);
        return sorted(out);
    }

    hit_set insert(const cells& row) { return match(change_kind::insert, row_of(row), {}); }
    hit_set remove_row(const cells& old) { return match(change_kind::delete_, {}, row_of(old)); }
    hit_set update(const cells& row, const std::optional<cells>& old) {
        return match(change_kind::update, row_of(row), old ? row_of(*old) : std::vector<value>{});
    }

    json claims_ = {{"rooms", {1, 2}}};
    std::deque<std::unique_ptr<predicate>> predicates_;
    matcher m_;
};

TEST_F(matcher_test, insert_hits_every_subscription_whose_filter_holds) {
    add(1, "room_id = 1");
    add(2, "room_id = 2");
    add(3, "body LIKE 'a%'");
    add(4, "true");
    add(5, "room_id IN (1, 3) AND body = 'zzz'");
    add(6, "room_id = 1 AND sender_id IS NULL");
    EXPECT_EQ(insert({{"room_id", "1"}, {"body", "abc"}}),
              (hit_set{{1, "insert"}, {3, "insert"}, {4, "insert"}, {6, "insert"}}));
    EXPECT_EQ(insert({{"room_id", "2"}, {"body", "xyz"}, {"sender_id", "9"}}),
              (hit_set{{2, "insert"}, {4, "insert"}}));
    EXPECT_EQ(insert({{"room_id", "3"}, {"body", "zzz"}}), (hit_set{{4, "insert"}, {5, "insert"}}));
    EXPECT_EQ(insert({}), (hit_set{{4, "insert"}})); // all NULL
    EXPECT_EQ(m_.size(), 6U);
}

TEST_F(matcher_test, appends_to_the_output_and_ignores_other_tables) {
    add(1, "room_id = 1");
    std::vector<hit> out = {{99, event_kind::update}};
    const auto row = row_of({{"room_id", "1"}});
    m_.match("public.messages", change_kind::insert, row, {}, out);
    EXPECT_EQ(sorted(out), (hit_set{{1, "insert"}, {99, "update"}}));
    out.clear();
    m_.match("public.other", change_kind::insert, row, {}, out);
    m_.match("messages", change_kind::insert, row, {}, out);
    EXPECT_TRUE(out.empty());
}

TEST_F(matcher_test, delete_hits_subscriptions_that_saw_the_old_row) {
    add(1, "room_id = 1");
    add(2, "room_id = 2");
    add(3, "body LIKE 'a%'");
    EXPECT_EQ(remove_row({{"room_id", "1"}, {"body", "abc"}}),
              (hit_set{{1, "delete"}, {3, "delete"}}));
    EXPECT_EQ(remove_row({{"room_id", "3"}}), hit_set{});
    // Without the old row nothing is known to have been visible: no delete.
    EXPECT_EQ(match(change_kind::delete_, {}, {}), hit_set{});
}

TEST_F(matcher_test, update_follows_the_row_filter_rule) {
    add(1, "room_id = 1");                             // indexed, exact
    add(2, "room_id = 1 AND body IS NOT NULL");        // indexed, not exact
    add(3, "room_id > 0 AND room_id < 2");             // scanned
    add(4, "room_id IN (1, 7) AND sender_id IS NULL"); // indexed by IN, not exact
    struct {
        const char* name;
        const char* new_room;
        std::optional<const char*> old_room; // nullopt: old row unknown
        const char* expected;                // the event for each subscription, or "-"
    } cases[] = {
        {"both match", "1", "1", "update"},
        {"only new matches", "1", "2", "insert"},
        {"only old matches", "2", "1", "delete"},
        {"neither", "2", "3", "-"},
        {"old unknown, new matches", "1", std::nullopt, "update"},
        {"old unknown, new does not", "2", std::nullopt, "-"},
        {"old NULL (unknown filter), new matches", "1", "", "insert"},
        {"new NULL (unknown filter), old matches", "", "1", "delete"},
    };
    for (const auto& c : cases) {
        cells new_row = {{"body", "x"}};
        if (*c.new_room) new_row.emplace_back("room_id", c.new_room);
        std::optional<cells> old_row;
        if (c.old_room) {
            old_row = cells{{"body", "x"}};
            if (**c.old_room) old_row->emplace_back("room_id", *c.old_room);
        }
        hit_set expected;
        if (std::string(c.expected) != "-") {
            for (subscription_id id = 1; id <= 4; ++id)
                expected.emplace_back(id, c.expected);
        }
        EXPECT_EQ(update(new_row, old_row), expected) << c.name;
    }
}

TEST_F(matcher_test, updates_filter_suppresses_updates_but_not_inserts_or_deletes) {
    add(1, "room_id = 1", "old.body != row.body");
    add(2, "room_id > 0", "old.body != row.body"); // scanned
    add(3, "room_id = 1");                         // no updates filter
    EXPECT_EQ(update({{"room_id", "1"}, {"body", "new"}}, cells{{"room_id", "1"}, {"body", "old"}}),
              (hit_set{{1, "update"}, {2, "update"}, {3, "update"}}));
    EXPECT_EQ(
        update({{"room_id", "1"}, {"body", "same"}}, cells{{"room_id", "1"}, {"body", "same"}}),
        (hit_set{{3, "update"}}));
    // Unknown (NULL body) is not true: suppressed too.
    EXPECT_EQ(update({{"room_id", "1"}}, cells{{"room_id", "1"}, {"body", "old"}}),
              (hit_set{{3, "update"}}));
    // Entering or leaving the result is always sent (2 sees both rows, body unchanged: nothing).
    EXPECT_EQ(
        update({{"room_id", "1"}, {"body", "same"}}, cells{{"room_id", "5"}, {"body", "same"}}),
        (hit_set{{1, "insert"}, {3, "insert"}}));
    EXPECT_EQ(
        update({{"room_id", "5"}, {"body", "same"}}, cells{{"room_id", "1"}, {"body", "same"}}),
        (hit_set{{1, "delete"}, {3, "delete"}}));
    EXPECT_EQ(update({{"room_id", "1"}, {"body", "same"}}, cells{{"room_id", "0"}, {"body", "x"}}),
              (hit_set{{1, "insert"}, {2, "insert"}, {3, "insert"}}));
}

TEST_F(matcher_test, indexes_values_of_every_column_family_by_equality) {
    add(1, "price = 7.5");
    add(2, "score = 0.1");
    add(3, "sent_at = '2024-01-02T01:04:05Z'");
    add(4, "body = 'x'");
    add(5, "flag = 'yes'");
    add(6, "mood = 'happy'");
    add(7, "price IN (1, 2.50)");
    add(8, "room_id = '7'");
    add(9, "score = 1");
    add(10, "price = 'NaN'");
    EXPECT_EQ(m_.statistics().indexed, 10U);
    EXPECT_EQ(insert({{"price", "7.50"}}), (hit_set{{1, "insert"}}));
    EXPECT_EQ(insert({{"score", "0.1"}}), (hit_set{{2, "insert"}}));
    EXPECT_EQ(insert({{"sent_at", "2024-01-02 03:04:05+02"}}), (hit_set{{3, "insert"}}));
    EXPECT_EQ(insert({{"body", "x"}}), (hit_set{{4, "insert"}}));
    EXPECT_EQ(insert({{"body", "X"}}), hit_set{});
    EXPECT_EQ(insert({{"flag", "t"}}), (hit_set{{5, "insert"}}));
    EXPECT_EQ(insert({{"flag", "f"}}), hit_set{});
    EXPECT_EQ(insert({{"mood", "happy"}}), (hit_set{{6, "insert"}}));
    EXPECT_EQ(insert({{"price", "2.5"}}), (hit_set{{7, "insert"}}));
    EXPECT_EQ(insert({{"price", "1.000"}}), (hit_set{{7, "insert"}}));
    EXPECT_EQ(insert({{"room_id", "7"}}), (hit_set{{8, "insert"}}));
    EXPECT_EQ(insert({{"score", "1"}}), (hit_set{{9, "insert"}}));
    EXPECT_EQ(insert({{"score", "1.0000000000000002"}}), hit_set{});
    EXPECT_EQ(insert({{"price", "NaN"}}), (hit_set{{10, "insert"}}));
}

TEST_F(matcher_test, real_and_date_columns_agree_with_evaluation) {
    static const table_schema readings{"public",
                                       "readings",
                                       {{"id", column_family::integer, "integer"},
                                        {"r", column_family::real, "real"},
                                        {"d", column_family::date, "date"}}};
    struct {
        const char* filter;
        cells row;
        bool hit;
    } cases[] = {
        {"r = '0.1'", {{"r", "0.1"}}, true},        // untyped literal: a real
        {"r = 0.1", {{"r", "0.1"}}, false},         // numeric 0.1 vs real 0.1 in double
        {"r IN (0.1, 0.2)", {{"r", "0.1"}}, true},  // list items take the column's type
        {"r IN (0.1, 0.2)", {{"r", "0.3"}}, false}, //
        {"r = 0.5", {{"r", "0.5"}}, true},          // exact in binary
        {"d = '2024-06-01 23:00-05'", {{"d", "2024-06-01"}}, true},
        {"d = '2024-06-02'", {{"d", "2024-06-01"}}, false},
        {"d IN ('2024-06-01', '2024-06-03')", {{"d", "2024-06-01"}}, true},
    };
    subscription_id id = 0;
    for (const auto& c : cases) {
        ++id;
        const predicate* p = bind(c.filter, dialect::sql, readings);
        m_.add(id, readings, p);
        const auto row = row_of(c.row, readings);
        EXPECT_EQ(p->evaluate(row_values{row, {}, nullptr}) == tri::true_, c.hit) << c.filter;
        std::vector<hit> out;
        m_.match("public.readings", change_kind::insert, row, {}, out);
        const bool found =
            std::any_of(out.begin(), out.end(), [&](const hit& h) { return h.id == id; });
        EXPECT_EQ(found, c.hit) << c.filter;
    }
}

TEST_F(matcher_test, subscriptions_on_several_tables_stay_apart) {
    add(1, "room_id = 1");
    m_.add(2, rooms(), bind("id = 1", dialect::sql, rooms()));
    m_.add(3, rooms(), bind("name LIKE 'g%'", dialect::sql, rooms()));
    const auto room_row = row_of({{"id", "1"}, {"name", "general"}}, rooms());
    EXPECT_EQ(match(change_kind::insert, room_row, {}, "chat.rooms"),
              (hit_set{{2, "insert"}, {3, "insert"}}));
    EXPECT_EQ(insert({{"room_id", "1"}}), (hit_set{{1, "insert"}}));
    std::vector<subscription_id> ids;
    m_.all("chat.rooms", ids);
    std::sort(ids.begin(), ids.end());
    EXPECT_EQ(ids, (std::vector<subscription_id>{2, 3}));
}

TEST_F(matcher_test, all_lists_every_subscription_of_a_table_for_truncate) {
    add(1, "room_id = 1");
    add(2, "body LIKE 'a%'");
    add(3, "1 = 2"); // never matches a row, but TRUNCATE still empties its (empty) result
    m_.add(4, rooms(), bind("id = 1", dialect::sql, rooms()));
    std::vector<subscription_id> ids = {42};
    m_.all("public.messages", ids);
    std::sort(ids.begin(), ids.end());
    EXPECT_EQ(ids, (std::vector<subscription_id>{1, 2, 3, 42}));
    ids.clear();
    m_.all("public.nothing", ids);
    EXPECT_TRUE(ids.empty());
    m_.remove(2);
    m_.all("public.messages", ids);
    std::sort(ids.begin(), ids.end());
    EXPECT_EQ(ids, (std::vector<subscription_id>{1, 3}));
}

TEST_F(matcher_test, remove_unregisters_and_ids_can_be_reused) {
    add(1, "room_id = 1");
    add(2, "room_id = 1");
    add(3, "body = 'x'");
    add(4, "room_id > 0");
    m_.remove(1);
    m_.remove(3);
    m_.remove(4);
    m_.remove(77); // unknown: nothing happens
    EXPECT_EQ(m_.size(), 1U);
    EXPECT_EQ(insert({{"room_id", "1"}, {"body", "x"}}), (hit_set{{2, "insert"}}));
    add(1, "room_id = 2"); // the id is free again; its old filter is gone
    EXPECT_EQ(insert({{"room_id", "1"}}), (hit_set{{2, "insert"}}));
    EXPECT_EQ(insert({{"room_id", "2"}}), (hit_set{{1, "insert"}}));
    EXPECT_THROW(add(2, "true"), std::invalid_argument);
    m_.remove(1);
    m_.remove(2);
    EXPECT_EQ(m_.size(), 0U);
    EXPECT_EQ(insert({{"room_id", "1"}}), hit_set{});
    EXPECT_EQ(m_.statistics().indexed + m_.statistics().scanned + m_.statistics().never, 0U);
}

TEST_F(matcher_test, columns_needed_counts_every_filter_and_updates_predicate) {
    auto needed = [&](std::string_view table) {
        auto span = m_.columns_needed(table);
        std::vector<std::size_t> v(span.begin(), span.end());
        std::sort(v.begin(), v.end());
        return v;
    };
    EXPECT_TRUE(needed("public.messages").empty());
    add(1, "room_id = 1");
    add(2, "body LIKE 'a%' AND room_id > 0");
    add(3, "room_id = 2", "old.sender_id != row.sender_id");
    EXPECT_EQ(needed("public.messages"), (std::vector<std::size_t>{room_id, sender_id, body}));
    m_.remove(2);
    EXPECT_EQ(needed("public.messages"), (std::vector<std::size_t>{room_id, sender_id}));
    m_.remove(3);
    EXPECT_EQ(needed("public.messages"), std::vector<std::size_t>{room_id});
    m_.remove(1);
    EXPECT_TRUE(needed("public.messages").empty());
    EXPECT_TRUE(needed("public.unknown").empty());
}

TEST_F(matcher_test, statistics_count_indexed_scanned_and_never) {
    add(1, "room_id = 1");
    add(2, "room_id IN (1, 2)");
    add(3, "room_id = 1 AND body LIKE 'a%'");
    add(4, "body LIKE 'a%'");
    add(5, "room_id > 1 OR room_id < 0");
    add(6, "1 = 2");
    m_.add(7, messages(), bind("row.room_id in auth.missing", dialect::rules)); // unknown
    m_.add(8, messages(), bind("room_id = $1", dialect::sql, messages(), false, {json(7.0)}));
    const auto s = m_.statistics();
    EXPECT_EQ(s.indexed, 3U);
    EXPECT_EQ(s.scanned, 3U);
    EXPECT_EQ(s.never, 2U);
    // Never-matching subscriptions never hit; the float-keyed one is found by scanning.
    EXPECT_EQ(insert({{"room_id", "7"}}), (hit_set{{5, "insert"}, {8, "insert"}}));
    m_.remove(6);
    m_.remove(1);
    m_.remove(4);
    const auto after = m_.statistics();
    EXPECT_EQ(after.indexed, 2U);
    EXPECT_EQ(after.scanned, 2U);
    EXPECT_EQ(after.never, 1U);
}

// A subscription whose rules read a lookup is filed under the lookup's result, as under an IN
// list: planned through plan_subscription, as the engine plans it.
TEST_F(matcher_test, a_lookup_result_is_indexed_like_an_in_list) {
    const auto loaded = load_rules("lookups:\n"
                                   "  my_rooms: \"SELECT room_id FROM room_members WHERE user_id = "
                                   "auth.sub\"\n"
                                   "tables:\n"
                                   "  messages:\n"
                                   "    rows: \"row.room_id in lookup.my_rooms\"\n"
                                   "    columns: \"*\"\n");
    ASSERT_NE(loaded.rules, nullptr);
    const json claims = {{"sub", 5}};
    const auto schema_of = [](std::string_view t) -> const table_schema* {
        return t == "public.messages" ? &messages() : nullptr;
    };
    std::deque<subscription_plan> plans;
    auto subscribe = [&](subscription_id id, std::string_view sql, const json* result) {
        auto r = plan_subscription(loaded.rules, {sql, &claims, {}}, schema_of,
                                   [result](const lookup_rule&) { return result; });
        ASSERT_TRUE(std::holds_alternative<subscription_plan>(r))
            << std::get<plan_error>(r).message;
        plans.push_back(std::move(std::get<subscription_plan>(r)));
        m_.add(id, messages(), plans.back().filter.get());
    };
    const json two_rooms = {1, 2}, other_rooms = {2, 3}, no_rooms = json::array();
    subscribe(1, "SELECT * FROM messages", &two_rooms);
    subscribe(2, "SELECT * FROM messages WHERE body LIKE 'a%'", &other_rooms);
    subscribe(3, "SELECT * FROM messages", &no_rooms); // never hits
    subscribe(4, "SELECT * FROM messages", nullptr);   // not known: never hits

    // The whole filter is the lookup's IN: the index decides alone.
    const auto hint = plans[0].filter->index();
    ASSERT_TRUE(hint.has_value());
    EXPECT_TRUE(hint->exact);
    EXPECT_EQ(hint->column, room_id);
    EXPECT_FALSE(plans[1].filter->index()->exact);

    const auto s = m_.statistics();
    EXPECT_EQ(s.indexed, 2U);
    EXPECT_EQ(s.scanned, 0U);
    EXPECT_EQ(s.never, 2U);

    EXPECT_EQ(insert({{"room_id", "1"}, {"body", "abc"}}), (hit_set{{1, "insert"}}));
    EXPECT_EQ(insert({{"room_id", "2"}, {"body", "abc"}}), (hit_set{{1, "insert"}, {2, "insert"}}));
    EXPECT_EQ(insert({{"room_id", "2"}, {"body", "xyz"}}), (hit_set{{1, "insert"}}));
    EXPECT_EQ(insert({{"room_id", "3"}, {"body", "abc"}}), (hit_set{{2, "insert"}}));
    EXPECT_EQ(insert({{"room_id", "4"}, {"body", "abc"}}), hit_set{});
    // A row moving between rooms moves in and out of the results.
    EXPECT_EQ(update({{"room_id", "3"}, {"body", "abc"}}, cells{{"room_id", "1"}, {"body", "abc"}}),
              (hit_set{{1, "delete"}, {2, "insert"}}));
}

// ---- randomized: the matcher agrees with evaluating every filter ----

class generator {
public:
    explicit generator(unsigned seed) : rng_(seed) {}

    int pick(int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng_); }
    bool chance(int percent) { return pick(100) < percent; }
    template <typename T, std::size_t N>
    const T& one_of(const T (&items)[N]) {
        return items[static_cast<std::size_t>(pick(static_cast<int>(N)))];
    }

    std::string room() { return std::to_string(pick(8)); }

    std::string room_list() {
        std::string out = "(" + room();
        const int n = pick(4);
        for (int i = 0; i < n; ++i)
            out += ", " + (chance(15) ? std::string("NULL") : room());
        return out + ")";
    }

    // A rules-dialect filter that reads claims, with claims of assorted shapes: arrays of
    // numbers, numeric strings, floats and NULLs; non-arrays; missing claims.
    std::pair<std::string, json> claims_filter() {
        json claims = json::object();
        if (chance(50)) {
            if (chance(85)) {
                json rooms = json::array();
                const int n = pick(4);
                for (int i = 0; i < n; ++i) {
                    switch (pick(6)) {
                    case 0:
                        rooms.push_back(std::to_string(pick(8)));
                        break;
                    case 1:
                        rooms.push_back(static_cast<double>(pick(8)));
                        break;
                    case 2:
                        rooms.push_back(nullptr);
                        break;
                    default:
                        rooms.push_back(pick(8));
                    }
                }
                claims["rooms"] = rooms;
            } else if (chance(50)) {
                claims["rooms"] = pick(8);
            }
            std::string f = "row.room_id in auth.rooms";
            if (chance(30)) f += " and row.body like 'a%'";
            if (chance(15)) f = "row.room_id not in auth.rooms";
            return {f, claims};
        }
        switch (pick(4)) {
        case 0:
            claims["sub"] = pick(3);
            break;
        case 1:
            claims["sub"] = std::to_string(pick(3));
            break;
        case 2:
            claims["sub"] = static_cast<double>(pick(3));
            break;
        default:
            break; // missing
        }
        return {"row.sender_id == auth.sub", claims};
    }

    // A filter over messages: a mix of shapes the matcher indexes and shapes it scans.
    std::string filter() {
        static const char* patterns[] = {"'a%'", "'%b'", "'_'", "'a_%'", "'%'", "''"};
        static const char* prices[] = {"1", "1.5", "2.50", "'NaN'", "0"};
        static const char* scores[] = {"1", "0.1", "'NaN'", "0", "-1.5"};
        static const char* bodies[] = {"'a'", "'ab'", "'b'", "''"};
        static const char* flags[] = {"flag", "flag = 'no'", "NOT flag", "flag = true"};
        static const char* times[] = {"sent_at = '2024-01-02T01:00:00Z'",
                                      "sent_at IN ('2024-01-02 03:00:00+02', 'infinity')",
                                      "sent_at = '2024-01-01'", "sent_at > '2024-01-01'"};
        static const char* moods[] = {"mood = 'happy'", "mood <> 'sad'", "mood IN ('sad', 'x')"};
        static const char* specials[] = {"score IN (1, 'NaN', 'Infinity')",
                                         "score = '-Infinity'",
                                         "score = 1e20",
                                         "price = 'Infinity'",
                                         "price IN ('-Infinity', 1.5)",
                                         "score = price"};
        switch (pick(22)) {
        case 18:
            return one_of(flags);
        case 19:
            return one_of(times);
        case 20:
            return one_of(moods);
        case 21:
            return one_of(specials);
        case 0:
        case 1:
            return "room_id = " + room();
        case 2:
            return "room_id IN " + room_list();
        case 3:
            return "room_id = " + room() + " AND body LIKE " + one_of(patterns);
        case 4:
            return "room_id IN " + room_list() + " AND sender_id = " + std::to_string(pick(3));
        case 5:
            return "room_id > " + room();
        case 6:
            return "body LIKE " + std::string(one_of(patterns));
        case 7:
            return "room_id = " + room() + " OR sender_id = " + std::to_string(pick(3));
        case 8:
            return "price = " + std::string(one_of(prices));
        case 9:
            return "score = " + std::string(one_of(scores));
        case 10:
            return "body = " + std::string(one_of(bodies));
        case 11:
            return "NOT room_id = " + room();
        case 12:
            return "room_id NOT IN " + room_list();
        case 13:
            return chance(50) ? "1 = 2" : "true";
        case 14:
            return "sender_id = " + std::to_string(pick(3)) + " AND room_id = " + room();
        case 15:
            return "room_id IS NULL";
        case 16:
            return "price IN (" + std::string(one_of(prices)) + ", " + one_of(prices) + ")";
        default:
            return "room_id BETWEEN " + room() + " AND " + room();
        }
    }

    // Cells of a random row; NULL sometimes.
    cells row() {
        static const char* bodies[] = {"a", "ab", "b", "ba", "abc", ""};
        static const char* prices[] = {"1",   "1.0",  "1.50",     "2.5",
                                       "NaN", "0.00", "Infinity", "-Infinity"};
        static const char* scores[] = {"0.1", "1",        "NaN",       "-0",   "-1.5",
                                       "0",   "Infinity", "-Infinity", "1e+20"};
        static const char* rooms[] = {"0", "1", "2", "3", "4", "5", "6", "7"};
        static const char* senders[] = {"0", "1", "2"};
        static const char* flags[] = {"t", "f"};
        static const char* times[] = {"2024-01-02 03:00:00+02", "2024-01-02 01:00:00+00",
                                      "2024-01-02 01:00:00.000001+00", "infinity", "2024-01-01"};
        static const char* moods[] = {"happy", "sad"};
        cells c;
        auto maybe = [&](std::string_view col, std::string_view text) {
            if (!chance(10)) c.emplace_back(col, text);
        };
        maybe("room_id", one_of(rooms));
        maybe("sender_id", one_of(senders));
        maybe("body", one_of(bodies));
        maybe("price", one_of(prices));
        maybe("score", one_of(scores));
        maybe("flag", one_of(flags));
        maybe("sent_at", one_of(times));
        maybe("mood", one_of(moods));
        return c;
    }

    // The old row of an update: usually the new row with one column changed.
    cells changed(cells c) {
        if (chance(25)) return row();
        static const char* rooms[] = {"0", "1", "2", "3", "4", "5", "6", "7"};
        static const char* bodies[] = {"a", "ab", "b", "zz"};
        const bool room = chance(70);
        for (auto& [name, text] : c) {
            if (room && name == "room_id") text = one_of(rooms);
            if (!room && name == "body") text = one_of(bodies);
        }
        return c;
    }

private:
    std::mt19937 rng_;
};

struct live_subscription {
    const predicate* filter;
    const predicate* updates;
};

hit_set brute_force(const std::map<subscription_id, live_subscription>& subs, change_kind kind,
                    const std::vector<value>& row, const std::vector<value>& old) {
    auto holds = [](const predicate* p, const row_values& r) {
        return p->evaluate(r) == tri::true_;
    };
    std::vector<hit> out;
    const row_values new_row{row, {}, nullptr};
    const row_values old_row{old, {}, nullptr};
    for (const auto& [id, s] : subs) {
        std::optional<event_kind> e;
        switch (kind) {
        case change_kind::insert:
            if (holds(s.filter, new_row)) e = event_kind::insert;
            break;
        case change_kind::delete_:
            if (!old.empty() && holds(s.filter, old_row)) e = event_kind::delete_;
            break;
        case change_kind::update: {
            const bool n = holds(s.filter, new_row);
            if (old.empty()) {
                if (n) e = event_kind::update;
                break;
            }
            const bool o = holds(s.filter, old_row);
            if (n && o) {
                if (!s.updates || holds(s.updates, row_values{row, old, nullptr})) {
                    e = event_kind::update;
                }
            } else if (n) {
                e = event_kind::insert;
            } else if (o) {
                e = event_kind::delete_;
            }
            break;
        }
        }
        if (e) out.push_back({id, *e});
        // The one-subscription form (used by replays) decides the same.
        EXPECT_EQ(decide(kind, *s.filter, s.updates, row, old), e);
    }
    return sorted(out);
}

TEST_F(matcher_test, randomized_changes_hit_exactly_what_brute_force_evaluation_hits) {
    generator gen(20261123);
    std::map<subscription_id, live_subscription> live;
    std::map<subscription_id, std::string> text; // for failure messages
    subscription_id next_id = 1;
    auto subscribe = [&] {
        const subscription_id id = next_id++;
        std::string f;
        const predicate* filter = nullptr;
        if (gen.chance(20)) {
            auto [rule, claims] = gen.claims_filter();
            f = rule + " with " + claims.dump();
            filter = bind(rule, dialect::rules, messages(), false, {}, &claims);
        } else {
            f = gen.filter();
            filter = bind(f);
        }
        const predicate* updates = nullptr;
        if (gen.chance(15)) {
            updates = bind(gen.chance(50) ? "old.body != row.body" : "old.room_id != row.room_id",
                           dialect::rules, messages(), true);
        }
        m_.add(id, messages(), filter, updates);
        live[id] = {filter, updates};
        text[id] = f + (updates ? " [updates: " + updates->to_string() + "]" : "");
    };
    for (int i = 0; i < 300; ++i)
        subscribe();

    std::size_t hits = 0, changes = 0, mismatches = 0;
    std::map<std::string, std::size_t> events;
    for (int round = 0; round < 3000; ++round) {
        if (round % 500 == 250) {
            // Churn: drop a tenth of the subscriptions, add as many new ones.
            std::vector<subscription_id> ids;
            for (const auto& [id, s] : live)
                ids.push_back(id);
            for (int k = 0; k < 30; ++k) {
                const auto id =
                    ids[static_cast<std::size_t>(gen.pick(static_cast<int>(ids.size())))];
                if (live.erase(id)) m_.remove(id);
            }
            for (int k = 0; k < 30; ++k)
                subscribe();
        }
        const int what = gen.pick(3);
        const change_kind kind = what == 0   ? change_kind::insert
                                 : what == 1 ? change_kind::update
                                             : change_kind::delete_;
        const cells new_cells = gen.row();
        std::vector<value> row, old;
        std::optional<cells> old_cells;
        if (kind != change_kind::delete_) row = row_of(new_cells);
        if (kind == change_kind::delete_ && gen.chance(90)) old_cells = gen.row();
        if (kind == change_kind::update && gen.chance(70)) old_cells = gen.changed(new_cells);
        if (old_cells) old = row_of(*old_cells);

        const hit_set expected = brute_force(live, kind, row, old);
        const hit_set got = match(kind, row, old);
        ++changes;
        hits += expected.size();
        for (const auto& [id, ev] : expected)
            ++events[ev];
        if (got != expected) {
            std::string detail;
            for (const auto& h : got) {
                if (!std::binary_search(expected.begin(), expected.end(), h)) {
                    detail += "\n  extra " + std::to_string(h.first) + ":" + h.second + "  " +
                              (text.count(h.first) ? text[h.first] : "(removed)");
                }
            }
            for (const auto& h : expected) {
                if (!std::binary_search(got.begin(), got.end(), h)) {
                    detail += "\n  missing " + std::to_string(h.first) + ":" + h.second + "  " +
                              text[h.first];
                }
            }
            ADD_FAILURE() << "round " << round << " kind " << static_cast<int>(kind)
                          << (old_cells ? "" : " (no old row)") << ":" << detail;
            if (++mismatches == 5) break; // enough to see the pattern
        }
    }
    // The run must have exercised every path, or it proves little.
    const auto s = m_.statistics();
    EXPECT_GT(s.indexed, 100U);
    EXPECT_GT(s.scanned, 50U);
    EXPECT_GT(s.never, 0U);
    EXPECT_GT(hits, changes);
    EXPECT_GT(events["insert"], 0U);
    EXPECT_GT(events["update"], 0U);
    EXPECT_GT(events["delete"], 0U);
    EXPECT_EQ(m_.size(), live.size());
}

} // namespace
} // namespace pgpush::rules
