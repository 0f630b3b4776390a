// `pgpush tail` end to end: every committed change, once, in commit order, across schema
// changes, reconnects and server restarts.

#include <csignal>

#include "tests/integration/tail_fixture.hpp"

namespace pgpush::testing {
namespace {

using nlohmann::json;

// Terminates the walsender serving `slot` and waits until it is gone.
void kill_walsender(pg_cluster& pg, const std::string& slot) {
    pg.exec("SELECT pg_terminate_backend(active_pid, 10000) FROM pg_replication_slots WHERE "
            "slot_name = '" +
            slot + "' AND active_pid IS NOT NULL");
}

TEST_F(tail_test, prints_insert_update_delete_in_commit_order) {
    pg().exec("CREATE TABLE basic (id int PRIMARY KEY, body text)");
    auto tail = start_tail({"--table", "basic"});
    pg().exec("INSERT INTO basic VALUES (1, 'one')");
    pg().exec("BEGIN; UPDATE basic SET body = 'uno' WHERE id = 1; INSERT INTO basic VALUES (2, "
              "'two'); COMMIT");
    pg().exec("DELETE FROM basic WHERE id = 1");

    json a = next(*tail), b = next(*tail), c = next(*tail), d = next(*tail);
    EXPECT_EQ(a["table"], "public.basic");
    EXPECT_EQ(a["op"], "insert");
    EXPECT_EQ(a["row"], json({{"id", 1}, {"body", "one"}}));
    EXPECT_EQ(a["old"], nullptr);

    EXPECT_EQ(b["op"], "update");
    EXPECT_EQ(b["row"], json({{"id", 1}, {"body", "uno"}}));
    EXPECT_EQ(b["old"], nullptr)
        << "default replica identity sends no old row unless the key moves";
    EXPECT_EQ(c["op"], "insert");
    EXPECT_EQ(c["row"]["id"], 2);
    // Same transaction: same commit position, consecutive indexes, same xid and commit time.
    EXPECT_EQ(b["position"].get<std::string>().substr(0, 16),
              c["position"].get<std::string>().substr(0, 16));
    EXPECT_EQ(b["position"].get<std::string>().substr(17), "00000000");
    EXPECT_EQ(c["position"].get<std::string>().substr(17), "00000001");
    EXPECT_EQ(b["xid"], c["xid"]);
    EXPECT_EQ(b["commit_time"], c["commit_time"]);

    EXPECT_EQ(d["op"], "delete");
    EXPECT_EQ(d["row"], nullptr);
    EXPECT_EQ(d["old"], json({{"id", 1}})) << "only the key is known for a default-identity delete";

    // Positions strictly increase, and text order is position order.
    EXPECT_LT(a["position"].get<std::string>(), b["position"].get<std::string>());
    EXPECT_LT(c["position"].get<std::string>(), d["position"].get<std::string>());
    EXPECT_NE(a["xid"], b["xid"]);
}

TEST_F(tail_test, full_replica_identity_shows_the_whole_old_row) {
    pg().exec("CREATE TABLE fullid (id int PRIMARY KEY, body text, n int)");
    pg().exec("ALTER TABLE fullid REPLICA IDENTITY FULL");
    pg().exec("INSERT INTO fullid VALUES (1, 'a', 10)");
    auto tail = start_tail({"--table", "fullid"});
    pg().exec("UPDATE fullid SET n = 11");
    pg().exec("DELETE FROM fullid");
    json u = next(*tail), d = next(*tail);
    EXPECT_EQ(u["old"], json({{"id", 1}, {"body", "a"}, {"n", 10}}));
    EXPECT_EQ(u["row"], json({{"id", 1}, {"body", "a"}, {"n", 11}}));
    EXPECT_EQ(d["old"], json({{"id", 1}, {"body", "a"}, {"n", 11}}));
}

TEST_F(tail_test, key_change_sends_only_the_old_key) {
    pg().exec("CREATE TABLE keymove (id int PRIMARY KEY, body text)");
    pg().exec("INSERT INTO keymove VALUES (1, 'a')");
    auto tail = start_tail({"--table", "keymove"});
    pg().exec("UPDATE keymove SET id = 2");
    json u = next(*tail);
    EXPECT_EQ(u["old"], json({{"id", 1}}))
        << "non-key columns of a key tuple are not sent, not null";
    EXPECT_EQ(u["row"], json({{"id", 2}, {"body", "a"}}));
}

TEST_F(tail_test, schema_change_mid_stream_uses_new_columns_from_then_on) {
    pg().exec("CREATE TABLE evolving (id int PRIMARY KEY, a text)");
    auto tail = start_tail({"--table", "evolving"});
    pg().exec("INSERT INTO evolving VALUES (1, 'x')");
    pg().exec("ALTER TABLE evolving ADD COLUMN b int DEFAULT 7");
    pg().exec("INSERT INTO evolving VALUES (2, 'y', 8)");
    pg().exec("ALTER TABLE evolving DROP COLUMN a");
    pg().exec("INSERT INTO evolving VALUES (3, 9)");
    EXPECT_EQ(next(*tail)["row"], json({{"id", 1}, {"a", "x"}}));
    EXPECT_EQ(next(*tail)["row"], json({{"id", 2}, {"a", "y"}, {"b", 8}}));
    EXPECT_EQ(next(*tail)["row"], json({{"id", 3}, {"b", 9}}));
}

TEST_F(tail_test, unchanged_toast_is_marked_never_shown_as_null) {
    pg().exec("CREATE TABLE toasty (id int PRIMARY KEY, big text, n int)");
    // EXTERNAL: stored out of line uncompressed, so 10 kB is surely TOASTed.
    pg().exec("ALTER TABLE toasty ALTER COLUMN big SET STORAGE EXTERNAL");
    pg().exec("INSERT INTO toasty VALUES (1, repeat('x', 10000), 1)");
    auto tail = start_tail({"--table", "toasty"});
    pg().exec("UPDATE toasty SET n = 2");
    json u = next(*tail);
    EXPECT_EQ(u["row"], json({{"id", 1}, {"n", 2}}));
    EXPECT_EQ(u["unchanged_toast"], json({"big"}));
}

TEST_F(tail_test, unchanged_toast_is_filled_from_a_full_old_row) {
    pg().exec("CREATE TABLE toasty_full (id int PRIMARY KEY, big text, n int)");
    pg().exec("ALTER TABLE toasty_full ALTER COLUMN big SET STORAGE EXTERNAL");
    pg().exec("ALTER TABLE toasty_full REPLICA IDENTITY FULL");
    pg().exec("INSERT INTO toasty_full VALUES (1, repeat('y', 10000), 1)");
    auto tail = start_tail({"--table", "toasty_full"});
    pg().exec("UPDATE toasty_full SET n = 2");
    json u = next(*tail);
    EXPECT_EQ(u["row"]["big"], std::string(10000, 'y'));
    EXPECT_EQ(u["row"]["n"], 2);
    EXPECT_FALSE(u.contains("unchanged_toast"));
}

TEST_F(tail_test, truncate_is_one_line_per_table) {
    pg().exec("CREATE TABLE trunc_a (id int PRIMARY KEY)");
    pg().exec("CREATE TABLE trunc_b (id int PRIMARY KEY)");
    auto tail = start_tail({"--table", "trunc_a", "--table", "trunc_b"});
    pg().exec("TRUNCATE trunc_a, trunc_b RESTART IDENTITY");
    json a = next(*tail), b = next(*tail);
    EXPECT_EQ(a["op"], "truncate");
    EXPECT_EQ(b["op"], "truncate");
    std::set<std::string> tables = {a["table"], b["table"]};
    EXPECT_EQ(tables, (std::set<std::string>{"public.trunc_a", "public.trunc_b"}));
    EXPECT_EQ(a["restart_identity"], true);
}

TEST_F(tail_test, logical_messages_and_notify) {
    pg().exec("CREATE TABLE chatter (id int PRIMARY KEY)");
    auto tail = start_tail({"--table", "chatter", "--listen", "room_7"});
    ASSERT_TRUE(tail->wait_for_stderr("listening on 1 channel")) << tail->stderr_text();
    pg().exec("SELECT pg_logical_emit_message(false, 'audit', 'hello \"world\"')");
    json m = next(*tail);
    EXPECT_EQ(m["op"], "message");
    EXPECT_EQ(m["prefix"], "audit");
    EXPECT_EQ(m["content"], "hello \"world\"");
    EXPECT_EQ(m["transactional"], false);

    pg().exec("BEGIN; INSERT INTO chatter VALUES (1); SELECT pg_logical_emit_message(true, 'tx', "
              "'in'); COMMIT");
    json i = next(*tail), t = next(*tail);
    EXPECT_EQ(i["op"], "insert");
    EXPECT_EQ(t["op"], "message");
    EXPECT_EQ(t["transactional"], true);
    EXPECT_EQ(t["xid"], i["xid"]);

    pg().exec("NOTIFY room_7, '{\"typing\": 42}'");
    json n = next(*tail);
    EXPECT_EQ(n["op"], "notify");
    EXPECT_EQ(n["channel"], "room_7");
    EXPECT_EQ(n["payload"], "{\"typing\": 42}");
}

TEST_F(tail_test, reconnects_after_walsender_dies_without_loss_or_duplicate) {
    pg().exec("CREATE TABLE resilient (id int PRIMARY KEY)");
    auto tail = start_tail({"--table", "resilient", "--slot", "resilient_slot"});
    for (int i = 1; i <= 5; ++i)
        pg().exec("INSERT INTO resilient VALUES (" + std::to_string(i) + ")");
    for (int i = 1; i <= 5; ++i)
        EXPECT_EQ(next(*tail)["row"]["id"], i);

    kill_walsender(pg(), "resilient_slot");
    for (int i = 6; i <= 10; ++i)
        pg().exec("INSERT INTO resilient VALUES (" + std::to_string(i) + ")");
    ASSERT_TRUE(tail->wait_for_stderr("streaming from slot", 2)) << tail->stderr_text();
    // Exactly 6..10 and then the sentinel: nothing lost, nothing repeated.
    pg().exec("INSERT INTO resilient VALUES (100)");
    for (int i : {6, 7, 8, 9, 10, 100})
        EXPECT_EQ(next(*tail)["row"]["id"], i);
}

TEST_F(tail_test, walsender_killed_mid_transaction_resumes_exactly_once) {
    pg().exec("CREATE TABLE big_txn (id int PRIMARY KEY)");
    auto tail = start_tail({"--table", "big_txn", "--slot", "big_txn_slot"});
    const int rows = 200000;
    pg().exec("INSERT INTO big_txn SELECT generate_series(1, " + std::to_string(rows) + ")");
    // The first line proves the transaction is streaming; kill its walsender while it is.
    EXPECT_EQ(next(*tail)["row"]["id"], 1);
    kill_walsender(pg(), "big_txn_slot");
    for (int i = 2; i <= rows; ++i) {
        auto line = tail->read_line();
        ASSERT_TRUE(line) << "row " << i << " missing; stderr:\n" << tail->stderr_text();
        ASSERT_EQ(json::parse(*line)["row"]["id"], i) << "lost or repeated a row at " << i;
    }
    pg().exec("INSERT INTO big_txn VALUES (0)");
    EXPECT_EQ(next(*tail)["row"]["id"], 0) << "nothing repeated after the transaction";
}

TEST_F(tail_test, survives_a_postgres_restart) {
    pg().exec("CREATE TABLE restartable (id int PRIMARY KEY)");
    auto tail = start_tail({"--table", "restartable", "--slot", "restart_slot"});
    pg().exec("INSERT INTO restartable VALUES (1)");
    EXPECT_EQ(next(*tail)["row"]["id"], 1);
    pg().restart("immediate");
    pg().exec("INSERT INTO restartable VALUES (2)");
    pg().exec("INSERT INTO restartable VALUES (3)");
    EXPECT_EQ(next(*tail)["row"]["id"], 2);
    EXPECT_EQ(next(*tail)["row"]["id"], 3);
    EXPECT_NE(tail->stderr_text().find("reconnecting"), std::string::npos);
}

TEST_F(tail_test, temporary_slot_lost_with_its_connection_is_reported) {
    pg().exec("CREATE TABLE ephemeral (id int PRIMARY KEY)");
    auto tail = start_tail({"--table", "ephemeral"});
    std::string slot = pg().query_value(
        "SELECT slot_name FROM pg_replication_slots WHERE temporary AND slot_name LIKE "
        "'pgpush_tail_%' AND active_pid IS NOT NULL LIMIT 1");
    ASSERT_FALSE(slot.empty());
    kill_walsender(pg(), slot);
    auto status = tail->wait();
    ASSERT_TRUE(status);
    EXPECT_EQ(*status, 1);
    EXPECT_NE(tail->stderr_text().find("temporary_slot_lost"), std::string::npos)
        << tail->stderr_text();
}

TEST_F(tail_test, dropped_slot_is_reported_not_recreated) {
    pg().exec("CREATE TABLE orphan (id int PRIMARY KEY)");
    auto tail = start_tail({"--table", "orphan", "--slot", "doomed_slot"});
    // Kill the walsender and drop the slot in one round trip, before tail reconnects (it waits
    // at least 50 ms); should tail still win the race, try again.
    for (int attempt = 0; attempt < 20; ++attempt) {
        try {
            pg().exec("SELECT pg_terminate_backend(active_pid, 10000) FROM pg_replication_slots "
                      "WHERE slot_name = 'doomed_slot' AND active_pid IS NOT NULL; "
                      "SELECT pg_drop_replication_slot('doomed_slot')");
            break;
        } catch (const std::exception&) {
        }
    }
    auto status = tail->wait();
    ASSERT_TRUE(status);
    EXPECT_EQ(*status, 1);
    EXPECT_NE(tail->stderr_text().find("slot_lost"), std::string::npos) << tail->stderr_text();
    EXPECT_EQ(pg().query_value("SELECT count(*) FROM pg_replication_slots WHERE slot_name = "
                               "'doomed_slot'"),
              "0");
}

TEST_F(tail_test, endpos_drains_a_backlog_and_exits) {
    pg().exec("CREATE TABLE backlog (id int PRIMARY KEY)");
    pg().exec("CREATE PUBLICATION backlog_pub FOR TABLE backlog");
    pg().exec("SELECT pg_create_logical_replication_slot('backlog_slot', 'pgoutput')");
    pg().exec("INSERT INTO backlog SELECT generate_series(1, 1000)");
    pg().exec("INSERT INTO backlog VALUES (1001)");
    std::string end = pg().query_value("SELECT pg_current_wal_lsn()");
    subprocess tail({pgpush_binary(), "tail", "--db", pg().url(), "--slot", "backlog_slot",
                     "--publication", "backlog_pub", "--endpos", end});
    for (int i = 1; i <= 1001; ++i) {
        auto line = tail.read_line();
        ASSERT_TRUE(line) << tail.stderr_text();
        ASSERT_EQ(json::parse(*line)["row"]["id"], i);
    }
    auto status = tail.wait();
    ASSERT_TRUE(status);
    EXPECT_EQ(*status, 0) << tail.stderr_text();
    EXPECT_FALSE(tail.read_line()) << "nothing after the end position";
    // Everything printed was confirmed: a second run has nothing left to print.
    subprocess again({pgpush_binary(), "tail", "--db", pg().url(), "--slot", "backlog_slot",
                      "--publication", "backlog_pub", "--endpos", end});
    auto again_status = again.wait();
    ASSERT_TRUE(again_status);
    EXPECT_EQ(*again_status, 0) << again.stderr_text();
    EXPECT_FALSE(again.read_line());
}

TEST_F(tail_test, sigterm_stops_cleanly) {
    pg().exec("CREATE TABLE stoppable (id int PRIMARY KEY)");
    auto tail = start_tail({"--table", "stoppable"});
    tail->signal(SIGTERM);
    auto status = tail->wait();
    ASSERT_TRUE(status);
    EXPECT_EQ(*status, 0) << tail->stderr_text();
}

} // namespace
} // namespace pgpush::testing
