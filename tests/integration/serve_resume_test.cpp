// No change lost: clients resume after a position across their own reconnects, engine crashes
// (kill -9) and Postgres restarts, and receive exactly the committed changes they are entitled
// to, in commit order, once. History the log no longer has gives resync_required, never a gap.

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <thread>

#include <libpq-fe.h>

#include "tests/integration/serve_fixture.hpp"

namespace pgpush::testing {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

// A writer on its own connection: transactions of 1-50 rows into a few rooms, one after another,
// so commit order is id order. Survives a Postgres restart (reconnects; a transaction in flight
// may or may not have committed: Postgres itself is the truth the test compares against).
class burst_writer {
public:
    // `pace`: a pause between transactions, so the burst lasts while a test kills things.
    burst_writer(std::string url, int first_room, int rooms, int transactions, unsigned seed,
                 std::chrono::microseconds pace = 0us)
        : url_(std::move(url)), first_room_(first_room), rooms_(rooms), transactions_(transactions),
          pace_(pace), rng_(seed) {}
    ~burst_writer() { join(); }

    void start() {
        thread_ = std::thread([this] { run(); });
    }
    void join() {
        if (thread_.joinable()) thread_.join();
    }
    int committed() const { return committed_; }

private:
    void run() {
        PGconn* conn = nullptr;
        for (int t = 0; t < transactions_;) {
            if (!conn || PQstatus(conn) != CONNECTION_OK) {
                if (conn) PQfinish(conn);
                conn = PQconnectdb(url_.c_str());
                if (PQstatus(conn) != CONNECTION_OK) {
                    std::this_thread::sleep_for(50ms); // Postgres restarting: retry
                    continue;
                }
            }
            const int rows = std::uniform_int_distribution<int>(1, 50)(rng_);
            std::string sql = "INSERT INTO messages (room_id, sender_id, body) VALUES ";
            for (int i = 0; i < rows; ++i) {
                const int room =
                    first_room_ + std::uniform_int_distribution<int>(0, rooms_ - 1)(rng_);
                sql += (i ? "," : "") + ("(" + std::to_string(room) + ", 1, 'burst')");
            }
            PGresult* r = PQexec(conn, sql.c_str());
            const bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
            PQclear(r);
            if (ok) {
                ++t;
                ++committed_;
            }
            if (pace_.count()) std::this_thread::sleep_for(pace_);
        }
        if (conn) PQfinish(conn);
    }

    std::string url_;
    int first_room_, rooms_, transactions_;
    std::chrono::microseconds pace_;
    std::mt19937 rng_;
    std::atomic<int> committed_{0};
    std::thread thread_;
};

class resume_test : public serve_test {
protected:
    void SetUp() override {
        char tmpl[] = "/tmp/pgpush-resume-XXXXXX";
        data_dir_ = ::mkdtemp(tmpl);
        static int n = 0;
        name_ = "resume_" + std::to_string(::getpid()) + "_" + std::to_string(++n);
    }
    void TearDown() override {
        serve_test::TearDown();
        fs::remove_all(data_dir_);
    }

    // Starts (or restarts) the engine on this test's slot and data dir.
    void launch(std::vector<std::string> extra = {}) {
        rules_path_ = data_dir_ + "/rules.yaml";
        std::ofstream(rules_path_) << default_rules();
        std::vector<std::string> argv = {
            pgpush_binary(), "serve", "--db", pg().url(), "--rules", rules_path_, "--listen",
            "127.0.0.1:0", "--slot", name_, "--publication", name_, "--jwt-secret", test_secret,
            "--threads", "2", "--data-dir", data_dir_, "--heartbeat-interval", "200",
            // Confirm often, and make every sync slow: an engine that confirmed before its log
            // was durable would show it here (and lose changes on kill -9).
            "--status-interval", "20", "--test-log-sync-delay-ms", "30"};
        argv.insert(argv.end(), extra.begin(), extra.end());
        server_ = std::make_unique<subprocess>(argv);
        ASSERT_TRUE(server_->wait_for_stderr("streaming from slot")) << server_->stderr_text();
        ASSERT_TRUE(server_->wait_for_stderr("listening on")) << server_->stderr_text();
        const auto& err = server_->stderr_text();
        port_ = std::stoi(err.substr(err.find("listening on 127.0.0.1:") + 23));
    }

    // The log's durable LSN, from /metrics.
    std::optional<std::uint64_t> durable_lsn() {
        auto [status, body] = http_get(port(), "/metrics");
        const std::string name = "\npgpush_log_durable_lsn ";
        const auto at = body.find(name);
        if (status != 200 || at == std::string::npos) return std::nullopt;
        return std::stoull(body.substr(at + name.size()));
    }

    void crash() {
        server_->signal(SIGKILL);
        server_->wait();
        server_.reset();
    }

    // The ids of room `room`, in commit (= id) order.
    std::vector<std::int64_t> committed_ids(int room) {
        std::vector<std::int64_t> ids;
        const auto text = pg().query_value(
            "SELECT coalesce(string_agg(id::text, ',' ORDER BY id), '') FROM messages WHERE "
            "room_id = " +
            std::to_string(room));
        std::stringstream ss(text);
        for (std::string item; std::getline(ss, item, ',');)
            ids.push_back(std::stoll(item));
        return ids;
    }

    std::string name_;
};

// What one client has received of a subscription to one room: ids of inserts, in order, and the
// last position (the one to resume after).
struct received {
    std::vector<std::int64_t> ids;
    std::string position;

    // Reads events until `until` returns true or the connection ends; false on a timeout or an
    // unexpected message.
    template <typename Until>
    bool read(ws_client& c, const std::string& id, Until until) {
        while (!until()) {
            auto m = c.next(30s);
            if (!m) return false;
            const auto type = (*m)["type"];
            if (type == "insert" && (*m)["id"] == id) {
                ids.push_back((*m)["row"]["id"].get<std::int64_t>());
                position = (*m)["position"];
            } else if (type == "ready" && (*m)["id"] == id) {
                if (!(*m)["position"].get<std::string>().empty()) position = (*m)["position"];
            } else if (type != "pong") {
                ADD_FAILURE() << "unexpected " << m->dump();
                return false;
            }
        }
        return true;
    }
};

std::string room_query(int room) {
    return "SELECT id, room_id FROM messages WHERE room_id = " + std::to_string(room);
}

// Subscribes (resuming after `after` when given) and waits for ready.
void subscribe_to(ws_client& c, const std::string& id, int room, const std::string& after,
                  received& got) {
    json m = {{"type", "subscribe"}, {"id", id}, {"query", room_query(room)}};
    if (!after.empty()) m["after"] = after;
    c.send(m);
    bool ready = false;
    // Snapshot rows of a fresh subscription count as received too.
    while (!ready) {
        auto r = c.next(30s);
        ASSERT_TRUE(r) << "no ready";
        if ((*r)["type"] == "rows") {
            for (auto& row : (*r)["rows"])
                got.ids.push_back(row["id"].get<std::int64_t>());
        } else if ((*r)["type"] == "ready") {
            got.position = (*r)["position"];
            ready = true;
        } else if ((*r)["type"] == "insert") {
            got.ids.push_back((*r)["row"]["id"].get<std::int64_t>());
            got.position = (*r)["position"];
        } else {
            FAIL() << "before ready: " << r->dump();
        }
    }
}

// Sends a marker row into `room` after the writer is done and reads until it arrives.
void finish(ws_client& c, int room, received& got, pg_cluster& pg) {
    const auto marker =
        std::stoll(pg.query_value("INSERT INTO messages (room_id, sender_id, body) VALUES (" +
                                  std::to_string(room) + ", 0, 'marker') RETURNING id"));
    EXPECT_TRUE(got.read(c, "s", [&] { return !got.ids.empty() && got.ids.back() == marker; }))
        << "the marker never arrived";
}

void expect_exact(const std::vector<std::int64_t>& got, const std::vector<std::int64_t>& want) {
    ASSERT_EQ(got.size(), want.size())
        << "received " << got.size() << ", committed " << want.size();
    for (std::size_t i = 0; i < want.size(); ++i)
        ASSERT_EQ(got[i], want[i]) << "at " << i;
}

json alice(int room) {
    return json{{"sub", "alice"}, {"uid", 999}, {"rooms", {room}}};
}

int transactions() {
    const char* n = std::getenv("PGPUSH_RESUME_TRANSACTIONS");
    return n ? std::atoi(n) : 400;
}

TEST_F(resume_test, a_client_reconnecting_with_after_mid_burst_misses_and_repeats_nothing) {
    launch();
    const int room = 101;
    auto c = connect(alice(room));
    received got;
    subscribe_to(*c, "s", room, "", got);
    burst_writer writer(pg().url(), room, 2, transactions() * 4, 1, 2ms);
    writer.start();
    for (int round = 0; round < 3; ++round) {
        // Read a while, drop the connection, come back after the last position seen.
        const auto target = got.ids.size() + 200;
        ASSERT_TRUE(got.read(*c, "s", [&] { return got.ids.size() >= target; }))
            << "round " << round << ", " << got.ids.size() << " received, writer at "
            << writer.committed() << "\n"
            << server().stderr_text();
        c.reset();
        c = connect(alice(room));
        subscribe_to(*c, "s", room, got.position, got);
    }
    writer.join();
    finish(*c, room, got, pg());
    expect_exact(got.ids, committed_ids(room));
}

TEST_F(resume_test, kill_9_of_the_engine_mid_burst_loses_and_repeats_nothing) {
    launch();
    const int room = 201;
    auto c = connect(alice(room));
    received got;
    subscribe_to(*c, "s", room, "", got);
    burst_writer writer(pg().url(), room, 2, transactions() * 4, 2, 2ms);
    writer.start();
    const char* env = std::getenv("PGPUSH_KILL_ROUNDS");
    const int rounds = env ? std::atoi(env) : 3;
    std::mt19937 rng(7);
    for (int round = 0; round < rounds; ++round) {
        const auto target =
            got.ids.size() + std::uniform_int_distribution<std::size_t>(20, 300)(rng);
        ASSERT_TRUE(got.read(*c, "s", [&] { return got.ids.size() >= target; }))
            << "round " << round << ", " << got.ids.size() << " received\n"
            << server().stderr_text();
        crash();
        c.reset();
        launch();
        // Had the slot been confirmed past what the log made durable, the restarted engine
        // would have found its log short of the slot and begun a new epoch.
        EXPECT_EQ(server().stderr_text().find("set aside"), std::string::npos)
            << server().stderr_text();
        c = connect(alice(room));
        subscribe_to(*c, "s", room, got.position, got);
    }
    writer.join();
    finish(*c, room, got, pg());
    expect_exact(got.ids, committed_ids(room));
}

TEST_F(resume_test, postgres_restarting_mid_burst_loses_and_repeats_nothing) {
    launch();
    const int room = 301;
    auto c = connect(alice(room));
    received got;
    subscribe_to(*c, "s", room, "", got);
    burst_writer writer(pg().url(), room, 2, transactions() * 2, 3, 2ms);
    writer.start();
    const auto target = got.ids.size() + 300;
    ASSERT_TRUE(got.read(*c, "s", [&] { return got.ids.size() >= target; }));
    pg().restart("immediate");
    writer.join();
    finish(*c, room, got, pg());
    expect_exact(got.ids, committed_ids(room));
}

TEST_F(resume_test, the_slot_is_never_confirmed_past_what_the_log_holds_durably) {
    launch();
    const int room = 401;
    const auto slot_lsn = [&] {
        return std::stoull(pg().query_value(
            "SELECT (confirmed_flush_lsn - '0/0')::text FROM pg_replication_slots WHERE "
            "slot_name = '" +
            name_ + "'"));
    };
    // Where the slot was made: confirmed before anything was handed over.
    const auto created_at = slot_lsn();
    burst_writer writer(pg().url(), room, 1, transactions(), 4);
    writer.start();
    int samples = 0;
    while (writer.committed() < transactions() || samples < 5) {
        // Confirmed first, durable second: durable only grows, so confirmed <= durable holds
        // whenever the engine confirms only what is durable.
        const auto confirmed = slot_lsn();
        const auto durable = durable_lsn();
        ASSERT_TRUE(durable) << "no pgpush_log_durable_lsn in /metrics";
        EXPECT_LE(confirmed, std::max<std::uint64_t>(*durable, created_at));
        ++samples;
    }
    writer.join();
}

TEST_F(resume_test, positions_of_another_log_or_beyond_retention_answer_resync_required) {
    launch({"--log-segment-bytes", "8192", "--log-retain-bytes", "32768"});
    const int room = 501;
    auto c = connect(alice(room));
    received got;
    subscribe_to(*c, "s", room, "", got);
    const std::string first_position = got.position;
    burst_writer writer(pg().url(), room, 1, 200, 5);
    writer.start();
    writer.join();
    finish(*c, room, got, pg());
    // Live delivery does not wait for the log; retention does. Wait until the log is durable
    // past everything written (heartbeats mark it), so retention has run on all of it.
    const auto written =
        std::stoull(pg().query_value("SELECT (pg_current_wal_lsn() - '0/0')::text"));
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    for (;;) {
        if (durable_lsn().value_or(0) >= written) break;
        ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "the log never caught up";
        std::this_thread::sleep_for(20ms); // polling the metric: the event has no other signal
    }

    // The log kept only its last 32 KiB: the position from before the burst is gone.
    c->send(json{{"type", "subscribe"},
                 {"id", "old"},
                 {"query", room_query(room)},
                 {"after", first_position}});
    auto e = c->next_of("error", "old");
    ASSERT_TRUE(e);
    EXPECT_EQ((*e)["code"], "resync_required") << e->dump();

    // A position of another log (epoch): refused the same way.
    std::string other = got.position;
    other[0] = other[0] == '0' ? '1' : '0';
    c->send(json{
        {"type", "subscribe"}, {"id", "other"}, {"query", room_query(room)}, {"after", other}});
    e = c->next_of("error", "other");
    ASSERT_TRUE(e);
    EXPECT_EQ((*e)["code"], "resync_required") << e->dump();

    // Not a position at all: a bad message.
    c->send(json{{"type", "subscribe"},
                 {"id", "junk"},
                 {"query", room_query(room)},
                 {"after", "yesterday"}});
    e = c->next_of("error", "junk");
    ASSERT_TRUE(e);
    EXPECT_EQ((*e)["code"], "bad_message") << e->dump();

    // The connection still works, and a recent position resumes fine.
    received again;
    subscribe_to(*c, "new", room, got.position, again);
    EXPECT_TRUE(again.ids.empty());
}

TEST_F(resume_test, a_damaged_log_is_detected_on_start_and_old_positions_resync) {
    launch({"--log-segment-bytes", "8192"});
    const int room = 601;
    auto c = connect(alice(room));
    received got;
    subscribe_to(*c, "s", room, "", got);
    burst_writer writer(pg().url(), room, 1, 100, 6);
    writer.start();
    writer.join();
    finish(*c, room, got, pg());
    c.reset();
    server().signal(SIGTERM);
    ASSERT_EQ(server().wait().value_or(-1), 0);
    server_.reset();

    // Flip a byte in the first segment: history clients may need is no longer trustworthy.
    const auto first = fs::path(data_dir_) / (name_ + ".log") / "0000000000000001.seg";
    ASSERT_TRUE(fs::exists(first));
    {
        std::fstream f(first, std::ios::in | std::ios::out | std::ios::binary);
        f.seekg(200);
        char byte = 0;
        f.get(byte);
        f.seekp(200);
        f.put(static_cast<char>(byte ^ 0x55));
    }
    launch();
    EXPECT_NE(server().stderr_text().find("set aside"), std::string::npos)
        << server().stderr_text();
    c = connect(alice(room));
    c->send(json{
        {"type", "subscribe"}, {"id", "s2"}, {"query", room_query(room)}, {"after", got.position}});
    auto e = c->next_of("error", "s2");
    ASSERT_TRUE(e);
    EXPECT_EQ((*e)["code"], "resync_required") << e->dump();
}

} // namespace
} // namespace pgpush::testing
