#include "rules/plan.hpp"

#include <map>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "rules/like.hpp"
#include "rules/rule_set.hpp"

namespace pgpush::rules {
namespace {

using nlohmann::json;

const char* const rules_yaml = R"(
tables:
  messages:
    allow: "auth.role != 'banned'"
    rows: "row.room_id in auth.rooms"
    columns: [body, id, room_id, sent_at, sender_id]
    updates: "row.body != old.body"
  posts:
    rows: "true"
    columns: "*"
  secrets:
    allow: "false"
    rows: "true"
    columns: "*"
  ghosts:
    rows: "true"
    columns: "*"
  broken:
    rows: "row.nope == 1"
    columns: "*"
  hidden_only:
    rows: "true"
    columns: [nope]
channels:
  typing:
  room_events:
    allow: "auth.role == 'member'"
    filter: "payload.room in auth.rooms"
  closed:
    allow: "false"
)";

std::shared_ptr<const rule_set> load(const char* yaml) {
    auto r = load_rules(yaml);
    if (!r.rules) {
        std::string all;
        for (const auto& d : r.errors)
            all += format(d, "rules.yaml") + "\n";
        throw std::runtime_error("rules do not load:\n" + all);
    }
    return r.rules;
}

const std::map<std::string, table_schema, std::less<>>& database() {
    static const std::map<std::string, table_schema, std::less<>> db = [] {
        std::map<std::string, table_schema, std::less<>> m;
        m["public.messages"] = {"public",
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
        m["public.posts"] = {"public",
                             "posts",
                             {{"id", column_family::integer, "integer"},
                              {"title", column_family::text, "text"},
                              {"score", column_family::floating, "double precision"}}};
        for (const char* t : {"secrets", "broken", "hidden_only", "invisible"}) {
            m[std::string("public.") + t] = {
                "public", t, {{"id", column_family::integer, "integer"}}};
        }
        return m;
    }();
    return db;
}

const table_schema* lookup(std::string_view qualified) {
    auto it = database().find(qualified);
    return it == database().end() ? nullptr : &it->second;
}

const json member = {{"role", "member"}, {"rooms", {1, 2}}, {"sub", 5}};

std::variant<subscription_plan, plan_error> plan(std::string_view sql, const json* claims = &member,
                                                 const std::vector<json>& params = {}) {
    static const auto rules = load(rules_yaml);
    subscribe_request req;
    req.sql = sql;
    req.claims = claims;
    req.params = params;
    return plan_subscription(rules, req, lookup);
}

std::string describe(const std::variant<subscription_plan, plan_error>& r) {
    if (const auto* e = std::get_if<plan_error>(&r)) {
        return std::string(to_string(e->code)) + ": " + e->message;
    }
    return "a plan for " + std::get<subscription_plan>(r).table;
}

void expect_error(std::string_view sql, plan_error_code code, const std::string& message,
                  const json* claims = &member, const std::vector<json>& params = {}) {
    const auto r = plan(sql, claims, params);
    const auto* e = std::get_if<plan_error>(&r);
    ASSERT_NE(e, nullptr) << sql << ": " << describe(r);
    EXPECT_EQ(to_string(e->code), to_string(code)) << sql << ": " << e->message;
    EXPECT_NE(e->message.find(message), std::string::npos)
        << sql << ": '" << e->message << "' should say '" << message << "'";
}

const subscription_plan& expect_plan(const std::variant<subscription_plan, plan_error>& r,
                                     std::string_view sql) {
    if (!std::holds_alternative<subscription_plan>(r)) {
        ADD_FAILURE() << sql << ": " << describe(r);
        static const subscription_plan none;
        return none;
    }
    return std::get<subscription_plan>(r);
}

// A messages row from (room_id, sender_id, body); other columns NULL.
std::vector<value> message(std::optional<std::int64_t> room, std::int64_t sender,
                           std::string_view body) {
    std::vector<value> row(database().at("public.messages").columns.size());
    if (room) row[1] = value::integer(*room);
    row[2] = value::integer(sender);
    row[3] = value::text(body);
    return row;
}

std::string show(tri t) {
    return t == tri::true_ ? "true" : (t == tri::false_ ? "false" : "unknown");
}

TEST(plan_subscription, a_table_outside_the_rules_looks_like_one_that_does_not_exist) {
    struct {
        const char* sql;
        const char* message;
    } cases[] = {
        {"SELECT * FROM nope", "table public.nope does not exist"},           // nowhere
        {"SELECT * FROM invisible", "table public.invisible does not exist"}, // not in the rules
        {"SELECT * FROM ghosts", "table public.ghosts does not exist"},       // not in the database
        {"SELECT * FROM other.messages", "table other.messages does not exist"},
        {"SELECT * FROM \"Messages\"", "table public.Messages does not exist"},
    };
    for (const auto& c : cases) {
        const auto r = plan(c.sql);
        const auto* e = std::get_if<plan_error>(&r);
        ASSERT_NE(e, nullptr) << c.sql << ": " << describe(r);
        EXPECT_EQ(e->code, plan_error_code::unknown_table) << c.sql;
        EXPECT_EQ(e->message, c.message) << c.sql; // exactly: nothing tells them apart
    }
}

TEST(plan_subscription, allow_must_be_true_for_these_claims) {
    const json banned = {{"role", "banned"}, {"rooms", json::array({1})}};
    const json no_role = {{"rooms", json::array({1})}};
    expect_error("SELECT * FROM secrets", plan_error_code::forbidden,
                 "not allowed to subscribe to public.secrets");
    expect_error("SELECT * FROM messages", plan_error_code::forbidden,
                 "not allowed to subscribe to public.messages", &banned);
    // A missing claim makes allow unknown, which denies.
    expect_error("SELECT * FROM messages", plan_error_code::forbidden,
                 "not allowed to subscribe to public.messages", &no_role);
    expect_error("SELECT * FROM messages", plan_error_code::forbidden,
                 "not allowed to subscribe to public.messages", nullptr);
    // No allow: any client, even without claims.
    EXPECT_TRUE(std::holds_alternative<subscription_plan>(plan("SELECT * FROM posts", nullptr)));
}

TEST(plan_subscription, columns_outside_the_allowlist_are_forbidden_in_select_and_where) {
    expect_error("SELECT id, score FROM messages", plan_error_code::forbidden,
                 "column score of public.messages is not available (at character 12)");
    expect_error("SELECT id FROM messages WHERE score > 1", plan_error_code::forbidden,
                 "column score of public.messages is not available (at character 31)");
    expect_error("SELECT * FROM messages WHERE room_id = 1 AND mood = 'x'",
                 plan_error_code::forbidden, "column mood of public.messages is not available");
    expect_error("SELECT id FROM messages WHERE messages.flag", plan_error_code::forbidden,
                 "column flag of public.messages is not available");
    // A column that does not exist is indistinguishable from a hidden one.
    expect_error("SELECT nope FROM messages", plan_error_code::forbidden,
                 "column nope of public.messages is not available (at character 8)");
    expect_error("SELECT id FROM messages WHERE nope = 1", plan_error_code::forbidden,
                 "column nope of public.messages is not available");
    expect_error("SELECT * FROM hidden_only", plan_error_code::forbidden,
                 "no column of public.hidden_only is available");
}

TEST(plan_subscription, star_selects_the_allowed_columns_in_schema_order) {
    const auto r = plan("SELECT * FROM messages");
    const auto& p = expect_plan(r, "SELECT * FROM messages");
    EXPECT_EQ(p.columns, (std::vector<std::size_t>{0, 1, 2, 3, 6}));
    EXPECT_EQ(p.column_names,
              (std::vector<std::string>{"id", "room_id", "sender_id", "body", "sent_at"}));
    EXPECT_EQ(p.table, "public.messages");

    const auto all = plan("SELECT * FROM posts");
    const auto& q = expect_plan(all, "SELECT * FROM posts");
    EXPECT_EQ(q.columns, (std::vector<std::size_t>{0, 1, 2}));
    EXPECT_EQ(q.column_names, (std::vector<std::string>{"id", "title", "score"}));
}

TEST(plan_subscription, named_columns_keep_the_query_order) {
    const auto r = plan("SELECT body, ID, messages.room_id FROM public.messages");
    const auto& p = expect_plan(r, "explicit columns");
    EXPECT_EQ(p.columns, (std::vector<std::size_t>{3, 0, 1}));
    EXPECT_EQ(p.column_names, (std::vector<std::string>{"body", "id", "room_id"}));
    expect_error("SELECT id, title, id FROM posts", plan_error_code::bad_query,
                 "column id is selected twice (at character 19)");
}

TEST(plan_subscription, unknown_columns_of_a_fully_visible_table_say_so) {
    expect_error("SELECT nope FROM posts", plan_error_code::unknown_column,
                 "column nope does not exist in public.posts (at character 8)");
    expect_error("SELECT * FROM posts WHERE nope = 1", plan_error_code::unknown_column,
                 "column \"nope\" does not exist in public.posts (at character 27)");
    expect_error("SELECT * FROM posts WHERE other.id = 1", plan_error_code::unknown_column,
                 "'other' is not the table being queried (posts)");
}

TEST(plan_subscription, query_errors_are_bad_query_with_a_position) {
    expect_error("SELECT * FROM posts ORDER BY id", plan_error_code::bad_query,
                 "ORDER BY is not supported: the result is a set; sort on the client (at character "
                 "21)");
    expect_error("DELETE FROM posts", plan_error_code::bad_query,
                 "only SELECT queries can be subscribed to (at character 1)");
    expect_error("SELECT * FROM posts WHERE title = 'a", plan_error_code::bad_query,
                 "unterminated string (at character 35)");
    expect_error("SELECT * FROM posts WHERE title = 5", plan_error_code::bad_query,
                 "type mismatch: title is text, 5 is not (at character 35)");
    expect_error("SELECT * FROM posts WHERE id = $2", plan_error_code::bad_query,
                 "the query uses $2 but 1 parameter(s) were given", &member, {json(1)});
    expect_error("SELECT * FROM posts WHERE id = $1", plan_error_code::bad_query,
                 "the query uses $1 but 0 parameter(s) were given");
    expect_error("SELECT * FROM posts WHERE id = $1", plan_error_code::bad_query,
                 "$1 must be a scalar", &member, {json::array({1})});
    expect_error("SELECT * FROM posts WHERE id = $1", plan_error_code::bad_query, "type mismatch",
                 &member, {json("abc")});
}

// Text Postgres' input function for the column's type would refuse, as a literal or $N: Postgres
// would raise an error for the query, so the subscription is bad_query.
TEST(plan_subscription, strings_postgres_would_refuse_for_the_column_type_are_bad_query) {
    expect_error("SELECT * FROM posts WHERE id = '2.50'", plan_error_code::bad_query,
                 "type mismatch: id is integer, '2.50' is not (at character 32)");
    expect_error("SELECT * FROM posts WHERE id < '1e2'", plan_error_code::bad_query,
                 "type mismatch");
    expect_error("SELECT * FROM posts WHERE id <= '9223372036854775808'",
                 plan_error_code::bad_query, "type mismatch");
    expect_error("SELECT * FROM posts WHERE id = $1", plan_error_code::bad_query, "type mismatch",
                 &member, {json("4.5")});
    expect_error("SELECT * FROM posts WHERE title LIKE 'x\\'", plan_error_code::bad_query,
                 "LIKE pattern must not end with escape character");
    expect_error("SELECT * FROM posts WHERE title LIKE $1", plan_error_code::bad_query,
                 "longer than 1000 characters", &member,
                 {json(std::string(like_max_pattern_chars + 1, '%'))});
    expect_plan(plan("SELECT * FROM posts WHERE id = ' 7 '"), "id = ' 7 '");
}

TEST(plan_subscription, rules_that_do_not_fit_the_table_serve_nothing) {
    expect_error("SELECT * FROM broken", plan_error_code::forbidden,
                 "the rules for public.broken do not fit its columns");
}

TEST(plan_subscription, the_filter_is_the_query_and_the_rule_rows) {
    const auto r = plan("SELECT * FROM messages WHERE sender_id = 5");
    const auto& p = expect_plan(r, "filtered");
    ASSERT_NE(p.filter, nullptr);
    struct {
        std::optional<std::int64_t> room;
        std::int64_t sender;
        const char* expected;
    } rows[] = {
        {1, 5, "true"},  // both
        {2, 5, "true"},  // both
        {3, 5, "false"}, // not a room of this client
        {1, 6, "false"}, // not the query's sender
        {std::nullopt, 5, "unknown"},
    };
    for (const auto& row : rows) {
        const auto values = message(row.room, row.sender, "x");
        EXPECT_EQ(show(p.filter->evaluate(row_values{values, {}, nullptr})), row.expected)
            << "room " << (row.room ? std::to_string(*row.room) : "NULL") << " sender "
            << row.sender;
    }
    // The index comes from either side of the AND.
    auto hint = p.filter->index();
    ASSERT_TRUE(hint.has_value());
    EXPECT_FALSE(hint->exact);

    // The client's WHERE cannot widen what the rules let it see.
    const auto widened = plan("SELECT * FROM messages WHERE room_id = 3 OR true");
    const auto& wp = expect_plan(widened, "widened");
    EXPECT_EQ(show(wp.filter->evaluate(row_values{message(3, 1, "x"), {}, nullptr})), "false");
    EXPECT_EQ(show(wp.filter->evaluate(row_values{message(1, 1, "x"), {}, nullptr})), "true");

    // Without a WHERE the filter is the rule's rows alone.
    const auto all = plan("SELECT id FROM messages");
    const auto& q = expect_plan(all, "unfiltered");
    EXPECT_EQ(show(q.filter->evaluate(row_values{message(2, 9, "x"), {}, nullptr})), "true");
    EXPECT_EQ(show(q.filter->evaluate(row_values{message(7, 9, "x"), {}, nullptr})), "false");

    // A rule of rows: true and no WHERE: constant true.
    const auto posts = plan("SELECT * FROM posts");
    EXPECT_EQ(expect_plan(posts, "posts").filter->constant(), tri::true_);

    // Parameters reach the filter.
    const auto with_param = plan("SELECT * FROM posts WHERE id = $1", &member, {json(7)});
    const auto& w = expect_plan(with_param, "param");
    const std::vector<value> seven = {value::integer(7)}, eight = {value::integer(8)};
    EXPECT_EQ(show(w.filter->evaluate(row_values{seven, {}, nullptr})), "true");
    EXPECT_EQ(show(w.filter->evaluate(row_values{eight, {}, nullptr})), "false");
}

TEST(plan_subscription, carries_the_rule_and_its_updates_predicate) {
    const auto r = plan("SELECT * FROM messages");
    const auto& p = expect_plan(r, "messages");
    ASSERT_NE(p.rules, nullptr);
    EXPECT_EQ(p.rule, p.rules->table("public.messages"));
    ASSERT_NE(p.updates, nullptr);
    const auto before = message(1, 5, "old text");
    const auto edited = message(1, 5, "new text");
    EXPECT_EQ(show(p.updates->evaluate(row_values{edited, before, nullptr})), "true");
    EXPECT_EQ(show(p.updates->evaluate(row_values{before, before, nullptr})), "false");

    const auto posts = plan("SELECT * FROM posts");
    EXPECT_EQ(expect_plan(posts, "posts").updates, nullptr);
}

TEST(plan_subscription, the_plan_keeps_its_rules_alive) {
    auto rules = load(rules_yaml);
    subscribe_request req;
    req.sql = "SELECT * FROM messages";
    req.claims = &member;
    auto r = plan_subscription(rules, req, lookup);
    rules.reset();
    ASSERT_TRUE(std::holds_alternative<subscription_plan>(r)) << describe(r);
    const auto& p = std::get<subscription_plan>(r);
    EXPECT_EQ(p.rule->name, "public.messages");
    EXPECT_EQ(p.rules->table("public.messages"), p.rule);
}

std::shared_ptr<const rule_set> channel_rules() {
    static const auto rules = load(rules_yaml);
    return rules;
}

TEST(plan_listen, unlisted_or_disallowed_channels_are_forbidden) {
    const json guest = {{"role", "guest"}};
    const json none = json::object();
    struct {
        const char* channel;
        const json* claims;
    } cases[] = {
        {"nope", &member},
        {"closed", &member},
        {"room_events", &guest},
        {"room_events", &none},
    };
    for (const auto& c : cases) {
        auto r = plan_listen(channel_rules(), c.channel, *c.claims);
        const auto* e = std::get_if<plan_error>(&r);
        ASSERT_NE(e, nullptr) << c.channel;
        EXPECT_EQ(e->code, plan_error_code::forbidden) << c.channel;
        EXPECT_EQ(e->message, "not allowed to listen on " + std::string(c.channel));
    }
}

TEST(plan_listen, a_bare_channel_admits_everyone_with_every_payload) {
    auto r = plan_listen(channel_rules(), "typing", json::object());
    ASSERT_TRUE(std::holds_alternative<listen_plan>(r));
    const auto& p = std::get<listen_plan>(r);
    EXPECT_EQ(p.filter, nullptr);
    ASSERT_NE(p.rule, nullptr);
    EXPECT_EQ(p.rule->name, "typing");
    EXPECT_EQ(p.rules, channel_rules());
}

TEST(plan_listen, filters_payloads_with_the_claims_bound) {
    auto r = plan_listen(channel_rules(), "room_events", member);
    ASSERT_TRUE(std::holds_alternative<listen_plan>(r));
    const auto& p = std::get<listen_plan>(r);
    ASSERT_NE(p.filter, nullptr);
    struct {
        json payload;
        const char* expected;
    } cases[] = {
        {{{"room", 1}}, "true"},   {{{"room", 2}}, "true"},     {{{"room", 3}}, "false"},
        {{{"room", "2"}}, "true"}, {json::object(), "unknown"}, {json("not an object"), "unknown"},
    };
    for (const auto& c : cases) {
        EXPECT_EQ(show(p.filter->evaluate(row_values{{}, {}, &c.payload})), c.expected)
            << c.payload.dump();
    }
}

TEST(plan_listen, rules_that_are_not_conditions_are_refused_when_loaded) {
    // `allow: "1"` or a list outside IN would only fail when a client subscribes; the loader
    // refuses them up front (and plan_listen denies, never throws, should one slip through).
    for (const char* yaml :
         {"channels:\n  odd:\n    allow: \"1\"\n",
          "channels:\n  odd:\n    filter: \"payload.x == [1]\"\n",
          "tables:\n  t:\n    rows: \"'yes' and row.a = 1\"\n    columns: \"*\"\n"}) {
        auto r = load_rules(yaml);
        EXPECT_EQ(r.rules, nullptr) << yaml;
        ASSERT_EQ(r.errors.size(), 1u) << yaml;
        EXPECT_NE(r.errors[0].message.find(std::string(yaml).find("[1]") != std::string::npos
                                               ? "a list can only follow IN"
                                               : "is not a condition"),
                  std::string::npos)
            << r.errors[0].message;
    }
}

// ---- lookups ----

const char* const lookup_rules_yaml = R"yaml(
lookups:
  my_rooms: "SELECT room_id FROM room_members WHERE user_id = auth.sub"
  my_friends: "SELECT friend_id FROM friendships WHERE user_id = auth.sub AND accepted"
  admin_of: "SELECT org FROM org_admins WHERE user_id = auth.sub"
  unused: "SELECT id FROM posts WHERE title = auth.name"
tables:
  messages:
    rows: "row.room_id in lookup.my_rooms or (row.sender_id = auth.sub and 0 not in lookup.my_rooms)"
    columns: "*"
    updates: "row.sender_id not in lookup.my_friends"
  posts:
    allow: "'acme' in lookup.admin_of"
    rows: "true"
    columns: "*"
channels:
  typing:
    filter: "payload.room in lookup.my_rooms"
  admins:
    allow: "'acme' in lookup.admin_of"
)yaml";

std::shared_ptr<const rule_set> lookup_rules() {
    static const auto rules = load(lookup_rules_yaml);
    return rules;
}

// The engine's side, for tests: each lookup's result for the one subscriber, or absent (not
// known); counts how often each is asked.
struct fake_lookups {
    std::map<std::string, json> results;
    std::map<std::string, int> asked;

    lookup_resolver resolver() {
        return [this](const lookup_rule& l) -> const json* {
            ++asked[l.name];
            auto it = results.find(l.name);
            return it == results.end() ? nullptr : &it->second;
        };
    }
};

std::variant<subscription_plan, plan_error> plan_with(std::string_view sql, fake_lookups& engine,
                                                      const json& claims = member) {
    subscribe_request req;
    req.sql = sql;
    req.claims = &claims;
    return plan_subscription(lookup_rules(), req, lookup, engine.resolver());
}

std::vector<std::string> names(const std::vector<const lookup_rule*>& read) {
    std::vector<std::string> out;
    for (const auto* l : read)
        out.push_back(l->name);
    return out;
}

TEST(plan_subscription, a_lookup_binds_as_the_subscribers_array_and_is_asked_once) {
    fake_lookups engine;
    engine.results["my_rooms"] = {1, 2};
    engine.results["my_friends"] = {7};
    const auto r = plan_with("SELECT * FROM messages", engine);
    const auto& p = expect_plan(r, "messages");
    ASSERT_NE(p.filter, nullptr);
    struct {
        std::optional<std::int64_t> room;
        std::int64_t sender;
        const char* expected;
    } rows[] = {
        {1, 9, "true"},  // a room of the subscriber's
        {2, 9, "true"},  // another
        {3, 9, "false"}, // not one of them
        {3, 5, "true"},  // the subscriber's own message (auth.sub = 5; 0 is not a room)
        {std::nullopt, 9, "unknown"},
    };
    for (const auto& row : rows) {
        const auto values = message(row.room, row.sender, "x");
        EXPECT_EQ(show(p.filter->evaluate(row_values{values, {}, nullptr})), row.expected)
            << "room " << (row.room ? std::to_string(*row.room) : "NULL") << " sender "
            << row.sender;
    }
    ASSERT_NE(p.updates, nullptr);
    EXPECT_EQ(show(p.updates->evaluate(row_values{message(1, 7, "x"), {}, nullptr})), "false");
    EXPECT_EQ(show(p.updates->evaluate(row_values{message(1, 8, "x"), {}, nullptr})), "true");

    // What the plan read, in the order read; my_rooms once though rows names it twice.
    EXPECT_EQ(names(p.lookups), (std::vector<std::string>{"my_rooms", "my_friends"}));
    EXPECT_EQ(engine.asked, (std::map<std::string, int>{{"my_friends", 1}, {"my_rooms", 1}}));
    EXPECT_EQ(p.lookups[0], p.rules->lookup("my_rooms"));
}

TEST(plan_subscription, an_empty_lookup_is_an_empty_array_and_an_unknown_one_denies) {
    fake_lookups empty;
    empty.results["my_rooms"] = json::array();
    empty.results["my_friends"] = json::array();
    const auto e = plan_with("SELECT * FROM messages", empty);
    const auto& ep = expect_plan(e, "empty");
    // IN an empty result is false, NOT IN it true (so the subscriber's own messages show).
    EXPECT_EQ(show(ep.filter->evaluate(row_values{message(1, 9, "x"), {}, nullptr})), "false");
    EXPECT_EQ(show(ep.filter->evaluate(row_values{message(1, 5, "x"), {}, nullptr})), "true");
    EXPECT_EQ(show(ep.updates->evaluate(row_values{message(1, 7, "x"), {}, nullptr})), "true");

    // Not known (nullptr): IN and NOT IN are both unknown, which denies.
    fake_lookups unknown;
    const auto u = plan_with("SELECT * FROM messages", unknown);
    const auto& up = expect_plan(u, "unknown");
    EXPECT_EQ(show(up.filter->evaluate(row_values{message(1, 9, "x"), {}, nullptr})), "unknown");
    EXPECT_EQ(show(up.filter->evaluate(row_values{message(1, 5, "x"), {}, nullptr})), "unknown");
    EXPECT_EQ(show(up.updates->evaluate(row_values{message(1, 8, "x"), {}, nullptr})), "unknown");
    EXPECT_EQ(names(up.lookups), (std::vector<std::string>{"my_rooms", "my_friends"}));

    // A result that is not an array is not known either.
    fake_lookups scalar;
    scalar.results["my_rooms"] = 1;
    const auto sc = plan_with("SELECT * FROM messages", scalar);
    EXPECT_EQ(show(expect_plan(sc, "scalar")
                       .filter->evaluate(row_values{message(1, 9, "x"), {}, nullptr})),
              "unknown");

    // Without a resolver (a caller that knows no lookups) every lookup is unknown: the plan is
    // made and denies what depends on them, and still says what it read.
    subscribe_request req;
    req.sql = "SELECT * FROM messages";
    req.claims = &member;
    const auto none = plan_subscription(lookup_rules(), req, lookup);
    const auto& np = expect_plan(none, "no resolver");
    EXPECT_EQ(show(np.filter->evaluate(row_values{message(1, 9, "x"), {}, nullptr})), "unknown");
    EXPECT_EQ(names(np.lookups), (std::vector<std::string>{"my_rooms", "my_friends"}));
}

TEST(plan_subscription, allow_can_read_a_lookup) {
    fake_lookups admin;
    admin.results["admin_of"] = {"acme", "globex"};
    const auto ok = plan_with("SELECT * FROM posts", admin);
    const auto& p = expect_plan(ok, "admin");
    EXPECT_EQ(names(p.lookups), std::vector<std::string>{"admin_of"});
    EXPECT_EQ(p.filter->constant(), tri::true_);

    for (json result : {json::array({"globex"}), json::array(), json(nullptr)}) {
        fake_lookups engine;
        if (!result.is_null()) engine.results["admin_of"] = result;
        const auto r = plan_with("SELECT * FROM posts", engine);
        const auto* e = std::get_if<plan_error>(&r);
        ASSERT_NE(e, nullptr) << result.dump();
        EXPECT_EQ(e->code, plan_error_code::forbidden) << result.dump();
        EXPECT_EQ(e->message, "not allowed to subscribe to public.posts");
    }
}

TEST(plan_subscription, a_client_query_cannot_name_a_lookup) {
    fake_lookups engine;
    engine.results["my_rooms"] = {1, 2};
    struct {
        const char* sql;
        plan_error_code code;
        const char* message;
    } cases[] = {
        {"SELECT * FROM messages WHERE room_id IN lookup.my_rooms", plan_error_code::bad_query,
         "unexpected 'lookup', expected a list (a, b, ...) after IN (at character 41)"},
        {"SELECT * FROM messages WHERE room_id = lookup.my_rooms", plan_error_code::unknown_column,
         "'lookup' is not the table being queried (messages) (at character 40)"},
        {"SELECT * FROM messages WHERE lookup.my_rooms IS NULL", plan_error_code::unknown_column,
         "'lookup' is not the table being queried (messages) (at character 30)"},
        {"SELECT * FROM messages WHERE room_id = auth.sub", plan_error_code::unknown_column,
         "'auth' is not the table being queried (messages) (at character 40)"},
        {"SELECT lookup.my_rooms FROM messages", plan_error_code::bad_query,
         "'lookup' is not the table in FROM (messages) (at character 8)"},
    };
    for (const auto& c : cases) {
        const auto r = plan_with(c.sql, engine);
        const auto* e = std::get_if<plan_error>(&r);
        ASSERT_NE(e, nullptr) << c.sql << ": " << describe(r);
        EXPECT_EQ(e->code, c.code) << c.sql << ": " << e->message;
        EXPECT_EQ(e->message, c.message) << c.sql;
    }
    // Only the rules asked the engine.
    EXPECT_EQ(engine.asked.count("unused"), 0U);
}

TEST(plan_listen, a_channel_filter_and_allow_can_read_lookups) {
    fake_lookups engine;
    engine.results["my_rooms"] = {1, "2"};
    auto r = plan_listen(lookup_rules(), "typing", member, engine.resolver());
    ASSERT_TRUE(std::holds_alternative<listen_plan>(r));
    const auto& p = std::get<listen_plan>(r);
    ASSERT_NE(p.filter, nullptr);
    EXPECT_EQ(names(p.lookups), std::vector<std::string>{"my_rooms"});
    struct {
        json payload;
        const char* expected;
    } cases[] = {
        {{{"room", 1}}, "true"},   {{{"room", 2}}, "true"},     {{{"room", 3}}, "false"},
        {{{"room", "1"}}, "true"}, {json::object(), "unknown"},
    };
    for (const auto& c : cases) {
        EXPECT_EQ(show(p.filter->evaluate(row_values{{}, {}, &c.payload})), c.expected)
            << c.payload.dump();
    }

    // Not known: no notification passes.
    fake_lookups unknown;
    auto u = plan_listen(lookup_rules(), "typing", member, unknown.resolver());
    ASSERT_TRUE(std::holds_alternative<listen_plan>(u));
    const json room1 = {{"room", 1}};
    EXPECT_EQ(show(std::get<listen_plan>(u).filter->evaluate(row_values{{}, {}, &room1})),
              "unknown");

    // allow: with the lookup's result, and without.
    fake_lookups admin;
    admin.results["admin_of"] = {"acme"};
    auto a = plan_listen(lookup_rules(), "admins", member, admin.resolver());
    ASSERT_TRUE(std::holds_alternative<listen_plan>(a));
    EXPECT_EQ(names(std::get<listen_plan>(a).lookups), std::vector<std::string>{"admin_of"});
    auto d = plan_listen(lookup_rules(), "admins", member);
    ASSERT_TRUE(std::holds_alternative<plan_error>(d));
    EXPECT_EQ(std::get<plan_error>(d).code, plan_error_code::forbidden);
}

const table_schema& friendships() {
    static const table_schema t{"public",
                                "friendships",
                                {{"user_id", column_family::integer, "bigint"},
                                 {"friend_id", column_family::integer, "bigint"},
                                 {"accepted", column_family::boolean, "boolean"},
                                 {"since", column_family::timestamp, "timestamptz"}}};
    return t;
}

TEST(bind_lookup_filter, binds_the_lookups_other_conditions_on_its_tables_rows) {
    const auto rules =
        load("lookups:\n"
             "  friends: \"SELECT friend_id FROM friendships WHERE user_id = auth.sub "
             "AND accepted AND since >= '2024-01-01'\"\n"
             "  all_friends: \"SELECT friend_id FROM friendships WHERE user_id = "
             "auth.sub\"\n"
             "  odd: \"SELECT friend_id FROM friendships WHERE user_id = auth.sub AND "
             "since > 'soon'\"\n"
             "  gone: \"SELECT friend_id FROM friendships WHERE user_id = auth.sub AND "
             "blocked\"\n");
    const auto filter = bind_lookup_filter(*rules->lookup("friends"), friendships());
    ASSERT_NE(filter, nullptr);
    auto row = [](const char* accepted, const char* since) {
        return std::vector<value>{value::integer(5), value::integer(7),
                                  from_pg_text(column_family::boolean, accepted),
                                  from_pg_text(column_family::timestamp, since)};
    };
    EXPECT_EQ(show(filter->evaluate(row_values{row("t", "2024-06-01 00:00:00+00"), {}, nullptr})),
              "true");
    EXPECT_EQ(show(filter->evaluate(row_values{row("f", "2024-06-01 00:00:00+00"), {}, nullptr})),
              "false");
    EXPECT_EQ(show(filter->evaluate(row_values{row("t", "2023-06-01 00:00:00+00"), {}, nullptr})),
              "false");
    EXPECT_EQ(filter->columns(), (std::vector<std::size_t>{2, 3}));

    EXPECT_EQ(bind_lookup_filter(*rules->lookup("all_friends"), friendships()), nullptr);
    try {
        bind_lookup_filter(*rules->lookup("odd"), friendships());
        ADD_FAILURE() << "a timestamp literal that is not one bound";
    } catch (const bind_error& e) {
        EXPECT_EQ(e.code, bind_error_code::type_mismatch) << e.what();
    }
    try {
        bind_lookup_filter(*rules->lookup("gone"), friendships());
        ADD_FAILURE() << "a column the table lacks bound";
    } catch (const bind_error& e) {
        EXPECT_EQ(e.code, bind_error_code::unknown_column) << e.what();
        EXPECT_STREQ(e.what(), "column \"blocked\" does not exist in public.friendships");
    }
}

TEST(lookup_key, reads_the_claim_as_the_correlation_reads_it) {
    const auto rules =
        load("lookups:\n"
             "  by_id: \"SELECT friend_id FROM friendships WHERE user_id = auth.sub\"\n"
             "  by_org: \"SELECT friend_id FROM friendships WHERE auth.org.id = "
             "user_id\"\n"
             "  by_name: \"SELECT id FROM posts WHERE title = auth.sub\"\n");
    const lookup_rule& by_id = *rules->lookup("by_id");
    const lookup_rule& by_org = *rules->lookup("by_org");
    const lookup_rule& by_name = *rules->lookup("by_name");
    const table_schema& posts = database().at("public.posts");
    struct {
        const lookup_rule& rule;
        const table_schema& table;
        json claims;
        std::optional<std::string> key;
    } cases[] = {
        {by_id, friendships(), {{"sub", 5}}, "5"},
        {by_id, friendships(), {{"sub", "5"}}, "5"},
        {by_id, friendships(), {{"sub", " 5 "}}, "5"}, // int8in allows the spaces
        // A double meets a bigint as a double (int8 = float8 casts both), which no exact key
        // can stand for: not known, so it denies.
        {by_id, friendships(), {{"sub", 5.0}}, {}},
        {by_id, friendships(), {{"sub", "4.5"}}, {}},   // int8in refuses it
        {by_id, friendships(), {{"sub", 4.5}}, {}},     // no bigint equals it
        {by_id, friendships(), {{"sub", true}}, {}},    // a boolean meets only booleans
        {by_id, friendships(), {{"sub", nullptr}}, {}}, // null
        {by_id, friendships(), {{"sub", {5}}}, {}},     // an array
        {by_id, friendships(), json::object(), {}},     // missing
        {by_org, friendships(), {{"org", {{"id", 9}}}}, "9"},
        {by_org, friendships(), {{"org", 9}}, {}},
        {by_name, posts, {{"sub", "Ann"}}, "Ann"},
        {by_name, posts, {{"sub", 42}}, "42"}, // a numeric claim meets text as its decimal text
    };
    for (const auto& c : cases) {
        EXPECT_EQ(lookup_key(c.rule, c.table, c.claims), c.key)
            << c.rule.name << " " << c.claims.dump();
    }
    EXPECT_THROW(lookup_key(by_id, posts, {{"sub", 5}}), bind_error); // posts has no user_id
}

TEST(plan_error_code, has_stable_names) {
    EXPECT_EQ(to_string(plan_error_code::bad_query), "bad_query");
    EXPECT_EQ(to_string(plan_error_code::unknown_table), "unknown_table");
    EXPECT_EQ(to_string(plan_error_code::forbidden), "forbidden");
    EXPECT_EQ(to_string(plan_error_code::unknown_column), "unknown_column");
}

} // namespace
} // namespace pgpush::rules
