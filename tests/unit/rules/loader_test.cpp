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
         {"f.yaml:2:1: unknown key 'chanels' (expected version, tables, channels)"}},
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
         {"f.yaml:3:13: allow: row.* cannot be used here (only auth.*)"}},
        {"payload and old in rows",
         "tables:\n  t:\n    rows: \"payload.x == 1 or old.y == 2\"\n    columns: \"*\"\n",
         {"f.yaml:3:12: rows: payload.* cannot be used here (only row.* auth.*)",
          "f.yaml:3:30: rows: old.* cannot be used here (only row.* auth.*)"}},
        {"payload in updates",
         "tables:\n  t:\n    rows: true\n    columns: \"*\"\n    updates: \"payload.x == 1\"\n",
         {"f.yaml:5:15: updates: payload.* cannot be used here (only row.* old.* auth.*)"}},
        {"row in a channel filter",
         "channels:\n  c:\n    filter: \"payload.room in auth.rooms and row.y == 1\"\n",
         {"f.yaml:3:45: filter: row.* cannot be used here (only auth.* payload.*)"}},
        {"payload in a channel allow",
         "channels:\n  c:\n    allow: \"payload.x == 1\"\n",
         {"f.yaml:3:13: allow: payload.* cannot be used here (only auth.*)"}},
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
    EXPECT_EQ(formatted(r),
              (std::vector<std::string>{
                  "f.yaml:1:10: version must be 1",
                  "f.yaml:4:13: allow: row.* cannot be used here (only auth.*)",
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
                  "f.yaml:13:14: filter: row.* cannot be used here (only auth.* payload.*)",
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
    //   f.yaml:3:12: rows: payload.* cannot be used here (only row.* auth.*)
    //   f.yaml:3:12: payload.* only exists in channel filters
    // and old.* in rows: likewise ("old.* cannot be used here" a second time).
    const schema_map schema = live_schema();
    expect_errors(
        {
            {"payload in rows",
             "tables:\n  messages:\n    rows: \"payload.x == 1\"\n    columns: \"*\"\n",
             {"f.yaml:3:12: rows: payload.* cannot be used here (only row.* auth.*)"}},
            {"old in rows",
             "tables:\n  messages:\n    rows: \"old.id == 1\"\n    columns: \"*\"\n",
             {"f.yaml:3:12: rows: old.* cannot be used here (only row.* auth.*)"}},
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
