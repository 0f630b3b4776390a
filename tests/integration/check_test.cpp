// `pgpush check rules.yaml [--db URL]`: every problem as file:line:col: message, exit 1 if any.

#include <cstdlib>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "tests/support/pg_cluster.hpp"
#include "tests/support/subprocess.hpp"

namespace pgpush::testing {
namespace {

struct outcome {
    int status = -1;
    std::string out;
};

outcome check(const std::string& yaml, const std::vector<std::string>& extra = {}) {
    char dir[] = "/tmp/pgpush-check-XXXXXX";
    std::string path = std::string(::mkdtemp(dir)) + "/rules.yaml";
    std::ofstream(path) << yaml;
    std::vector<std::string> argv = {pgpush_binary(), "check", path};
    argv.insert(argv.end(), extra.begin(), extra.end());
    subprocess p(argv);
    outcome o;
    while (auto line = p.read_line())
        o.out += *line + "\n";
    o.status = p.wait().value_or(-1);
    std::system(("rm -rf " + std::string(dir)).c_str());
    // Report paths relative to the file for stable expectations.
    for (auto at = o.out.find(path); at != std::string::npos; at = o.out.find(path)) {
        o.out.replace(at, path.size(), "rules.yaml");
    }
    o.out += p.stderr_text();
    return o;
}

TEST(check, the_shipped_rules_file_is_valid) {
    subprocess p({pgpush_binary(), "check", std::string(PGPUSH_SOURCE_DIR) + "/rules.yaml"});
    auto status = p.wait();
    EXPECT_EQ(status.value_or(-1), 0) << p.stderr_text();
}

TEST(check, the_shipped_rules_file_fits_the_example_schema) {
    pg_cluster pg;
    subprocess schema({pg_cluster::bindir() + "/psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d",
                       pg.url(), "-f",
                       std::string(PGPUSH_SOURCE_DIR) + "/examples/chat_schema.sql"});
    ASSERT_EQ(schema.wait().value_or(-1), 0) << schema.stderr_text();
    subprocess p({pgpush_binary(), "check", std::string(PGPUSH_SOURCE_DIR) + "/rules.yaml", "--db",
                  pg.url()});
    auto status = p.wait();
    EXPECT_EQ(status.value_or(-1), 0) << p.stderr_text();
}

TEST(check, reports_every_error_with_its_position) {
    auto o = check("tables:\n"
                   "  messages:\n"
                   "    rows: \"row.room_id in auth.rooms and\"\n"
                   "    colums: [id]\n"
                   "channels:\n"
                   "  typing:\n"
                   "    filter: \"row.x = 1\"\n");
    EXPECT_EQ(o.status, 1);
    EXPECT_EQ(
        o.out,
        "rules.yaml:3:5: public.messages: columns: is required (a list, or \"*\" for every "
        "column)\n"
        "rules.yaml:3:41: rows: unexpected end of input, expected a value or a name\n"
        "rules.yaml:4:5: unknown key 'colums' (expected allow, rows, columns, updates, "
        "max_subscriptions)\n"
        "rules.yaml:7:14: filter: row.* cannot be used here (only auth.* lookup.* payload.*)\n");
}

TEST(check, yaml_syntax_errors_have_positions_too) {
    auto o = check("tables:\n  messages: [unclosed\n");
    EXPECT_EQ(o.status, 1);
    EXPECT_EQ(o.out.rfind("rules.yaml:3:1: YAML syntax: ", 0), 0u) << o.out;
}

TEST(check, against_the_live_schema) {
    pg_cluster pg;
    pg.exec("CREATE TABLE messages (id bigint PRIMARY KEY, room_id int, body text, sent_at "
            "timestamptz)");
    auto ok = check("tables:\n  messages:\n    rows: \"row.room_id in auth.rooms and row.sent_at > "
                    "'2024-01-01'\"\n    columns: [id, body]\n",
                    {"--db", pg.url()});
    EXPECT_EQ(ok.status, 0) << ok.out;
    EXPECT_NE(ok.out.find("ok (1 table(s), 0 channel(s), checked against the database)"),
              std::string::npos)
        << ok.out;

    auto bad = check("tables:\n"
                     "  messages:\n"
                     "    rows: \"row.room = 1 or row.room_id = 'seven'\"\n"
                     "    columns: [id, secret]\n"
                     "  nosuch:\n"
                     "    rows: \"true\"\n"
                     "    columns: \"*\"\n",
                     {"--db", pg.url()});
    EXPECT_EQ(bad.status, 1);
    EXPECT_NE(bad.out.find("rules.yaml:3:12: column \"room\" does not exist in public.messages"),
              std::string::npos)
        << bad.out;
    EXPECT_NE(bad.out.find("rules.yaml:4:19: column secret does not exist in public.messages"),
              std::string::npos)
        << bad.out;
    EXPECT_NE(bad.out.find("rules.yaml:6:5: table public.nosuch does not exist in the database"),
              std::string::npos)
        << bad.out;
}

// Literals meeting a column are read by the column type's input function, as Postgres reads
// them: what it would refuse is an error here, with its position.
TEST(check, literals_postgres_would_refuse_for_the_column_type) {
    pg_cluster pg;
    pg.exec("CREATE TABLE nums (id int PRIMARY KEY, a int, b bigint, s text)");
    auto bad = check("tables:\n"
                     "  nums:\n"
                     "    rows: \"row.a < '2.50'\"\n"
                     "    columns: \"*\"\n"
                     "    updates: \"row.b <= '9223372036854775808'\"\n",
                     {"--db", pg.url()});
    EXPECT_EQ(bad.status, 1) << bad.out;
    EXPECT_NE(bad.out.find("rules.yaml:3:20: type mismatch: row.a is integer, '2.50' is not"),
              std::string::npos)
        << bad.out;
    EXPECT_NE(bad.out.find("rules.yaml:5:24: type mismatch: row.b is integer, "
                           "'9223372036854775808' is not"),
              std::string::npos)
        << bad.out;
    auto ok = check("tables:\n"
                    "  nums:\n"
                    "    rows: \"row.a < ' 7 ' and row.b <= '9223372036854775807' and row.s like "
                    "auth.prefix\"\n"
                    "    columns: \"*\"\n",
                    {"--db", pg.url()});
    EXPECT_EQ(ok.status, 0) << ok.out;
    // A LIKE pattern Postgres would refuse needs no database to be found.
    auto like = check("tables:\n  nums:\n    rows: 'row.s like ''a\\'''\n    columns: \"*\"\n");
    EXPECT_EQ(like.status, 1) << like.out;
    EXPECT_NE(like.out.find("rules.yaml:3:23: rows: LIKE pattern must not end with escape "
                            "character"),
              std::string::npos)
        << like.out;
}

// Lookups: their tables are read from the database too; a missing table or column, a literal
// the column's type refuses and an output that cannot meet the column it is compared with are
// errors at their place in the query.
TEST(check, lookups_against_the_live_schema) {
    pg_cluster pg;
    pg.exec(
        "CREATE TABLE messages (id bigint PRIMARY KEY, room_id int, sender_id text, body text)");
    pg.exec("CREATE TABLE room_members (room_id int, user_id text, joined timestamptz, "
            "PRIMARY KEY (room_id, user_id))");
    pg.exec("CREATE TABLE friendships (user_id text, friend_id text, accepted boolean, "
            "PRIMARY KEY (user_id, friend_id))");
    const std::string good =
        "lookups:\n"
        "  my_rooms: \"SELECT room_id FROM room_members WHERE user_id = auth.sub\"\n"
        "  my_friends: \"SELECT friend_id FROM friendships WHERE user_id = auth.sub AND "
        "accepted\"\n"
        "tables:\n"
        "  messages:\n"
        "    rows: \"row.room_id in lookup.my_rooms or row.sender_id in lookup.my_friends\"\n"
        "    columns: \"*\"\n"
        "channels:\n"
        "  typing:\n"
        "    filter: \"payload.room in lookup.my_rooms\"\n";
    auto ok = check(good, {"--db", pg.url()});
    EXPECT_EQ(ok.status, 0) << ok.out;
    EXPECT_NE(ok.out.find("ok (1 table(s), 1 channel(s), 2 lookup(s), checked against the "
                          "database)"),
              std::string::npos)
        << ok.out;
    auto offline = check(good);
    EXPECT_EQ(offline.status, 0) << offline.out;

    auto bad = check("lookups:\n"
                     "  gone: \"SELECT room_id FROM nosuch WHERE user_id = auth.sub\"\n"
                     "  typo: \"SELECT room_id FROM room_members WHERE usr_id = auth.sub AND "
                     "room_id = 1\"\n"
                     "  my_rooms: \"SELECT room_id FROM room_members WHERE user_id = auth.sub AND "
                     "joined > 'soon'\"\n"
                     "tables:\n"
                     "  messages:\n"
                     "    rows: \"row.body in lookup.my_rooms\"\n"
                     "    columns: \"*\"\n",
                     {"--db", pg.url()});
    EXPECT_EQ(bad.status, 1) << bad.out;
    EXPECT_EQ(bad.out,
              "rules.yaml:2:30: lookup gone: table public.nosuch does not exist in the database\n"
              "rules.yaml:3:49: lookup typo: column usr_id does not exist in public.room_members\n"
              "rules.yaml:4:85: lookup my_rooms: type mismatch: joined is timestamp, 'soon' is "
              "not\n"
              "rules.yaml:7:12: lookup.my_rooms yields integer values; row.body is text\n");

    // Without a database only the grammar is checked: that file passes.
    auto bad_offline = check("lookups:\n"
                             "  gone: \"SELECT room_id FROM nosuch WHERE user_id = auth.sub\"\n"
                             "tables:\n  messages:\n    rows: \"row.body in lookup.gone\"\n"
                             "    columns: \"*\"\n");
    EXPECT_EQ(bad_offline.status, 0) << bad_offline.out;

    // The grammar, with positions, needs no database.
    auto grammar = check("lookups:\n"
                         "  l: \"SELECT room_id FROM room_members WHERE user_id >= auth.sub\"\n"
                         "tables:\n  messages:\n    rows: \"row.room_id in lookup.nope\"\n"
                         "    columns: \"*\"\n");
    EXPECT_EQ(grammar.status, 1) << grammar.out;
    EXPECT_EQ(grammar.out,
              "rules.yaml:2:46: lookup l: user_id >= auth.sub cannot be indexed: only `=`\n"
              "rules.yaml:5:27: rows: lookup.nope is not defined (lookups: has l)\n");
}

TEST(check, unreadable_file) {
    subprocess p({pgpush_binary(), "check", "/nonexistent/rules.yaml"});
    std::string out;
    while (auto line = p.read_line())
        out += *line;
    EXPECT_EQ(p.wait().value_or(-1), 1);
    EXPECT_EQ(out, "/nonexistent/rules.yaml:1:1: cannot read the file");
}

} // namespace
} // namespace pgpush::testing
