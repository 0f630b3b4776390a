// Faults an operator (or the machine) causes while pgpush serves: Postgres down or restarting,
// a full or failing disk, the publication altered from outside, a damaged change log, a rules
// reload behind a long transaction, snapshots whose clients stop reading or leave, and SIGTERM
// under load. In each the engine keeps its promise: nobody else notices, nothing is confirmed
// that is not durable, and a client either gets every change or is told to resync.

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <set>
#include <thread>

#include <libpq-fe.h>

#include "tests/integration/serve_fixture.hpp"
#include "tests/support/fault_shim.hpp"

namespace pgpush::testing {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

const json alice = {{"sub", "alice"}, {"uid", 10}, {"rooms", {1}}};

// A connection of the test's own that stays open (a long transaction, a steady writer).
class pg_session {
public:
    explicit pg_session(const std::string& url) : conn_(PQconnectdb(url.c_str())) {
        if (PQstatus(conn_) != CONNECTION_OK)
            throw std::runtime_error(std::string("connect: ") + PQerrorMessage(conn_));
    }
    ~pg_session() { PQfinish(conn_); }
    void exec(const std::string& sql) {
        PGresult* r = PQexec(conn_, sql.c_str());
        const auto status = PQresultStatus(r);
        std::string error = PQresultErrorMessage(r);
        PQclear(r);
        if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK)
            throw std::runtime_error(sql + ": " + error);
    }

private:
    PGconn* conn_;
};

class faults_test : public serve_test {
protected:
    // Waits (with a deadline) until `pred` holds; the last value of `what()` explains a failure.
    template <class P>
    static bool eventually(P pred, std::chrono::milliseconds timeout = 30s) {
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        while (std::chrono::steady_clock::now() < deadline) {
            if (pred()) return true;
            std::this_thread::sleep_for(50ms);
        }
        return pred();
    }

    json healthz() {
        auto [code, body] = http_get(port(), "/healthz");
        auto j = json::parse(body, nullptr, false);
        if (j.is_discarded()) j = json::object();
        j["http_status"] = code;
        return j;
    }

    // A Prometheus sample without labels, or -1.
    double metric(const std::string& name) {
        const auto text = "\n" + http_get(port(), "/metrics").second;
        const auto key = "\n" + name + " ";
        auto at = text.find(key);
        return at == std::string::npos ? -1 : std::stod(text.substr(at + key.size()));
    }

    std::uint64_t lsn_value(const std::string& sql) {
        const auto v = pg().query_value(sql);
        return v.empty() ? 0 : std::stoull(v);
    }
    std::uint64_t slot_confirmed() {
        return lsn_value("SELECT (confirmed_flush_lsn - '0/0')::bigint FROM pg_replication_slots "
                         "WHERE slot_name = '" +
                         slot() + "'");
    }
    std::uint64_t wal_now() { return lsn_value("SELECT (pg_current_wal_lsn() - '0/0')::bigint"); }

    // Subscribes to room 1 and returns the position `ready` gave.
    std::string subscribe_room1(ws_client& c, const std::string& id) {
        c.send(json{{"type", "subscribe"},
                    {"id", id},
                    {"query", "SELECT id, body FROM messages WHERE room_id = 1"}});
        while (auto m = c.next()) {
            if ((*m)["type"] == "ready") return (*m)["position"];
            if ((*m)["type"] != "rows") {
                ADD_FAILURE() << m->dump();
                return "";
            }
        }
        ADD_FAILURE() << "no ready";
        return "";
    }

    // The ids of `count` inserts a client receives (in order), and the last one's position.
    std::pair<std::vector<int>, std::string> inserts(ws_client& c, std::size_t count,
                                                     std::chrono::milliseconds timeout = 30s) {
        std::vector<int> ids;
        std::string last;
        while (ids.size() < count) {
            auto m = c.next(timeout);
            if (!m) break;
            if ((*m)["type"] == "insert") {
                ids.push_back((*m)["row"]["id"]);
                last = (*m)["position"];
            } else {
                ADD_FAILURE() << "unexpected: " << m->dump();
            }
        }
        return {ids, last};
    }

    static std::vector<int> range(int from, int to) {
        std::vector<int> v;
        for (int i = from; i <= to; ++i)
            v.push_back(i);
        return v;
    }

    void insert_rows(int n, int room = 1) {
        for (int i = 0; i < n; ++i) {
            pg().exec("INSERT INTO messages (room_id, sender_id, body) VALUES (" +
                      std::to_string(room) + ", 1, 'm')");
        }
    }

    // Starts the engine under the fault shim (faults in its data directory, none yet); the
    // control file is set_faults(control_, ...) from then on.
    void launch_with_faults(std::vector<std::string> extra) {
        if (control_.empty()) {
            control_ = fs::temp_directory_path() /
                       ("pgpush-faults-" + std::to_string(getpid()) + "-" +
                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
            set_faults(control_, "");
        }
        prepare();
        launch(default_rules(), {std::move(extra), fault_env(data_dir(), control_), {}, true});
    }

    void TearDown() override {
        serve_test::TearDown();
        if (!control_.empty()) fs::remove(control_);
    }

    fs::path control_;

    // Stops the engine and expects it to exit with `code`.
    void expect_exit(int code) {
        auto status = server_->wait(60s);
        EXPECT_EQ(status.value_or(-1), code) << server_->stderr_text();
        server_.reset();
    }
};

// ---- Postgres away ----

TEST_F(faults_test, first_subscription_while_postgres_is_down_is_unavailable_then_works) {
    reset_data();
    start();
    auto c = connect(alice);
    pg().stop("fast");
    // The table was never described: that needs the database, which is down. The engine answers
    // and lives on (it used to abort here).
    c->send(json{{"type", "subscribe"}, {"id", "s"}, {"query", "SELECT id FROM messages"}});
    auto m = c->next(60s);
    ASSERT_TRUE(m) << server().stderr_text();
    EXPECT_EQ((*m)["type"], "error") << m->dump();
    EXPECT_EQ((*m)["code"], "unavailable") << m->dump();
    EXPECT_EQ((*m)["id"], "s");
    EXPECT_TRUE(eventually([&] { return healthz()["database"] == "down"; })) << healthz().dump();
    pg().start();
    ASSERT_TRUE(eventually([&] { return healthz()["status"] == "ok"; }, 60s))
        << healthz().dump() << server().stderr_text();
    EXPECT_EQ(subscribe_room1(*c, "t").substr(0, 17).size(), 17u);
    insert_rows(1);
    EXPECT_EQ(inserts(*c, 1).first.size(), 1u);
}

TEST_F(faults_test, postgres_restarting_while_pgpush_starts_is_waited_for) {
    reset_data();
    pg().stop("fast");
    launch(default_rules(), {{}, {}, {}, false});
    ASSERT_TRUE(server().wait_for_stderr("not reachable yet", 2, 30s)) << server().stderr_text();
    pg().start();
    await_started(60s);
    ASSERT_TRUE(eventually([&] { return healthz()["status"] == "ok"; })) << healthz().dump();
    auto c = connect(alice);
    subscribe_room1(*c, "s");
    insert_rows(1);
    EXPECT_EQ(inserts(*c, 1).first.size(), 1u);
}

TEST_F(faults_test, sigterm_while_waiting_for_postgres_exits_cleanly) {
    reset_data();
    pg().stop("fast");
    launch(default_rules(), {{}, {}, {}, false});
    ASSERT_TRUE(server().wait_for_stderr("not reachable yet", 1, 30s)) << server().stderr_text();
    server().signal(SIGTERM);
    expect_exit(0);
    pg().start();
}

// ---- the disk ----

TEST_F(faults_test, a_full_data_dir_pauses_the_stream_and_it_resumes_by_itself) {
    reset_data();
    launch_with_faults({"--status-interval", "100"});
    auto c = connect(alice);
    subscribe_room1(*c, "s");
    insert_rows(1);
    ASSERT_EQ(inserts(*c, 1).first.size(), 1u);
    ASSERT_TRUE(eventually([&] { return slot_confirmed() >= wal_now() - 1024; }));

    set_faults(control_, "write=ENOSPC\n");
    const auto before = wal_now();
    insert_rows(20);
    ASSERT_TRUE(eventually([&] { return healthz()["log"]["state"] == "stalled"; }))
        << healthz().dump() << server().stderr_text();
    auto h = healthz();
    EXPECT_EQ(h["http_status"], 503);
    EXPECT_EQ(h["status"], "degraded");
    EXPECT_EQ(h["replication"], "paused") << h.dump();
    EXPECT_EQ(metric("pgpush_log_state"), 1);
    EXPECT_TRUE(server().wait_for_stderr("change log stalled", 1, 5s)) << server().stderr_text();
    // Nothing written is confirmed: the slot stays before the inserts (WAL waits in Postgres).
    EXPECT_LT(slot_confirmed(), before + 1) << "confirmed past what is durable";
    // The client stays connected meanwhile (pings answered, no close). What it had been sent
    // before the stream paused is kept.
    c->send(json{{"type", "ping"}, {"data", 1}});
    std::vector<int> ids;
    while (auto m = c->next()) {
        if ((*m)["type"] == "pong") break;
        ASSERT_EQ((*m)["type"], "insert") << m->dump();
        ids.push_back((*m)["row"]["id"]);
    }
    ASSERT_FALSE(c->closed()) << "the connection must stay up while the disk is full";

    set_faults(control_, "");
    auto rest = inserts(*c, 20 - ids.size(), 60s).first;
    ids.insert(ids.end(), rest.begin(), rest.end());
    EXPECT_EQ(ids.size(), 20u) << "every insert arrives once space returns";
    EXPECT_TRUE(std::is_sorted(ids.begin(), ids.end()));
    EXPECT_EQ(std::set<int>(ids.begin(), ids.end()).size(), ids.size()) << "none twice";
    ASSERT_TRUE(eventually([&] { return healthz()["status"] == "ok"; })) << healthz().dump();
    EXPECT_TRUE(eventually([&] { return slot_confirmed() > before; }));
    EXPECT_GE(metric("pgpush_log_stalls_total"), 1);
}

TEST_F(faults_test, no_descriptor_for_a_new_segment_stalls_the_log_then_it_carries_on) {
    reset_data();
    launch_with_faults({"--log-segment-bytes", "2048"});
    auto c = connect(alice);
    subscribe_room1(*c, "s");
    set_faults(control_, "open=EMFILE\n");
    insert_rows(30); // rolls segments: each roll opens a file
    ASSERT_TRUE(eventually([&] { return healthz()["log"]["state"] == "stalled"; }))
        << healthz().dump();
    set_faults(control_, "");
    auto [ids, last] = inserts(*c, 30, 60s);
    EXPECT_EQ(ids.size(), 30u);
    ASSERT_TRUE(eventually([&] { return healthz()["status"] == "ok"; })) << healthz().dump();
}

TEST_F(faults_test, a_failed_sync_stops_the_engine_without_confirming_and_a_restart_loses_nothing) {
    reset_data();
    launch_with_faults({"--status-interval", "100"});
    auto c = connect(alice);
    subscribe_room1(*c, "s");
    insert_rows(1);
    auto [first, first_position] = inserts(*c, 1);
    ASSERT_EQ(first.size(), 1u);
    ASSERT_TRUE(eventually([&] { return slot_confirmed() >= wal_now() - 1024; }));
    const auto confirmed_before = slot_confirmed();

    set_faults(control_, "fdatasync=EIO\nfsync=EIO\n");
    const auto before = wal_now();
    insert_rows(20);
    // A failed sync is final: the engine stops (exit 1) and says why.
    auto status = server_->wait(60s);
    EXPECT_EQ(status.value_or(-1), 1) << server().stderr_text();
    EXPECT_NE(server().stderr_text().find("change log failed"), std::string::npos)
        << server().stderr_text();
    server_.reset();
    // The slot was not confirmed past what was durable before the failure.
    EXPECT_LE(slot_confirmed(), before) << "confirmed past a failed sync";
    EXPECT_GE(slot_confirmed(), confirmed_before);

    // Restarted on a healthy disk, the engine re-reads from the slot what was not confirmed: the
    // client resumes after what it had and gets the 20 inserts, each once.
    set_faults(control_, "");
    launch_with_faults({"--status-interval", "100"});
    auto again = connect(alice);
    again->send(json{{"type", "subscribe"},
                     {"id", "s"},
                     {"query", "SELECT id, body FROM messages WHERE room_id = 1"},
                     {"after", first_position}});
    auto [ids, last] = inserts(*again, 20, 60s);
    EXPECT_EQ(ids, range(first[0] + 1, first[0] + 20));
    auto m = again->next_of("ready");
    ASSERT_TRUE(m);
}

// ---- the change log's files ----

TEST_F(faults_test, an_emptied_middle_segment_is_resync_required_not_a_gap) {
    reset_data();
    start(default_rules(), {"--log-segment-bytes", "1024"});
    auto c = connect(alice);
    subscribe_room1(*c, "s");
    insert_rows(60);
    auto [ids, last] = inserts(*c, 60);
    ASSERT_EQ(ids.size(), 60u);
    // The first insert's position, to resume after.
    c.reset();
    server().signal(SIGTERM);
    expect_exit(0);
    std::vector<fs::path> segments;
    for (const auto& e : fs::directory_iterator(fs::path(data_dir()) / (slot() + ".log"))) {
        if (e.path().extension() == ".seg") segments.push_back(e.path());
    }
    std::sort(segments.begin(), segments.end());
    ASSERT_GE(segments.size(), 4u) << "the test needs several segments";
    fs::resize_file(segments[segments.size() / 2], 0);

    start(default_rules(), {"--log-segment-bytes", "1024"});
    EXPECT_NE(server().stderr_text().find("set aside"), std::string::npos)
        << server().stderr_text();
    auto again = connect(alice);
    // Any position of the old log is refused: its history has a hole.
    again->send(json{{"type", "subscribe"},
                     {"id", "s"},
                     {"query", "SELECT id, body FROM messages WHERE room_id = 1"},
                     {"after", last}});
    auto m = again->next();
    ASSERT_TRUE(m);
    EXPECT_EQ((*m)["type"], "error") << m->dump();
    EXPECT_EQ((*m)["code"], "resync_required") << m->dump();
}

// ---- the publication ----

TEST_F(faults_test, a_table_dropped_from_the_publication_is_detected_resynced_and_re_added) {
    reset_data();
    start(default_rules(), {"--heartbeat-interval", "200"});
    auto c = connect(alice);
    subscribe_room1(*c, "s");
    insert_rows(1);
    auto [first, position] = inserts(*c, 1);
    ASSERT_EQ(first.size(), 1u);

    pg().exec("ALTER PUBLICATION " + slot() + " DROP TABLE messages");
    insert_rows(1); // committed while the table is not published: never streamed
    // The subscription's copy missed that row: it ends, and the engine says why.
    auto m = c->next(30s);
    ASSERT_TRUE(m) << server().stderr_text();
    EXPECT_EQ((*m)["type"], "error") << m->dump();
    EXPECT_EQ((*m)["code"], "resync_required") << m->dump();
    EXPECT_TRUE(server().wait_for_stderr("no longer carries public.messages", 1, 10s))
        << server().stderr_text();
    EXPECT_GE(metric("pgpush_publication_gaps_total"), 1);
    // pgpush manages the publication: the table is added back, and health turns green again.
    ASSERT_TRUE(eventually([&] {
        auto h = healthz();
        return h["status"] == "ok" && h["publication"]["missing"].empty();
    })) << healthz().dump();
    EXPECT_FALSE(pg().query_value("SELECT 1 FROM pg_publication_tables WHERE pubname = '" + slot() +
                                  "' AND tablename = 'messages'")
                     .empty());
    // A fresh subscription sees both rows (the snapshot reads the table) and then live ones.
    auto fresh = connect(alice);
    auto rows = subscribe(*fresh, "s", "SELECT id FROM messages WHERE room_id = 1");
    EXPECT_EQ(rows.size(), 2u) << rows.dump();
    insert_rows(1);
    EXPECT_EQ(inserts(*fresh, 1).first.size(), 1u);
    // A resume from before the hole must resync, never skip the lost row.
    auto resumed = connect(alice);
    resumed->send(json{{"type", "subscribe"},
                       {"id", "s"},
                       {"query", "SELECT id, body FROM messages WHERE room_id = 1"},
                       {"after", position}});
    bool resynced = false;
    while (auto r = resumed->next(10s)) {
        if ((*r)["type"] == "error") {
            resynced = (*r)["code"] == "resync_required";
            break;
        }
        if ((*r)["type"] == "ready") break;
    }
    EXPECT_TRUE(resynced) << "a resume across the hole got no resync_required";
}

TEST_F(faults_test,
       a_reload_repairs_the_publication_and_ends_the_subscriptions_that_missed_changes) {
    reset_data();
    start(); // the prober looks every 5 s: the reload comes first
    auto c = connect(alice);
    subscribe_room1(*c, "s");
    pg().exec("ALTER PUBLICATION " + slot() + " DROP TABLE messages");
    insert_rows(1);
    server().signal(SIGHUP);
    auto m = c->next(30s);
    ASSERT_TRUE(m) << server().stderr_text();
    EXPECT_EQ((*m)["code"], "resync_required") << m->dump();
    ASSERT_TRUE(eventually([&] { return healthz()["status"] == "ok"; })) << healthz().dump();
    auto fresh = connect(alice);
    EXPECT_EQ(subscribe(*fresh, "s", "SELECT id FROM messages WHERE room_id = 1").size(), 1u);
}

// ---- blocking work off the stream's thread ----

TEST_F(faults_test, a_rules_reload_behind_a_long_transaction_keeps_delivering) {
    reset_data();
    start();
    auto c = connect(alice);
    subscribe_room1(*c, "s");
    ASSERT_EQ(pg().query_value("SELECT relreplident FROM pg_class WHERE relname = 'audit'"), "d");
    // A long transaction holds a lock on `audit`; the new rules add it, which needs ACCESS
    // EXCLUSIVE for REPLICA IDENTITY FULL.
    pg_session holder(pg().url());
    holder.exec("BEGIN");
    holder.exec("SELECT * FROM audit");
    rewrite_rules(R"(
tables:
  messages:
    rows: "row.room_id in auth.rooms or row.sender_id = auth.uid"
    columns: [id, room_id, sender_id, body, sent_at]
  rooms:
    rows: "true"
    columns: [id, name]
  audit:
    rows: "true"
    columns: [id, what]
)");
    ASSERT_TRUE(server().wait_for_stderr("rules reloaded", 1, 30s)) << server().stderr_text();
    // Live delivery goes on while the reload's DDL waits for the lock (which it would for as long
    // as the transaction lasts, were it not given up).
    insert_rows(3);
    auto [ids, last] = inserts(*c, 3, 20s);
    EXPECT_EQ(ids.size(), 3u) << "delivery stalled behind the reload's DDL";
    ASSERT_TRUE(server().wait_for_stderr("waiting for a lock on public.audit", 1, 30s))
        << server().stderr_text();
    // The new rules are in force (the publication could be changed at once).
    auto other = connect(alice);
    subscribe(*other, "a", "SELECT id FROM audit");
    holder.exec("COMMIT");
}

// ---- snapshots ----

TEST_F(faults_test, a_client_gone_mid_snapshot_releases_its_transaction) {
    reset_data();
    pg().exec("INSERT INTO messages (room_id, sender_id, body) SELECT 1, 1, repeat('x', 400) "
              "FROM generate_series(1, 60000)");
    start();
    const std::string open_snapshots =
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgpush-snapshot' AND "
        "state LIKE 'idle in transaction%'";
    {
        auto c = connect(alice);
        c->stop_reading();
        c->send(json{{"type", "subscribe"}, {"id", "s"}, {"query", "SELECT * FROM messages"}});
        // The worker waits for the client, its REPEATABLE READ transaction open.
        ASSERT_TRUE(eventually([&] { return pg().query_value(open_snapshots) == "1"; }))
            << server().stderr_text();
    } // the client disconnects
    EXPECT_TRUE(eventually([&] { return pg().query_value(open_snapshots) == "0"; }))
        << "a snapshot transaction outlived its client";
    // It was cancelled, not run to its end for nobody.
    EXPECT_LT(metric("pgpush_snapshot_rows_total"), 60000);
    // Another subscription is served.
    auto d = connect(alice);
    d->send(json{
        {"type", "subscribe"}, {"id", "s"}, {"query", "SELECT id FROM messages WHERE id <= 10"}});
    auto m = d->next_of("ready", "s", 30s);
    EXPECT_TRUE(m);
}

TEST_F(faults_test, clients_that_stop_reading_cannot_hold_every_snapshot_worker) {
    reset_data();
    // 24 MB: far more than socket buffers hold, so a client that reads nothing stalls it.
    pg().exec("INSERT INTO messages (room_id, sender_id, body) SELECT 1, 1, repeat('x', 400) "
              "FROM generate_series(1, 60000)");
    start(default_rules(), {"--snapshot-workers", "2", "--snapshot-timeout", "2"});
    std::vector<std::unique_ptr<ws_client>> stuck;
    for (int i = 0; i < 2; ++i) {
        stuck.push_back(connect(alice));
        stuck.back()->stop_reading();
        stuck.back()->send(
            json{{"type", "subscribe"}, {"id", "s"}, {"query", "SELECT * FROM messages"}});
    }
    // Both workers are busy with clients that read nothing; a third client still gets served
    // once the snapshots' time is up.
    auto d = connect(alice);
    d->send(json{
        {"type", "subscribe"}, {"id", "s"}, {"query", "SELECT id FROM messages WHERE id <= 10"}});
    auto m = d->next_of("ready", "s", 60s);
    EXPECT_TRUE(m) << server().stderr_text();
    // The stuck ones hear why, once they read.
    for (auto& s : stuck) {
        s->resume_reading();
        std::optional<json> e;
        std::size_t rows = 0;
        while (auto r = s->next(60s)) {
            if ((*r)["type"] == "rows") {
                rows += (*r)["rows"].size();
                continue;
            }
            e = r;
            break;
        }
        ASSERT_TRUE(e) << "after " << rows << " rows, nothing";
        // A client whose socket took the whole result after all (the kernel decides how much a
        // receive buffer holds) has it; any other timed out.
        if ((*e)["type"] == "ready") {
            EXPECT_EQ(rows, 60000u);
            continue;
        }
        EXPECT_EQ((*e)["type"], "error") << e->dump() << " after " << rows << " rows";
        EXPECT_EQ((*e)["code"], "unavailable") << e->dump();
        EXPECT_EQ((*e)["message"].get<std::string>().find("SELECT"), std::string::npos);
    }
}

// ---- shutting down ----

TEST_F(faults_test, sigterm_under_load_closes_every_client_with_1001) {
    reset_data();
    start();
    constexpr int n = 100;
    std::vector<std::unique_ptr<ws_client>> clients;
    for (int i = 0; i < n; ++i) {
        clients.push_back(connect({{"sub", "user" + std::to_string(i)}, {"rooms", {1}}}));
        subscribe(*clients.back(), "s", "SELECT id, body FROM messages WHERE room_id = 1");
    }
    // Every client reads as fast as it can, as real ones do, until the server closes it.
    std::vector<int> codes(n, -1);
    std::vector<std::thread> readers;
    for (int i = 0; i < n; ++i) {
        readers.emplace_back([&, i] {
            while (clients[i]->next(60s)) {
            }
            codes[i] = clients[i]->closed() ? clients[i]->close_code() : -2;
        });
    }
    std::atomic<bool> stop{false};
    std::atomic<int> written{0};
    // About 2,000 rows/s: 20 rows every 10 ms.
    std::thread writer([&] {
        pg_session w(pg().url());
        auto next = std::chrono::steady_clock::now();
        while (!stop) {
            w.exec("INSERT INTO messages (room_id, sender_id, body) SELECT 1, 1, 'load' FROM "
                   "generate_series(1, 20)");
            written += 20;
            next += 10ms;
            std::this_thread::sleep_until(next);
        }
    });
    // Under way: the engine is delivering when it is told to stop.
    ASSERT_TRUE(eventually([&] { return written > 2000; }));
    server().signal(SIGTERM);
    for (auto& r : readers)
        r.join();
    stop = true;
    writer.join();
    for (int i = 0; i < n; ++i)
        EXPECT_EQ(codes[i], 1001) << "client " << i << ": " << clients[i]->close_reason();
    expect_exit(0);
}

} // namespace
} // namespace pgpush::testing
