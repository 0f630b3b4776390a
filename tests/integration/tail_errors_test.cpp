// Bad input to `pgpush tail`: each mistake is one line on stderr with a stable code and the fix,
// and a non-zero exit.

#include "tests/integration/tail_fixture.hpp"

namespace pgpush::testing {
namespace {

struct outcome {
    int status = -1;
    std::string err;
};

outcome run_tail(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {pgpush_binary(), "tail"};
    argv.insert(argv.end(), args.begin(), args.end());
    subprocess p(argv);
    auto st = p.wait();
    EXPECT_TRUE(st) << "pgpush tail did not exit";
    return {st.value_or(-1), p.stderr_text()};
}

// The last line of stderr: "pgpush tail: <code>: <message>".
std::string last_line(const std::string& s) {
    auto end = s.find_last_not_of('\n');
    if (end == std::string::npos) return "";
    auto start = s.rfind('\n', end);
    return s.substr(start == std::string::npos ? 0 : start + 1,
                    end - (start == std::string::npos ? 0 : start + 1) + 1);
}

void expect_error(const outcome& o, const std::string& code, const std::string& hint) {
    EXPECT_EQ(o.status, 1) << o.err;
    auto line = last_line(o.err);
    EXPECT_EQ(line.rfind("pgpush tail: " + code + ": ", 0), 0u) << o.err;
    EXPECT_NE(line.find(hint), std::string::npos) << o.err;
}

TEST_F(tail_test, unreachable_database) {
    expect_error(run_tail({"--db", "postgresql://postgres@127.0.0.1:1/postgres"}),
                 "connection_failed", "check --db");
}

TEST_F(tail_test, malformed_url) {
    expect_error(run_tail({"--db", "postgresql://[oops"}), "connection_failed", "check --db");
}

TEST_F(tail_test, password_never_shown) {
    auto o = run_tail({"--db", "postgresql://postgres:s3cret@127.0.0.1:1/postgres"});
    EXPECT_EQ(o.err.find("s3cret"), std::string::npos) << o.err;
}

TEST_F(tail_test, role_without_replication) {
    pg().exec("CREATE ROLE plain_user LOGIN");
    expect_error(run_tail({"--db", pg().url("postgres", "plain_user")}), "no_replication_privilege",
                 "ALTER ROLE \"plain_user\" REPLICATION");
}

TEST_F(tail_test, unknown_table) {
    expect_error(run_tail({"--db", pg().url(), "--table", "no_such_table"}), "unknown_table",
                 "no_such_table");
}

TEST_F(tail_test, table_not_in_named_publication) {
    pg().exec("CREATE TABLE pub_a (id int PRIMARY KEY)");
    pg().exec("CREATE TABLE pub_b (id int PRIMARY KEY)");
    pg().exec("CREATE PUBLICATION only_a FOR TABLE pub_a");
    expect_error(run_tail({"--db", pg().url(), "--publication", "only_a", "--table", "pub_b"}),
                 "table_not_in_publication", "ALTER PUBLICATION \"only_a\" ADD TABLE");
}

TEST_F(tail_test, named_publication_missing) {
    expect_error(run_tail({"--db", pg().url(), "--publication", "nope"}), "publication_missing",
                 "CREATE PUBLICATION");
}

TEST_F(tail_test, invalid_slot_name) {
    expect_error(run_tail({"--db", pg().url(), "--slot", "Bad-Name"}), "bad_name", "lower-case");
}

TEST_F(tail_test, bad_lsn_option) {
    expect_error(run_tail({"--db", pg().url(), "--endpos", "yesterday"}), "bad_option", "LSN");
}

TEST_F(tail_test, missing_db_is_a_usage_error) {
    auto o = run_tail({});
    EXPECT_NE(o.status, 0);
    EXPECT_NE(o.err.find("--db"), std::string::npos) << o.err;
}

TEST(tail_errors, wal_level_not_logical) {
    pg_cluster replica_level(cluster_options{{{"wal_level", "replica"}}});
    expect_error(run_tail({"--db", replica_level.url()}), "wal_level_not_logical",
                 "wal_level = logical");
}

} // namespace
} // namespace pgpush::testing
