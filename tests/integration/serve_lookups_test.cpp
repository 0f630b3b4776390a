// Rules that read the database: `lookup.my_rooms` from a room_members table, kept current from
// the change stream. A member added sees the room's history arrive (reset + snapshot); a member
// removed stops seeing the room at the commit that removes them, on live delivery and on resume;
// and under random membership churn every client's copy equals what Postgres answers.

#include <cstdlib>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include <libpq-fe.h>

#include "tests/integration/serve_fixture.hpp"
#include "tests/support/live_copy.hpp"

namespace pgpush::testing {
namespace {

using nlohmann::json;

const char* lookup_rules = R"(
lookups:
  my_rooms: "SELECT room_id FROM room_members WHERE user_id = auth.sub"
tables:
  messages:
    rows: "row.room_id in lookup.my_rooms"
    columns: [id, room_id, sender_id, body]
  room_members:
    rows: "row.user_id = auth.sub"
    columns: [user_id, room_id]
channels:
  typing:
    filter: "payload.room in lookup.my_rooms"
)";

class lookups_test : public serve_test {
protected:
    static void SetUpTestSuite() {
        serve_test::SetUpTestSuite();
        cluster_->exec("CREATE TABLE IF NOT EXISTS room_members (user_id text NOT NULL, room_id "
                       "int NOT NULL, PRIMARY KEY (user_id, room_id))");
    }

    void SetUp() override {
        reset_data();
        pg().exec("TRUNCATE room_members");
    }

    static json user(const std::string& sub) { return json{{"sub", sub}}; }

    // Reads what `c` has been sent for subscription `id` into `copy` until `done()` holds.
    static bool read_until(ws_client& c, live_copy& copy, const std::function<bool()>& done,
                           std::chrono::milliseconds timeout = 20s) {
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        while (!done()) {
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                deadline - std::chrono::steady_clock::now());
            if (left.count() <= 0) return false;
            auto m = c.next(left);
            if (!m) return false;
            copy.apply(*m);
        }
        return true;
    }

    // What Postgres answers for `sub`: the ids of the messages of its rooms, with the lookup as
    // a subquery.
    std::set<std::string> expected(const std::string& sub) {
        const auto text = pg().query_value(
            "SELECT coalesce(string_agg(id::text, ',' ORDER BY id), '') FROM messages WHERE "
            "room_id IN (SELECT room_id FROM room_members WHERE user_id = '" +
            sub + "')");
        std::set<std::string> ids;
        std::stringstream ss(text);
        for (std::string item; std::getline(ss, item, ',');)
            ids.insert(item);
        return ids;
    }

    static std::set<std::string> ids_of(const live_copy& copy) {
        std::set<std::string> ids;
        for (const auto& [k, row] : copy.rows)
            ids.insert(k);
        return ids;
    }

    long insert_message(int room) {
        return std::stol(
            pg().query_value("INSERT INTO messages (room_id, sender_id, body) VALUES (" +
                             std::to_string(room) + ", 1, 'm') RETURNING id"));
    }
};

TEST_F(lookups_test, members_see_their_rooms_and_a_new_member_gets_the_history) {
    pg().exec("INSERT INTO room_members VALUES ('alice', 1), ('bob', 2)");
    insert_message(1);
    insert_message(2);
    start(lookup_rules);
    auto alice = connect(user("alice"));
    auto rows = subscribe(*alice, "m", "SELECT id, room_id, body FROM messages");
    ASSERT_EQ(rows.size(), 1u) << rows.dump();
    EXPECT_EQ(rows[0]["room_id"], 1);
    const long in_two = insert_message(2);
    const long in_one = insert_message(1);
    live_copy copy;
    for (auto& r : rows)
        copy.rows[r["id"].dump()] = r;
    copy.ready = true;
    ASSERT_TRUE(read_until(*alice, copy, [&] { return copy.rows.count(std::to_string(in_one)); }));
    EXPECT_FALSE(copy.rows.count(std::to_string(in_two))) << "a room alice is not in";

    // Added to room 2: its history arrives, then its live changes.
    pg().exec("INSERT INTO room_members VALUES ('alice', 2)");
    ASSERT_TRUE(read_until(*alice, copy, [&] { return copy.resets == 1 && copy.ready; }));
    EXPECT_EQ(ids_of(copy), expected("alice"));
    const long later = insert_message(2);
    ASSERT_TRUE(read_until(*alice, copy, [&] { return copy.rows.count(std::to_string(later)); }));
    EXPECT_EQ(ids_of(copy), expected("alice"));
}

TEST_F(lookups_test, a_removed_member_gets_nothing_of_the_room_after_the_removal_commits) {
    pg().exec("INSERT INTO room_members VALUES ('alice', 9), ('alice', 1)");
    start(lookup_rules);
    auto alice = connect(user("alice"));
    live_copy copy;
    alice->send(json{
        {"type", "subscribe"}, {"id", "m"}, {"query", "SELECT id, room_id, body FROM messages"}});
    ASSERT_TRUE(read_until(*alice, copy, [&] { return copy.ready; }));
    const long before = insert_message(9);
    ASSERT_TRUE(read_until(*alice, copy, [&] { return copy.rows.count(std::to_string(before)); }));
    const std::string held = copy.position; // a position from before the removal

    // The removal and, in the same breath, more of the room's messages.
    pg().exec("BEGIN; DELETE FROM room_members WHERE user_id = 'alice' AND room_id = 9; "
              "INSERT INTO messages (room_id, sender_id, body) VALUES (9, 1, 'same txn'); COMMIT");
    std::vector<long> after;
    for (int i = 0; i < 5; ++i)
        after.push_back(insert_message(9));
    const long marker = insert_message(1);

    // Everything alice is sent from here: a reset at the removal's position, the new result
    // (no room 9), and no event of room 9 positioned after the reset.
    std::string reset_at;
    std::vector<json> events;
    while (!copy.rows.count(std::to_string(marker))) {
        auto m = alice->next();
        ASSERT_TRUE(m) << "the marker never arrived";
        if ((*m)["type"] == "reset") reset_at = (*m)["position"];
        if ((*m)["type"] == "insert" || (*m)["type"] == "update") events.push_back(*m);
        copy.apply(*m);
    }
    ASSERT_FALSE(reset_at.empty()) << "no reset for the removal";
    EXPECT_GT(reset_at, held);
    for (const auto& e : events) {
        if (e["row"]["room_id"] == 9) {
            EXPECT_LT(e["position"].get<std::string>(), reset_at)
                << "room 9 after the removal: " << e.dump();
        }
    }
    for (const auto& [id, row] : copy.rows)
        EXPECT_NE(row["room_id"], 9) << "the copy still holds room 9: " << row.dump();
    EXPECT_EQ(ids_of(copy), expected("alice"));

    // Resuming from before the removal would replay room 9 under today's result: refused.
    auto again = connect(user("alice"));
    again->send(json{{"type", "subscribe"},
                     {"id", "m"},
                     {"query", "SELECT id, room_id, body FROM messages"},
                     {"after", held}});
    auto m = again->next();
    ASSERT_TRUE(m);
    EXPECT_EQ((*m)["type"], "error") << m->dump();
    EXPECT_EQ((*m)["code"], "resync_required") << m->dump();
    // From after the removal, a resume is served.
    again->send(json{{"type", "subscribe"},
                     {"id", "n"},
                     {"query", "SELECT id, room_id, body FROM messages"},
                     {"after", copy.position}});
    auto r = again->next_of("ready", "n");
    EXPECT_TRUE(r);
}

TEST_F(lookups_test, typing_reaches_members_only_and_stops_at_removal) {
    pg().exec("INSERT INTO room_members VALUES ('alice', 3)");
    start(lookup_rules);
    auto alice = connect(user("alice"));
    auto mallory = connect(user("mallory"));
    for (auto* c : {alice.get(), mallory.get()}) {
        c->send(json{{"type", "listen"}, {"id", "t"}, {"channel", "typing"}});
        ASSERT_TRUE(c->next_of("ready", "t"));
    }
    pg().exec("NOTIFY typing, '{\"room\": 3, \"who\": \"bob\"}'");
    auto got = alice->next_of("notify", "t");
    ASSERT_TRUE(got);
    EXPECT_EQ((*got)["payload"]["who"], "bob");
    // NOTIFY does not travel with the WAL: a test that changes membership waits until the
    // engine has it (mallory's own membership rows reach her through the stream, after the
    // lookup is updated) before notifying.
    subscribe(*mallory, "mine", "SELECT user_id, room_id FROM room_members");
    pg().exec("DELETE FROM room_members WHERE user_id = 'alice'");
    pg().exec("INSERT INTO room_members VALUES ('mallory', 3)");
    ASSERT_TRUE(mallory->next_of("insert", "mine"));
    // Now mallory is a member she hears room 3; alice no longer does.
    pg().exec("NOTIFY typing, '{\"room\": 3, \"who\": \"carol\"}'");
    auto m = mallory->next_of("notify", "t");
    ASSERT_TRUE(m) << server().stderr_text();
    EXPECT_EQ((*m)["payload"]["who"], "carol");
    pg().exec("NOTIFY typing, '{\"room\": 4, \"who\": \"dan\"}'");
    alice->send(json{{"type", "ping"}, {"data", 1}});
    auto next = alice->next();
    ASSERT_TRUE(next);
    EXPECT_EQ((*next)["type"], "pong") << "alice heard: " << next->dump();
}

TEST_F(lookups_test, a_lookup_table_over_the_row_limit_is_a_start_up_error) {
    pg().exec("INSERT INTO room_members SELECT 'u' || g, 1 FROM generate_series(1, 50) g");
    launch(lookup_rules, {{"--lookup-max-rows", "10"}, {}, {}, false});
    auto status = server().wait(60s);
    EXPECT_EQ(status.value_or(-1), 3) << server().stderr_text();
    EXPECT_NE(server().stderr_text().find("lookup-max-rows"), std::string::npos)
        << server().stderr_text();
    server_.reset();
}

int churn_rounds() {
    const char* n = std::getenv("PGPUSH_LOOKUP_ROUNDS");
    return n ? std::atoi(n) : 300; // about 1,800 copies compared
}

// Random membership churn (adds, removes, moves between rooms, messages moved between rooms,
// the member table truncated) while a writer posts messages; at each quiescent point every
// client's copy equals Postgres' answer with the lookup as a subquery.
TEST_F(lookups_test, under_random_membership_churn_every_copy_equals_postgres) {
    constexpr int users = 6, rooms = 5;
    std::mt19937 rng(12345);
    auto pick = [&](int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng); };
    for (int u = 0; u < users; ++u) {
        pg().exec("INSERT INTO room_members VALUES ('u" + std::to_string(u) + "', " +
                  std::to_string(pick(rooms)) + ")");
    }
    for (int i = 0; i < 30; ++i)
        insert_message(pick(rooms));
    start(lookup_rules);
    std::vector<std::unique_ptr<ws_client>> clients;
    std::vector<live_copy> copies(users);
    for (int u = 0; u < users; ++u) {
        clients.push_back(connect(user("u" + std::to_string(u))));
        clients.back()->send(json{{"type", "subscribe"},
                                  {"id", "m"},
                                  {"query", "SELECT id, room_id, body FROM messages"},
                                  {"transactions", u % 2 == 1}});
    }
    const int rounds = churn_rounds();
    std::size_t compared = 0;
    for (int round = 0; round < rounds; ++round) {
        // A writer posts messages while the membership churns.
        std::thread writer([&, seed = round] {
            std::mt19937 wrng(static_cast<unsigned>(seed) * 7919u + 1);
            PGconn* conn = PQconnectdb(pg().url().c_str());
            for (int i = 0; i < 10; ++i) {
                const int room = std::uniform_int_distribution<int>(0, rooms - 1)(wrng);
                PQclear(PQexec(conn, ("INSERT INTO messages (room_id, sender_id, body) VALUES (" +
                                      std::to_string(room) + ", 1, 'w')")
                                         .c_str()));
            }
            PQfinish(conn);
        });
        const int ops = 1 + pick(4);
        for (int o = 0; o < ops; ++o) {
            const std::string u = "u" + std::to_string(pick(users));
            const std::string r = std::to_string(pick(rooms)), r2 = std::to_string(pick(rooms));
            switch (pick(8)) {
            case 0:
            case 1:
                pg().exec("INSERT INTO room_members VALUES ('" + u + "', " + r +
                          ") ON CONFLICT DO NOTHING");
                break;
            case 2:
            case 3:
                pg().exec("DELETE FROM room_members WHERE user_id = '" + u +
                          "' AND room_id = " + r);
                break;
            case 4: // moved between rooms, in one transaction
                pg().exec("BEGIN; DELETE FROM room_members WHERE user_id = '" + u +
                          "'; INSERT INTO room_members VALUES ('" + u + "', " + r2 + "); COMMIT");
                break;
            case 5: // a member's row itself moved to another room
                pg().exec("UPDATE room_members SET room_id = " + r2 + " WHERE user_id = '" + u +
                          "' AND room_id = " + r +
                          " AND NOT EXISTS (SELECT 1 FROM room_members WHERE user_id = '" + u +
                          "' AND room_id = " + r2 + ")");
                break;
            case 6: // messages moved between rooms
                pg().exec("UPDATE messages SET room_id = " + r2 +
                          " WHERE id IN (SELECT id FROM "
                          "messages WHERE room_id = " +
                          r + " ORDER BY id LIMIT 2)");
                break;
            case 7:
                if (pick(10) == 0) {
                    pg().exec("TRUNCATE room_members");
                } else {
                    pg().exec("DELETE FROM messages WHERE id IN (SELECT id FROM messages ORDER BY "
                              "random() LIMIT 1)");
                }
                break;
            }
        }
        writer.join();
        // Quiescent: every copy must come to equal Postgres' answer.
        for (int u = 0; u < users; ++u) {
            const std::string sub = "u" + std::to_string(u);
            const auto want = expected(sub);
            const bool same = read_until(*clients[u], copies[u], [&] {
                return copies[u].ready && ids_of(copies[u]) == want;
            });
            ASSERT_TRUE(same) << "round " << round << ", " << sub << ": copy has "
                              << json(ids_of(copies[u])).dump() << ", Postgres "
                              << json(want).dump() << " (error: " << copies[u].error << ")\n"
                              << server().stderr_text();
            ++compared;
        }
    }
    std::fprintf(stderr, "compared %zu copies over %d rounds\n", compared, rounds);
}

} // namespace
} // namespace pgpush::testing
