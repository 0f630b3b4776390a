#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "rules/like.hpp"
#include "rules/rule_set.hpp"

namespace pgpush::rules {
namespace {

std::vector<std::string> formatted(const load_result& r) {
    std::vector<std::string> out;
    for (const auto& d : r.errors)
        out.push_back(format(d, "f.yaml"));
    return out;
}

std::string joined(const std::vector<std::string>& lines) {
    std::string out;
    for (const auto& l : lines)
        out += "\n  " + l;
    return out;
}

struct error_case {
    const char* name;
    const char* yaml;
    std::vector<std::string> expected;
};

void expect_errors(const std::vector<error_case>& cases, const schema_map* schema = nullptr) {
    for (const auto& c : cases) {
        const load_result r = load_rules(c.yaml, schema);
        EXPECT_EQ(r.rules, nullptr) << c.name;
        EXPECT_EQ(formatted(r), c.expected) << c.name << ": got" << joined(formatted(r));
    }
}

const char* const full_file = R"(version: 1
tables:
  messages:
    allow: "auth.role != 'banned'"
    rows: "row.room_id in auth.rooms"
    columns: [id, room_id, body, sent_at]
    updates: "row.body != old.body"
    max_subscriptions: 10
  chat.rooms:
    rows: "true"
    columns: "*"
  '"Audit"':
    rows: "'admin' in auth.roles"
    columns:
      - id
      - '"Actor"'
      - Target
channels:
  typing:
  room_events:
    allow: "auth.role == 'member'"
    filter: "payload.room in auth.rooms"
)";

TEST(load_rules, loads_a_full_valid_file) {
    const load_result r = load_rules(full_file);
    ASSERT_TRUE(r.errors.empty()) << joined(formatted(r));
    ASSERT_NE(r.rules, nullptr);
    const rule_set& rules = *r.rules;

    std::vector<std::string> tables;
    for (const auto& [name, rule] : rules.tables())
        tables.push_back(name);
    EXPECT_EQ(tables, (std::vector<std::string>{"chat.rooms", "public.Audit", "public.messages"}));

    const table_rule* messages = rules.table("public.messages");
    ASSERT_NE(messages, nullptr);
    EXPECT_EQ(messages->name, "public.messages");
    ASSERT_NE(messages->allow, nullptr);
    EXPECT_EQ(to_string(*messages->allow), "auth.role <> 'banned'");
    ASSERT_NE(messages->rows, nullptr);
    EXPECT_EQ(to_string(*messages->rows), "row.room_id IN auth.rooms");
    ASSERT_NE(messages->updates, nullptr);
    EXPECT_EQ(to_string(*messages->updates), "row.body <> old.body");
    EXPECT_FALSE(messages->all_columns);
    EXPECT_EQ(messages->columns, (std::vector<std::string>{"id", "room_id", "body", "sent_at"}));
    EXPECT_TRUE(messages->column_allowed("body"));
    EXPECT_FALSE(messages->column_allowed("sender_id"));
    EXPECT_FALSE(messages->column_allowed("Body"));
    EXPECT_EQ(messages->max_subscriptions, 10U);

    const table_rule* rooms = rules.table("chat.rooms");
    ASSERT_NE(rooms, nullptr);
    EXPECT_EQ(rooms->allow, nullptr);
    EXPECT_EQ(rooms->updates, nullptr);
    EXPECT_TRUE(rooms->all_columns);
    EXPECT_TRUE(rooms->column_allowed("anything"));
    EXPECT_EQ(rooms->max_subscriptions, std::nullopt);
    EXPECT_EQ(to_string(*rooms->rows), "true");

    const table_rule* audit = rules.table("public.Audit");
    ASSERT_NE(audit, nullptr);
    EXPECT_EQ(audit->columns, (std::vector<std::string>{"id", "Actor", "target"}));

    EXPECT_EQ(rules.table("public.rooms"), nullptr);
    EXPECT_EQ(rules.table("messages"), nullptr); // lookups are by qualified name
    EXPECT_EQ(rules.table("public.audit"), nullptr);

    std::vector<std::string> channels;
    for (const auto& [name, rule] : rules.channels())
        channels.push_back(name);
    EXPECT_EQ(channels, (std::vector<std::string>{"room_events", "typing"}));
    const channel_rule* typing = rules.channel("typing");
    ASSERT_NE(typing, nullptr);
    EXPECT_EQ(typing->allow, nullptr);
    EXPECT_EQ(typing->filter, nullptr);
    const channel_rule* events = rules.channel("room_events");
    ASSERT_NE(events, nullptr);
    EXPECT_EQ(to_string(*events->allow), "auth.role = 'member'");
    EXPECT_EQ(to_string(*events->filter), "payload.room IN auth.rooms");
    EXPECT_EQ(rules.channel("other"), nullptr);
}

TEST(load_rules, accepts_minimal_and_empty_sections) {
    for (const char* yaml : {"tables:\n", "version: 1\ntables:\nchannels:\n", "version: \"1\"\n",
                             "channels:\n  typing:\n"}) {
        const load_result r = load_rules(yaml);
        EXPECT_TRUE(r.errors.empty()) << yaml << joined(formatted(r));
        EXPECT_NE(r.rules, nullptr) << yaml;
    }
}

TEST(load_rules, reports_structural_errors_with_line_and_column) {
    expect_errors({
        {"yaml syntax", "tables: [\n", {"f.yaml:2:1: YAML syntax: end of sequence flow not found"}},
        {"empty file",
         "",
         {"f.yaml:1:1: the file is empty: with no rules nothing is visible (add tables:)"}},
        {"only a comment",
         "# nothing here\n",
         {"f.yaml:1:1: the file is empty: with no rules nothing is visible (add tables:)"}},
        {"not a mapping",
         "- a\n- b\n",
         {"f.yaml:1:1: expected a mapping with tables: and channels:"}},
        {"version 2", "version: 2\n", {"f.yaml:1:10: version must be 1"}},
        {"version 1.0", "version: 1.0\n", {"f.yaml:1:10: version must be 1"}},
        {"tables not a mapping",
         "tables: 5\n",
         {"f.yaml:1:9: tables: must map table names to their rules"}},
        {"channels not a mapping",
         "channels: [a]\n",
         {"f.yaml:1:11: channels: must map NOTIFY channel names to their rules"}},
        {"unknown top-level key",
         "tables:\nchanels:\n",
         {"f.yaml:2:1: unknown key 'chanels' (expected version, lookups, tables, channels)"}},
        {"unknown table key (typo)",
         "tables:\n  t:\n    rows: true\n    columns: \"*\"\n    alow: \"true\"\n",
         {"f.yaml:5:5: unknown key 'alow' (expected allow, rows, columns, updates, "
          "max_subscriptions)"}},
        {"unknown channel key",
         "channels:\n  c:\n    filterr: \"true\"\n",
         {"f.yaml:3:5: unknown key 'filterr' (expected allow, filter)"}},
        {"duplicate top-level key", "tables:\ntables:\n", {"f.yaml:2:1: duplicate key 'tables'"}},
        {"duplicate table",
         "tables:\n  t: {rows: \"true\", columns: \"*\"}\n  t: {rows: \"true\", columns: \"*\"}\n",
         {"f.yaml:3:3: duplicate key 't'"}},
        {"same table spelled twice",
         "tables:\n  Messages:\n    rows: true\n    columns: \"*\"\n  public.messages:\n"
         "    rows: true\n    columns: \"*\"\n",
         {"f.yaml:6:5: table public.messages is listed twice"}},
        {"duplicate key in a table",
         "tables:\n  t:\n    rows: true\n    rows: false\n    columns: \"*\"\n",
         {"f.yaml:4:5: duplicate key 'rows'"}},
        {"missing rows",
         "tables:\n  t:\n    columns: \"*\"\n",
         {"f.yaml:3:5: public.t: rows: is required (write rows: \"true\" to allow every row)"}},
        {"missing columns",
         "tables:\n  t:\n    rows: true\n",
         {"f.yaml:3:5: public.t: columns: is required (a list, or \"*\" for every column)"}},
        {"table rules not a mapping",
         "tables:\n  t: true\n",
         {"f.yaml:2:6: the rules for public.t must be a mapping (rows:, columns:, ...)"}},
        {"channel rules not a mapping",
         "channels:\n  c: 5\n",
         {"f.yaml:2:6: the rules for channel c must be a mapping (allow:, filter:)"}},
        {"channel name too long",
         "channels:\n  c234567890123456789012345678901234567890123456789012345678901234:\n"
         "    allow: \"true\"\n",
         {"f.yaml:3:5: channel names are 1-63 characters"}},
        {"expression not a string",
         "tables:\n  t:\n    rows: [a]\n    columns: \"*\"\n",
         {"f.yaml:3:11: rows must be an expression string"}},
    });
}

TEST(load_rules, reports_bad_columns_and_max_subscriptions) {
    expect_errors({
        {"columns not a list",
         "tables:\n  t:\n    rows: true\n    columns: id\n",
         {"f.yaml:4:14: columns: must be a non-empty list of column names, or \"*\""}},
        {"columns empty",
         "tables:\n  t:\n    rows: true\n    columns: []\n",
         {"f.yaml:4:14: columns: must be a non-empty list of column names, or \"*\""}},
        {"columns a mapping",
         "tables:\n  t:\n    rows: true\n    columns: {id: 1}\n",
         {"f.yaml:4:14: columns: must be a non-empty list of column names, or \"*\""}},
        {"duplicate, malformed and nested columns",
         "tables:\n  t:\n    rows: true\n    columns: [id, ID, \"Bad Name\", [x], 1a]\n",
         {"f.yaml:4:19: column id is listed twice", "f.yaml:4:23: 'Bad Name' is not a column name",
          "f.yaml:4:35: a column name must be a string", "f.yaml:4:40: '1a' is not a column name"}},
        {"max_subscriptions zero",
         "tables:\n  t:\n    rows: true\n    columns: \"*\"\n    max_subscriptions: 0\n",
         {"f.yaml:5:24: max_subscriptions must be a positive integer"}},
        {"max_subscriptions negative",
         "tables:\n  t:\n    rows: true\n    columns: \"*\"\n    max_subscriptions: -1\n",
         {"f.yaml:5:24: max_subscriptions must be a positive integer"}},
        {"max_subscriptions text",
         "tables:\n  t:\n    rows: true\n    columns: \"*\"\n    max_subscriptions: abc\n",
         {"f.yaml:5:24: max_subscriptions must be a positive integer"}},
        {"max_subscriptions fraction",
         "tables:\n  t:\n    rows: true\n    columns: \"*\"\n    max_subscriptions: 1.5\n",
         {"f.yaml:5:24: max_subscriptions must be a positive integer"}},
        {"max_subscriptions list",
         "tables:\n  t:\n    rows: true\n    columns: \"*\"\n    max_subscriptions: [1]\n",
         {"f.yaml:5:24: max_subscriptions must be a positive integer"}},
    });
}

TEST(load_rules, points_expression_errors_at_the_bad_token_inside_the_scalar) {
    expect_errors({
        {"double-quoted",
         "tables:\n  t:\n    rows: \"row.room_id = = 1\"\n    columns: \"*\"\n",
         {"f.yaml:3:26: rows: unexpected '='"}},
        {"single-quoted",
         "tables:\n  t:\n    rows: 'row.room_id in auth.rooms and row.x = '\n    columns: \"*\"\n",
         {"f.yaml:3:50: rows: unexpected end of input, expected a value or a name"}},
        {"plain",
         "tables:\n  t:\n    rows: row.room_id = = 1\n    columns: \"*\"\n",
         {"f.yaml:3:25: rows: unexpected '='"}},
        {"unknown name",
         "tables:\n  t:\n    rows: \"room_id == 1\"\n    columns: \"*\"\n",
         {"f.yaml:3:12: rows: unknown name 'room_id': write row.room_id, old.room_id, "
          "auth.room_id or payload.room_id"}},
        {"function in allow",
         "tables:\n  t:\n    allow: \"lower(auth.role) == 'x'\"\n    rows: true\n    columns: "
         "\"*\"\n",
         {"f.yaml:3:13: allow: functions are not supported (lower(...))"}},
        {"comparison with null in updates",
         "tables:\n  t:\n    rows: true\n    columns: \"*\"\n    updates: \"old.x != null\"\n",
         {"f.yaml:5:24: updates: comparing with NULL is never true: write IS NULL or IS NOT "
          "NULL"}},
        {"unterminated string in a channel filter",
         "channels:\n  c:\n    filter: \"payload.x == 'a\"\n",
         {"f.yaml:3:27: filter: unterminated string"}},
    });
}

// Without a database: a LIKE pattern Postgres would refuse, one over like_max_pattern_chars, or
// one that is not a value.
TEST(load_rules, reports_like_patterns_that_could_never_be_used) {
    const std::string too_long = "tables:\n  t:\n    rows: \"row.body not like '" +
                                 std::string(like_max_pattern_chars + 1, 'a') +
                                 "'\"\n    columns: \"*\"\n";
    expect_errors({
        {"pattern ending in an escape",
         "tables:\n  t:\n    rows: 'row.body like ''abc\\'''\n    columns: \"*\"\n",
         {"f.yaml:3:26: rows: LIKE pattern must not end with escape character: 'abc\\'"}},
        {"pattern over the cap",
         too_long.c_str(),
         {"f.yaml:3:30: rows: the LIKE pattern is longer than 1000 characters"}},
        {"pattern from the row",
         "tables:\n  t:\n    rows: \"'x' like row.body\"\n    columns: \"*\"\n",
         {"f.yaml:3:21: rows: a LIKE pattern must be a value (a string or auth.*), not row.body"}},
        {"number pattern in a channel filter",
         "channels:\n  c:\n    filter: \"payload.x like 5\"\n",
         {"f.yaml:3:29: filter: LIKE needs text: 5 is not"}},
    });
    const load_result ok =
        load_rules("tables:\n  t:\n    rows: \"row.body like auth.prefix or row.body like '" +
                   std::string(like_max_pattern_chars, '%') + "'\"\n    columns: \"*\"\n");
    EXPECT_TRUE(ok.errors.empty()) << joined(formatted(ok));
}

TEST(load_rules, rejects_namespaces_an_expression_cannot_use) {
    expect_errors({
        {"row in allow",
         "tables:\n  t:\n    allow: \"row.x == 1\"\n    rows: true\n    columns: \"*\"\n",
         {"f.yaml:3:13: allow: row.* cannot be used here (only auth.* lookup.*)"}},
        {"payload and old in rows",
         "tables:\n  t:\n    rows: \"payload.x == 1 or old.y == 2\"\n    columns: \"*\"\n",
         {"f.yaml:3:12: rows: payload.* cannot be used here (only row.* auth.* lookup.*)",
          "f.yaml:3:30: rows: old.* cannot be used here (only row.* auth.* lookup.*)"}},
        {"payload in updates",
         "tables:\n  t:\n    rows: true\n    columns: \"*\"\n    updates: \"payload.x == 1\"\n",
         {"f.yaml:5:15: updates: payload.* cannot be used here (only row.* old.* auth.* "
          "lookup.*)"}},
        {"row in a channel filter",
         "channels:\n  c:\n    filter: \"payload.room in auth.rooms and row.y == 1\"\n",
         {"f.yaml:3:45: filter: row.* cannot be used here (only auth.* lookup.* payload.*)"}},
        {"payload in a channel allow",
         "channels:\n  c:\n    allow: \"payload.x == 1\"\n",
         {"f.yaml:3:13: allow: payload.* cannot be used here (only auth.* lookup.*)"}},
    });
}

TEST(load_rules, reports_every_error_in_file_order_and_no_rules) {
    const char* yaml = R"(version: 2
tables:
  messages:
    allow: "row.x == 1"
    rows: "row.room_id = = 1"
    columns: [id, id]
    max_subscriptions: 0
  rooms:
    colums: "*"
channels:
  bad: 5
  c:
    filter: "row.x == 1"
)";
    const load_result r = load_rules(yaml);
    EXPECT_EQ(r.rules, nullptr);
    EXPECT_EQ(
        formatted(r),
        (std::vector<std::string>{
            "f.yaml:1:10: version must be 1",
            "f.yaml:4:13: allow: row.* cannot be used here (only auth.* lookup.*)",
            "f.yaml:5:26: rows: unexpected '='",
            "f.yaml:6:19: column id is listed twice",
            "f.yaml:7:24: max_subscriptions must be a positive integer",
            "f.yaml:9:5: unknown key 'colums' (expected allow, rows, columns, updates, "
            "max_subscriptions)",
            "f.yaml:9:5: public.rooms: rows: is required (write rows: \"true\" to allow "
            "every row)",
            "f.yaml:9:5: public.rooms: columns: is required (a list, or \"*\" for every "
            "column)",
            "f.yaml:11:8: the rules for channel bad must be a mapping (allow:, filter:)",
            "f.yaml:13:14: filter: row.* cannot be used here (only auth.* lookup.* payload.*)",
        }))
        << joined(formatted(r));
}

TEST(load_rules, block_scalar_errors_point_at_the_line_of_the_bad_token) {
    // BUG: error_at() (loader.cpp) adds the newlines before the bad token to the scalar's mark,
    // but a block scalar's mark is the '|' indicator's line, not the first content line, so the
    // reported line is one too early (4 instead of 5 here; the column is only approximate).
    const char* yaml = "tables:\n  t:\n    rows: |\n      row.x == 1 and\n      row.y = = 2\n"
                       "    columns: \"*\"\n";
    const load_result r = load_rules(yaml);
    ASSERT_EQ(r.errors.size(), 1U) << joined(formatted(r));
    EXPECT_EQ(r.errors[0].line, 5U) << format(r.errors[0], "f.yaml");
    EXPECT_NE(r.errors[0].message.find("unexpected '='"), std::string::npos);
}

TEST(load_rules, quoted_scalar_errors_count_escapes_in_the_column) {
    // BUG (minor): error_at() (loader.cpp) maps an offset in the *unescaped* scalar to a file
    // column by adding it to the opening quote's column, so every escape before the bad token
    // ('' in single quotes, \" in double quotes) shifts the column left by one. The '=' below is
    // at column 34 in both files; the loader says 32.
    expect_errors({
        {"single-quoted with ''",
         "tables:\n  t:\n    rows: 'row.body == ''x'' and = 1'\n    columns: \"*\"\n",
         {"f.yaml:3:34: rows: unexpected '='"}},
        {"double-quoted with \\\"",
         "tables:\n  t:\n    rows: \"row.body == \\\"x\\\" and = 1\"\n    columns: \"*\"\n",
         {"f.yaml:3:34: rows: unexpected '='"}},
    });
}

schema_map live_schema() {
    schema_map m;
    m["public.messages"] = table_schema{"public",
                                        "messages",
                                        {{"id", column_family::integer, "integer"},
                                         {"room_id", column_family::integer, "integer"},
                                         {"body", column_family::text, "text"},
                                         {"sent_at", column_family::timestamp, "timestamptz"}}};
    return m;
}

TEST(load_rules, with_a_schema_checks_tables_columns_and_literal_types) {
    const schema_map schema = live_schema();
    expect_errors(
        {
            {"unknown table",
             "tables:\n  ghosts:\n    rows: \"row.x == 1\"\n    columns: [a]\n",
             {"f.yaml:3:5: table public.ghosts does not exist in the database"}},
            {"unknown column in columns:",
             "tables:\n  messages:\n    rows: true\n    columns: [id, body, nope]\n",
             {"f.yaml:4:25: column nope does not exist in public.messages"}},
            {"unknown column in rows: and updates:",
             "tables:\n  messages:\n    rows: \"row.room_id in auth.rooms and row.nope == 1\"\n"
             "    updates: \"row.body != old.body and old.nope == 1\"\n    columns: \"*\"\n",
             {"f.yaml:3:42: column \"nope\" does not exist in public.messages",
              "f.yaml:4:40: column \"nope\" does not exist in public.messages"}},
            {"literal type mismatch in rows:",
             "tables:\n  messages:\n    rows: \"row.room_id == 'abc'\"\n    columns: \"*\"\n",
             {"f.yaml:3:27: type mismatch: row.room_id is integer, 'abc' is not"}},
            {"a string Postgres would not read as an integer",
             "tables:\n  messages:\n    rows: \"row.room_id < '2.50'\"\n    columns: \"*\"\n",
             {"f.yaml:3:26: type mismatch: row.room_id is integer, '2.50' is not"}},
            {"a string beyond integer's range",
             "tables:\n  messages:\n    rows: \"row.room_id = '99999999999'\"\n    columns: "
             "\"*\"\n",
             {"f.yaml:3:26: type mismatch: row.room_id is integer, '99999999999' is not"}},
            {"timestamp literal that is not one",
             "tables:\n  messages:\n    rows: \"row.sent_at > 'soon'\"\n    columns: \"*\"\n",
             {"f.yaml:3:26: type mismatch: row.sent_at is timestamp, 'soon' is not"}},
            {"non-boolean rows",
             "tables:\n  messages:\n    rows: \"row.body\"\n    columns: \"*\"\n",
             {"f.yaml:3:12: column row.body is text, not boolean: compare it with something"}},
        },
        &schema);
    // Claims are unknown when checking: a claim of any type is fine.
    const load_result ok = load_rules(
        "tables:\n  messages:\n    rows: \"row.room_id == auth.room or row.body == auth.x\"\n"
        "    columns: [id, body]\n",
        &schema);
    EXPECT_TRUE(ok.errors.empty()) << joined(formatted(ok));
    EXPECT_NE(ok.rules, nullptr);
}

TEST(load_rules, reports_a_wrong_namespace_once_when_checking_against_a_schema) {
    // BUG (minor): with a schema, check_types() (loader.cpp) binds expressions that check_refs()
    // already rejected, so payload.* in rows: is reported twice at the same place:
    //   f.yaml:3:12: rows: payload.* cannot be used here (only row.* auth.* lookup.*)
    //   f.yaml:3:12: payload.* only exists in channel filters
    // and old.* in rows: likewise ("old.* cannot be used here" a second time).
    const schema_map schema = live_schema();
    expect_errors(
        {
            {"payload in rows",
             "tables:\n  messages:\n    rows: \"payload.x == 1\"\n    columns: \"*\"\n",
             {"f.yaml:3:12: rows: payload.* cannot be used here (only row.* auth.* lookup.*)"}},
            {"old in rows",
             "tables:\n  messages:\n    rows: \"old.id == 1\"\n    columns: \"*\"\n",
             {"f.yaml:3:12: rows: old.* cannot be used here (only row.* auth.* lookup.*)"}},
        },
        &schema);
}

// ---- lookups ----

const char* const chat_lookups = R"(lookups:
  my_rooms: "SELECT room_id FROM room_members WHERE user_id = auth.sub"
  my_friends: "SELECT friend_id FROM friendships WHERE user_id = auth.sub AND accepted"
  org_admins: >-
    select Org_Id from Chat.Admins
    where auth.org.id = admins.member_id and role = 'admin' and (deleted_at is null)
  by_url: 'SELECT "Room" FROM "Members" WHERE "User" = auth[''https://x/uid'']'
  unused: "SELECT id FROM rooms WHERE owner = auth.sub"
tables:
  messages:
    allow: "'x' in lookup.org_admins or auth.role = 'admin'"
    rows: "row.room_id in lookup.my_rooms or row.sender_id = auth.uid"
    updates: "row.sender_id not in lookup.my_friends"
    columns: "*"
  room_members:
    rows: "row.room_id in lookup.by_url"
    columns: "*"
channels:
  typing:
    allow: "lookup.my_rooms is not null"
    filter: "payload.room in lookup.my_rooms"
)";

TEST(load_rules, loads_lookups_and_points_references_at_them) {
    const load_result r = load_rules(chat_lookups);
    ASSERT_TRUE(r.errors.empty()) << joined(formatted(r));
    const rule_set& rules = *r.rules;

    std::vector<std::string> names;
    for (const auto& [name, l] : rules.lookups())
        names.push_back(name);
    EXPECT_EQ(names, (std::vector<std::string>{"by_url", "my_friends", "my_rooms", "org_admins",
                                               "unused"}));

    const lookup_rule* rooms = rules.lookup("my_rooms");
    ASSERT_NE(rooms, nullptr);
    EXPECT_EQ(rooms->name, "my_rooms");
    EXPECT_EQ(rooms->table, "public.room_members");
    EXPECT_EQ(rooms->output, "room_id");
    EXPECT_EQ(rooms->key_column, "user_id");
    EXPECT_EQ(rooms->claim_path, std::vector<std::string>{"sub"});
    EXPECT_EQ(rooms->filter, nullptr);
    EXPECT_EQ(rooms->line, 2U);
    EXPECT_EQ(rooms->columns, (std::vector<std::string>{"user_id", "room_id"}));

    const lookup_rule* friends = rules.lookup("my_friends");
    ASSERT_NE(friends, nullptr);
    EXPECT_EQ(friends->table, "public.friendships");
    EXPECT_EQ(friends->output, "friend_id");
    EXPECT_EQ(friends->key_column, "user_id");
    ASSERT_NE(friends->filter, nullptr);
    EXPECT_EQ(to_string(*friends->filter), "accepted");
    EXPECT_EQ(friends->columns, (std::vector<std::string>{"user_id", "friend_id", "accepted"}));

    // The correlation on either side, a nested claim path, a qualified column, several other
    // conditions (their AND is the filter), SQL case folding.
    const lookup_rule* admins = rules.lookup("org_admins");
    ASSERT_NE(admins, nullptr);
    EXPECT_EQ(admins->table, "chat.admins");
    EXPECT_EQ(admins->output, "org_id");
    EXPECT_EQ(admins->key_column, "member_id");
    EXPECT_EQ(admins->claim_path, (std::vector<std::string>{"org", "id"}));
    ASSERT_NE(admins->filter, nullptr);
    EXPECT_EQ(to_string(*admins->filter), "(role = 'admin' AND deleted_at IS NULL)");
    EXPECT_EQ(admins->line, 4U);
    EXPECT_EQ(admins->columns,
              (std::vector<std::string>{"member_id", "org_id", "role", "deleted_at"}));

    // Quoted names kept; a claim named by any key.
    const lookup_rule* by_url = rules.lookup("by_url");
    ASSERT_NE(by_url, nullptr);
    EXPECT_EQ(by_url->table, "public.Members");
    EXPECT_EQ(by_url->output, "Room");
    EXPECT_EQ(by_url->key_column, "User");
    EXPECT_EQ(by_url->claim_path, std::vector<std::string>{"https://x/uid"});
    EXPECT_EQ(rules.lookup("nope"), nullptr);

    // Every reference is resolved to its lookup, in rows, allow, updates and both channel keys.
    const table_rule* messages = rules.table("public.messages");
    ASSERT_NE(messages, nullptr);
    EXPECT_EQ(to_string(*messages->rows),
              "(row.room_id IN lookup.my_rooms OR row.sender_id = auth.uid)");
    EXPECT_EQ(messages->rows->args[0]->args[1]->lookup, rooms);
    EXPECT_EQ(messages->allow->args[0]->args[1]->lookup, admins);
    EXPECT_EQ(messages->updates->args[1]->lookup, friends);
    const channel_rule* typing = rules.channel("typing");
    ASSERT_NE(typing, nullptr);
    EXPECT_EQ(typing->allow->args[0]->lookup, rooms);
    EXPECT_EQ(typing->filter->args[1]->lookup, rooms);

    // The engine streams the tables of both sections.
    EXPECT_EQ(streamed_tables(rules),
              (std::vector<std::string>{"chat.admins", "public.Members", "public.friendships",
                                        "public.messages", "public.room_members", "public.rooms"}));
}

TEST(lookup_rule, copies_are_deep_and_outlive_their_rule_set) {
    lookup_rule copy;
    {
        const load_result r = load_rules(chat_lookups);
        ASSERT_NE(r.rules, nullptr) << joined(formatted(r));
        const lookup_rule& original = *r.rules->lookup("org_admins");
        copy = original;
        ASSERT_NE(copy.filter, nullptr);
        EXPECT_NE(copy.filter.get(), original.filter.get());
        const lookup_rule constructed(original);
        EXPECT_EQ(to_string(*constructed.filter), to_string(*original.filter));
    }
    EXPECT_EQ(copy.name, "org_admins");
    EXPECT_EQ(copy.table, "chat.admins");
    EXPECT_EQ(copy.output, "org_id");
    EXPECT_EQ(copy.key_column, "member_id");
    EXPECT_EQ(copy.claim_path, (std::vector<std::string>{"org", "id"}));
    EXPECT_EQ(copy.line, 4U);
    EXPECT_EQ(copy.columns,
              (std::vector<std::string>{"member_id", "org_id", "role", "deleted_at"}));
    EXPECT_EQ(to_string(*copy.filter), "(role = 'admin' AND deleted_at IS NULL)");
}

TEST(load_rules, lookups_may_follow_the_rules_that_use_them_and_go_unused) {
    const load_result r = load_rules("tables:\n  t:\n    rows: \"row.a in lookup.l\"\n"
                                     "    columns: \"*\"\nlookups:\n"
                                     "  l: \"SELECT a FROM x WHERE b = auth.sub\"\n"
                                     "  spare: \"SELECT a FROM y WHERE b = auth.sub\"\n");
    ASSERT_TRUE(r.errors.empty()) << joined(formatted(r));
    EXPECT_EQ(r.rules->table("public.t")->rows->args[1]->lookup, r.rules->lookup("l"));
    EXPECT_EQ(streamed_tables(*r.rules),
              (std::vector<std::string>{"public.t", "public.x", "public.y"}));
}

// Each refused lookup form, with its position in the file.
TEST(load_rules, refuses_lookups_that_cannot_find_a_subscribers_rows) {
    auto one = [](const char* query) { return std::string("lookups:\n  l: \"") + query + "\"\n"; };
    // The query starts at column 7 of line 2.
    const std::vector<std::pair<const char*, const char*>> cases = {
        {"SELECT room_id FROM room_members",
         "f.yaml:2:39: lookup l: a lookup needs exactly one `column = auth.claim` to find a "
         "subscriber's rows"},
        {"SELECT room_id FROM room_members WHERE accepted",
         "f.yaml:2:46: lookup l: a lookup needs exactly one `column = auth.claim` to find a "
         "subscriber's rows"},
        {"SELECT room_id FROM room_members WHERE user_id = 7",
         "f.yaml:2:46: lookup l: a lookup needs exactly one `column = auth.claim` to find a "
         "subscriber's rows"},
        {"SELECT room_id FROM room_members WHERE user_id = auth.sub AND org = auth.org",
         "f.yaml:2:69: lookup l: a lookup has exactly one `column = auth.claim`; org = auth.org "
         "is a second one"},
        {"SELECT room_id FROM room_members WHERE user_id > auth.sub",
         "f.yaml:2:46: lookup l: user_id > auth.sub cannot be indexed: only `=`"},
        {"SELECT room_id FROM room_members WHERE user_id = auth.sub OR public",
         "f.yaml:2:46: lookup l: OR cannot be indexed: a lookup's WHERE is `column = auth.claim` "
         "AND other conditions"},
        {"SELECT room_id FROM room_members WHERE lower(user_id) = auth.sub",
         "f.yaml:2:46: lookup l: functions are not supported (lower(...))"},
        {"SELECT room_id FROM room_members, rooms WHERE user_id = auth.sub",
         "f.yaml:2:39: lookup l: joins are not supported: a lookup reads one table"},
        {"SELECT room_id FROM room_members JOIN rooms WHERE user_id = auth.sub",
         "f.yaml:2:40: lookup l: joins are not supported: a lookup reads one table"},
        {"SELECT room_id FROM room_members WHERE user_id = auth.sub ORDER BY room_id",
         "f.yaml:2:65: lookup l: ORDER BY is not supported: the result is a set; sort on the "
         "client"},
        {"SELECT room_id FROM room_members WHERE user_id IN (SELECT 1)",
         "f.yaml:2:58: lookup l: subqueries are not supported"},
        {"SELECT * FROM room_members WHERE user_id = auth.sub",
         "f.yaml:2:14: lookup l: a lookup selects one column, not *"},
        {"SELECT room_id, user_id FROM room_members WHERE user_id = auth.sub",
         "f.yaml:2:23: lookup l: a lookup selects one column (its values are the lookup's "
         "result)"},
        {"SELECT room_id FROM room_members WHERE user_id = auth.sub AND room_id in lookup.other",
         "f.yaml:2:80: lookup l: a lookup cannot use another lookup (lookup.other)"},
        {"SELECT room_id FROM room_members WHERE user_id = auth.sub AND auth.admin = true",
         "f.yaml:2:69: lookup l: auth.admin can only be used in the lookup's one `column = "
         "auth.claim`"},
        {"SELECT room_id FROM room_members WHERE row.user_id = 1 AND user_id = auth.sub",
         "f.yaml:2:46: lookup l: row.* cannot be used in a lookup: name the columns of "
         "room_members by themselves"},
        {"SELECT room_id FROM room_members WHERE user_id in (auth.sub)",
         "f.yaml:2:58: lookup l: auth.sub can only be used in the lookup's one `column = "
         "auth.claim`"},
        {"SELECT room_id FROM room_members WHERE user_id = auth.sub AND payload.x = 1",
         "f.yaml:2:69: lookup l: payload.* cannot be used in a lookup: name the columns of "
         "room_members by themselves"},
        {"SELECT room_id FROM room_members WHERE rooms.user_id = auth.sub",
         "f.yaml:2:46: lookup l: 'rooms' is not the lookup's table (room_members)"},
        {"SELECT rooms.room_id FROM room_members WHERE user_id = auth.sub",
         "f.yaml:2:14: lookup l: 'rooms' is not the table in FROM (room_members)"},
        {"SELECT room_id FROM room_members WHERE user_id = auth.sub AND room_id in other_id",
         "f.yaml:2:80: lookup l: IN needs a list (a, b, ...) here"},
        {"SELECT room_id FROM room_members WHERE user_id = $1",
         "f.yaml:2:56: lookup l: unexpected '$'"},
        {"SELECT room_id FROM room_members WHERE user_id = auth.sub AND 5",
         "f.yaml:2:69: lookup l: '5' is not a condition"},
        {"DELETE FROM room_members",
         "f.yaml:2:7: lookup l: a lookup is a query: SELECT <column> FROM <table> WHERE ..."},
        {"", "f.yaml:2:7: lookup l: empty query"},
    };
    for (const auto& [query, expected] : cases) {
        const load_result r = load_rules(one(query));
        EXPECT_EQ(r.rules, nullptr) << query;
        EXPECT_EQ(formatted(r), std::vector<std::string>{expected})
            << query << ": got" << joined(formatted(r));
    }
}

TEST(load_rules, refuses_bad_lookup_names_sections_and_references) {
    expect_errors({
        {"lookups not a mapping",
         "lookups: [a]\n",
         {"f.yaml:1:10: lookups: must map lookup names to their queries"}},
        {"not a query string",
         "lookups:\n  l: [SELECT]\n  m:\n",
         {"f.yaml:2:6: lookup l must be a query string: SELECT <column> FROM <table> WHERE "
          "<column> = auth.<claim>",
          "f.yaml:3:3: lookup m must be a query string: SELECT <column> FROM <table> WHERE "
          "<column> = auth.<claim>"}},
        {"bad names",
         "lookups:\n  My_Rooms: \"SELECT a FROM t WHERE b = auth.c\"\n"
         "  1st: \"SELECT a FROM t WHERE b = auth.c\"\n  my-rooms: \"SELECT a FROM t WHERE b = "
         "auth.c\"\n",
         {"f.yaml:2:13: lookup names are lower-case letters, digits and _, not starting with a "
          "digit: 'My_Rooms'",
          "f.yaml:3:8: lookup names are lower-case letters, digits and _, not starting with a "
          "digit: '1st'",
          "f.yaml:4:13: lookup names are lower-case letters, digits and _, not starting with a "
          "digit: 'my-rooms'"}},
        {"duplicate lookup",
         "lookups:\n  l: \"SELECT a FROM t WHERE b = auth.c\"\n  l: \"SELECT a FROM t WHERE b "
         "= auth.c\"\n",
         {"f.yaml:3:3: duplicate key 'l'"}},
        {"undefined lookup in rows, without a lookups section",
         "tables:\n  t:\n    rows: \"row.a in lookup.nope\"\n    columns: \"*\"\n",
         {"f.yaml:3:21: rows: lookup.nope is not defined (there is no lookups: section)"}},
        {"undefined lookup in a channel filter",
         "lookups:\n  l: \"SELECT a FROM t WHERE b = auth.c\"\n"
         "channels:\n  c:\n    filter: \"payload.x in lookup.m\"\n",
         {"f.yaml:5:27: filter: lookup.m is not defined (lookups: has l)"}},
        {"a lookup with errors is not also undefined where used",
         "lookups:\n  l: \"SELECT a FROM t\"\n"
         "tables:\n  t:\n    rows: \"row.a in lookup.l\"\n    columns: \"*\"\n",
         {"f.yaml:2:22: lookup l: a lookup needs exactly one `column = auth.claim` to find a "
          "subscriber's rows"}},
        {"lookups where claims cannot go",
         "lookups:\n  l: \"SELECT a FROM t WHERE b = auth.c\"\n"
         "tables:\n  t:\n    rows: \"row.a in [lookup.l]\"\n    columns: \"*\"\n",
         {"f.yaml:5:29: rows: list items must be literals or claims"}},
        {"a lookup has no fields",
         "tables:\n  t:\n    rows: \"row.a in lookup.l.x\"\n    columns: \"*\"\n",
         {"f.yaml:3:29: rows: lookup.l is a list of values: it has no fields (use it after IN)"}},
        {"lookup without a name",
         "tables:\n  t:\n    rows: \"row.a in lookup\"\n    columns: \"*\"\n",
         {"f.yaml:3:21: rows: a lookup is named lookup.name"}},
        {"a lookup as a LIKE pattern",
         "lookups:\n  l: \"SELECT a FROM t WHERE b = auth.c\"\n"
         "tables:\n  t:\n    rows: \"row.a like lookup.l\"\n    columns: \"*\"\n",
         {"f.yaml:5:23: rows: a LIKE pattern must be a value (a string or auth.*), not "
          "lookup.l"}},
    });
}

schema_map chat_schema() {
    schema_map m;
    m["public.room_members"] =
        table_schema{"public",
                     "room_members",
                     {{"room_id", column_family::integer, "bigint"},
                      {"user_id", column_family::text, "text"},
                      {"role", column_family::text, "text"},
                      {"tags", column_family::other, "text[]"},
                      {"meta", column_family::other, "jsonb"},
                      {"joined_at", column_family::timestamp, "timestamptz"}}};
    m["public.messages"] = table_schema{"public",
                                        "messages",
                                        {{"id", column_family::integer, "bigint"},
                                         {"room_id", column_family::integer, "integer"},
                                         {"name", column_family::text, "text"},
                                         {"mood", column_family::other, "mood"}}};
    return m;
}

TEST(load_rules, with_a_schema_checks_lookup_tables_columns_and_types) {
    const schema_map schema = chat_schema();
    const load_result ok = load_rules(
        "lookups:\n"
        "  my_rooms: \"SELECT room_id FROM room_members WHERE user_id = auth.sub AND role <> "
        "'banned' AND joined_at > '2024-01-01'\"\n"
        "  room_roles: \"SELECT role FROM room_members WHERE user_id = auth.sub\"\n"
        "tables:\n  messages:\n    rows: \"row.room_id in lookup.my_rooms and row.name not in "
        "lookup.room_roles and auth.x in lookup.my_rooms\"\n    columns: \"*\"\n"
        "channels:\n  typing:\n    filter: \"payload.room in lookup.room_roles\"\n",
        &schema);
    EXPECT_TRUE(ok.errors.empty()) << joined(formatted(ok));

    expect_errors(
        {
            {"missing lookup table",
             "lookups:\n  l: \"SELECT a FROM nosuch WHERE b = auth.sub\"\n",
             {"f.yaml:2:21: lookup l: table public.nosuch does not exist in the database"}},
            {"missing output, key and filter columns",
             "lookups:\n  l: \"SELECT nope FROM room_members WHERE nokey = auth.sub AND gone\"\n",
             {"f.yaml:2:14: lookup l: column nope does not exist in public.room_members",
              "f.yaml:2:43: lookup l: column nokey does not exist in public.room_members",
              "f.yaml:2:64: lookup l: column \"gone\" does not exist in public.room_members"}},
            {"filter literal of the wrong type",
             "lookups:\n  l: \"SELECT room_id FROM room_members WHERE user_id = auth.sub AND "
             "joined_at > 'soon'\"\n",
             {"f.yaml:2:81: lookup l: type mismatch: joined_at is timestamp, 'soon' is not"}},
            {"a filter condition that is not boolean",
             "lookups:\n  l: \"SELECT room_id FROM room_members WHERE user_id = auth.sub AND "
             "role\"\n",
             {"f.yaml:2:69: lookup l: column role is text, not boolean: compare it with "
              "something"}},
            {"json and array keys cannot meet a claim",
             "lookups:\n  a: \"SELECT room_id FROM room_members WHERE meta = auth.sub\"\n"
             "  b: \"SELECT room_id FROM room_members WHERE auth.sub = tags\"\n",
             {"f.yaml:2:46: lookup a: column meta is jsonb: a claim cannot be compared with it",
              "f.yaml:3:57: lookup b: column tags is text[]: a claim cannot be compared with it"}},
            {"a lookup that does not fit the database is still checked where it is used",
             "lookups:\n  l: \"SELECT room_id FROM room_members WHERE user_id = auth.sub AND "
             "gone\"\n"
             "tables:\n  messages:\n    rows: \"row.name in lookup.l\"\n    columns: \"*\"\n",
             {"f.yaml:2:69: lookup l: column \"gone\" does not exist in public.room_members",
              "f.yaml:5:12: lookup.l yields integer values; row.name is text"}},
            {"an integer lookup against a text column",
             "lookups:\n  my_rooms: \"SELECT room_id FROM room_members WHERE user_id = "
             "auth.sub\"\n"
             "tables:\n  messages:\n    rows: \"row.id = 1 or row.name in lookup.my_rooms\"\n"
             "    columns: \"*\"\n    updates: \"old.mood not in lookup.my_rooms\"\n",
             {"f.yaml:5:26: lookup.my_rooms yields integer values; row.name is text",
              "f.yaml:7:15: lookup.my_rooms yields integer values; old.mood is mood"}},
        },
        &schema);
}

TEST(qualify_table, adds_public_and_folds_unquoted_case) {
    struct {
        const char* in;
        const char* out;
    } cases[] = {
        {"messages", "public.messages"},
        {"Messages", "public.messages"},
        {"chat.messages", "chat.messages"},
        {"Chat.Messages", "chat.messages"},
        {"\"Messages\"", "public.Messages"},
        {"\"Chat\".\"Messages\"", "Chat.Messages"},
        {"chat.\"Messages\"", "chat.Messages"},
        {"\"Chat\".messages", "Chat.messages"},
        {"\"my.table\"", "public.my.table"},
        {"public.messages", "public.messages"},
        {"_t1", "public._t1"},
    };
    for (const auto& c : cases)
        EXPECT_EQ(qualify_table(c.in), c.out) << c.in;
}

TEST(qualify_table, a_dot_inside_a_quoted_schema_does_not_split_the_name) {
    // BUG (minor): qualify_table (loader.cpp) splits at the first '.', even inside quotes:
    // "\"a.b\".c" gives "\"a.b\".c" (both parts left raw) instead of "a.b.c".
    EXPECT_EQ(qualify_table("\"a.b\".c"), "a.b.c");
}

TEST(format, renders_file_line_column_and_message) {
    EXPECT_EQ(format(diagnostic{3, 14, "boom"}, "rules.yaml"), "rules.yaml:3:14: boom");
}

} // namespace
} // namespace pgpush::rules
