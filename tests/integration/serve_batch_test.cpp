// Transactions as one message: a subscription with "transactions": true gets the changes of each
// transaction that hit it as one `transaction` message (several, `last` false on all but the
// final one, when the transaction is over the hub's cap), live and when resumed from the log.

#include <filesystem>
#include <sstream>
#include <vector>

#include "tests/integration/serve_fixture.hpp"

namespace pgpush::testing {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

// hub_limits::batch_max_changes: a transaction larger than this comes in several messages.
constexpr std::size_t batch_cap = 5000;

// Each test has its own change log in a temp dir, as `pgpush serve` is deployed.
class batch_test : public serve_test {
protected:
    void SetUp() override {
        char tmpl[] = "/tmp/pgpush-batch-XXXXXX";
        data_dir_ = ::mkdtemp(tmpl);
        static int n = 0;
        name_ = "batch_" + std::to_string(::getpid()) + "_" + std::to_string(++n);
    }
    void TearDown() override {
        serve_test::TearDown();
        fs::remove_all(data_dir_);
    }

    void launch() {
        rules_path_ = data_dir_ + "/rules.yaml";
        std::ofstream(rules_path_) << default_rules();
        server_ = std::make_unique<subprocess>(std::vector<std::string>{
            pgpush_binary(), "serve", "--db", pg().url(), "--rules", rules_path_, "--listen",
            "127.0.0.1:0", "--slot", name_, "--publication", name_, "--jwt-secret", test_secret,
            "--threads", "2", "--data-dir", data_dir_});
        ASSERT_TRUE(server_->wait_for_stderr("streaming from slot")) << server_->stderr_text();
        ASSERT_TRUE(server_->wait_for_stderr("listening on")) << server_->stderr_text();
        const auto& err = server_->stderr_text();
        port_ = std::stoi(err.substr(err.find("listening on 127.0.0.1:") + 23));
    }

    std::string name_;
};

json alice(int room) {
    return json{{"sub", "alice"}, {"uid", 999}, {"rooms", {room}}};
}

std::string room_query(int room) {
    return "SELECT id, room_id, body FROM messages WHERE room_id = " + std::to_string(room);
}

const json batched = {{"transactions", true}};

// "epoch/LSN-index" → "epoch/LSN": what every change of one transaction shares.
std::string commit_of(const std::string& position) {
    return position.substr(0, position.rfind('-'));
}

// One transaction as received: its changes across its messages, and the messages.
struct received_txn {
    std::vector<json> changes;
    std::vector<json> messages;

    std::vector<std::int64_t> ids() const {
        std::vector<std::int64_t> out;
        for (const auto& c : changes)
            out.push_back(c["row"]["id"].get<std::int64_t>());
        return out;
    }
    std::string position() const { return messages.back()["position"]; }
};

// Reads the `transaction` messages of one transaction for `id`, through the one with last:true.
// Any other message fails the test. Checks what holds for every message: its position and
// commit_time are its last change's, and every change is of the same transaction.
std::optional<received_txn> read_transaction(ws_client& c, const std::string& id) {
    received_txn t;
    for (;;) {
        auto m = c.next(30s);
        if (!m) {
            ADD_FAILURE() << "no transaction message for " << id;
            return std::nullopt;
        }
        if ((*m)["type"] != "transaction" || (*m)["id"] != id) {
            ADD_FAILURE() << "expected a transaction for " << id << ", got "
                          << m->dump().substr(0, 400);
            return std::nullopt;
        }
        const auto& changes = (*m)["changes"];
        EXPECT_FALSE(changes.empty()) << m->dump().substr(0, 400);
        if (changes.empty()) return std::nullopt;
        EXPECT_LE(changes.size(), batch_cap);
        EXPECT_EQ((*m)["position"], changes.back()["position"]);
        EXPECT_EQ((*m)["commit_time"], changes.back()["commit_time"]);
        for (const auto& ch : changes) {
            EXPECT_FALSE(ch.contains("id")) << "a change carries no subscription id";
            t.changes.push_back(ch);
        }
        t.messages.push_back(std::move(*m));
        const auto& last = t.messages.back()["last"];
        EXPECT_TRUE(last.is_boolean()) << "last: " << last.dump();
        if (last == true) break;
    }
    const std::string commit = commit_of(t.changes.front()["position"]);
    for (const auto& ch : t.changes) {
        EXPECT_EQ(commit_of(ch["position"]), commit) << "changes of two transactions in one";
        EXPECT_EQ(ch["commit_time"], t.changes.front()["commit_time"]);
    }
    return t;
}

// Ids returned by a statement, in order ("a,b,c").
std::vector<std::int64_t> ids_of(const std::string& text) {
    std::vector<std::int64_t> ids;
    std::stringstream ss(text);
    for (std::string item; std::getline(ss, item, ',');)
        ids.push_back(std::stoll(item));
    return ids;
}

// Inserts `rows` messages into `room` in one transaction and returns their ids in order.
std::vector<std::int64_t> insert_rows(pg_cluster& pg, int room, int rows) {
    return ids_of(pg.query_value(
        "WITH ins AS (INSERT INTO messages (room_id, sender_id, body) SELECT " +
        std::to_string(room) + ", 1, 'row ' || g FROM generate_series(1, " + std::to_string(rows) +
        ") g ORDER BY g RETURNING id) SELECT string_agg(id::text, ',' ORDER BY id) FROM ins"));
}

TEST_F(batch_test, a_transaction_of_several_changes_arrives_as_one_message_in_order) {
    launch();
    const int room = 11;
    auto c = connect(alice(room));
    subscribe(*c, "s", room_query(room), batched);
    pg().exec(R"(
        BEGIN;
        INSERT INTO messages (id, room_id, sender_id, body) VALUES
            (1100001, 11, 1, 'a'), (1100002, 11, 1, 'b'), (1100003, 11, 1, 'c');
        UPDATE messages SET body = 'b2' WHERE id = 1100002;
        DELETE FROM messages WHERE id = 1100003;
        COMMIT;
    )");
    auto t = read_transaction(*c, "s");
    ASSERT_TRUE(t);
    ASSERT_EQ(t->messages.size(), 1u);
    const json want = json::parse(R"([
        {"type": "insert", "row": {"id": 1100001, "room_id": 11, "body": "a"}},
        {"type": "insert", "row": {"id": 1100002, "room_id": 11, "body": "b"}},
        {"type": "insert", "row": {"id": 1100003, "room_id": 11, "body": "c"}},
        {"type": "update", "row": {"id": 1100002, "room_id": 11, "body": "b2"},
                           "old": {"id": 1100002, "room_id": 11, "body": "b"}},
        {"type": "delete", "row": {"id": 1100003, "room_id": 11, "body": "c"}}
    ])");
    ASSERT_EQ(t->changes.size(), want.size()) << t->messages.front().dump();
    std::string previous;
    for (std::size_t i = 0; i < want.size(); ++i) {
        json got = t->changes[i];
        const std::string position = got["position"];
        EXPECT_GT(position, previous) << "positions grow within the transaction";
        previous = position;
        got.erase("position");
        got.erase("commit_time");
        EXPECT_EQ(got, want[i]) << "change " << i;
    }
    EXPECT_EQ(t->messages.front()["last"], true);
    EXPECT_EQ(t->position(), t->changes.back()["position"]);
}

TEST_F(batch_test, two_transactions_arrive_as_two_messages) {
    launch();
    const int room = 12;
    auto c = connect(alice(room));
    subscribe(*c, "s", room_query(room), batched);
    const auto first = insert_rows(pg(), room, 3);
    const auto second = insert_rows(pg(), room, 2);
    auto t1 = read_transaction(*c, "s");
    ASSERT_TRUE(t1);
    auto t2 = read_transaction(*c, "s");
    ASSERT_TRUE(t2);
    EXPECT_EQ(t1->messages.size(), 1u);
    EXPECT_EQ(t2->messages.size(), 1u);
    EXPECT_EQ(t1->ids(), first);
    EXPECT_EQ(t2->ids(), second);
    EXPECT_LT(commit_of(t1->position()), commit_of(t2->position()));
}

TEST_F(batch_test, a_transaction_over_the_cap_arrives_in_several_messages_the_last_marked) {
    launch();
    const int room = 13;
    auto c = connect(alice(room));
    subscribe(*c, "s", room_query(room), batched);
    const int rows = static_cast<int>(2 * batch_cap + 1);
    const auto ids = insert_rows(pg(), room, rows);
    const auto marker = insert_rows(pg(), room, 1);
    auto t = read_transaction(*c, "s");
    ASSERT_TRUE(t);
    EXPECT_GE(t->messages.size(), 3u);
    for (std::size_t i = 0; i + 1 < t->messages.size(); ++i)
        EXPECT_EQ(t->messages[i]["last"], false) << "message " << i;
    EXPECT_EQ(t->messages.back()["last"], true);
    EXPECT_EQ(t->ids(), ids);
    // The next transaction is a message of its own, not part of the large one.
    auto next = read_transaction(*c, "s");
    ASSERT_TRUE(next);
    EXPECT_EQ(next->ids(), marker);
}

TEST_F(batch_test, rows_the_subscription_may_not_see_are_not_in_the_message) {
    launch();
    const int room = 14;
    auto c = connect(alice(room));
    // No WHERE: the rules alone (rooms in the token) decide which rows alice sees.
    subscribe(*c, "s", "SELECT id, room_id, body FROM messages", batched);
    pg().exec(R"(
        BEGIN;
        INSERT INTO messages (id, room_id, sender_id, body, secret) VALUES
            (1400001, 14, 1, 'mine', 'x'), (1400002, 15, 1, 'theirs', 'x'),
            (1400003, 14, 1, 'mine too', 'x'), (1400004, 15, 1, 'theirs too', 'x');
        COMMIT;
        BEGIN;
        INSERT INTO messages (id, room_id, sender_id, body) VALUES (1400005, 15, 1, 'only theirs');
        COMMIT;
        BEGIN;
        INSERT INTO messages (id, room_id, sender_id, body) VALUES (1400006, 14, 1, 'last');
        COMMIT;
    )");
    auto t = read_transaction(*c, "s");
    ASSERT_TRUE(t);
    EXPECT_EQ(t->ids(), (std::vector<std::int64_t>{1400001, 1400003}));
    for (const auto& ch : t->changes) {
        EXPECT_EQ(ch["row"]["room_id"], room);
        EXPECT_FALSE(ch["row"].contains("secret"));
    }
    // The transaction with nothing alice may see sends nothing: the next message is the third.
    auto last = read_transaction(*c, "s");
    ASSERT_TRUE(last);
    EXPECT_EQ(last->ids(), (std::vector<std::int64_t>{1400006}));
}

TEST_F(batch_test, a_resumed_subscription_replays_whole_transactions) {
    launch();
    const int room = 16;
    // A second client sees every change live: once it has a row, the engine has logged it.
    auto witness = connect(alice(room));
    subscribe(*witness, "w", room_query(room));
    auto seen_by_witness = [&](std::int64_t id) {
        while (auto m = witness->next(30s)) {
            if ((*m)["type"] == "insert" && (*m)["row"]["id"] == id) return true;
        }
        return false;
    };

    auto c = connect(alice(room));
    subscribe(*c, "s", room_query(room), batched);
    const auto t1 = insert_rows(pg(), room, 3);
    const auto t2 = insert_rows(pg(), room, 2);
    auto r1 = read_transaction(*c, "s");
    ASSERT_TRUE(r1);
    auto r2 = read_transaction(*c, "s");
    ASSERT_TRUE(r2);
    ASSERT_EQ(r1->ids(), t1);
    ASSERT_EQ(r2->ids(), t2);
    const std::string resume_after = r2->position();
    c.reset();

    // Missed while away: a transaction that is partly someone else's, and one over the cap.
    const auto t3 = ids_of(pg().query_value(
        "WITH ins AS (INSERT INTO messages (room_id, sender_id, body) VALUES "
        "(16, 1, 'x'), (17, 1, 'not mine'), (16, 1, 'y') RETURNING id, room_id) "
        "SELECT string_agg(id::text, ',' ORDER BY id) FROM ins WHERE room_id = 16"));
    const auto t4 = insert_rows(pg(), room, static_cast<int>(batch_cap + 10));
    ASSERT_TRUE(seen_by_witness(t4.back())) << server().stderr_text();

    c = connect(alice(room));
    c->send(json{{"type", "subscribe"},
                 {"id", "s"},
                 {"query", room_query(room)},
                 {"after", resume_after},
                 {"transactions", true}});
    auto r3 = read_transaction(*c, "s");
    ASSERT_TRUE(r3);
    EXPECT_EQ(r3->ids(), t3);
    EXPECT_EQ(r3->messages.size(), 1u);
    auto r4 = read_transaction(*c, "s");
    ASSERT_TRUE(r4);
    EXPECT_EQ(r4->ids(), t4);
    EXPECT_GE(r4->messages.size(), 2u);
    auto ready = c->next(30s);
    ASSERT_TRUE(ready);
    EXPECT_EQ((*ready)["type"], "ready") << ready->dump();

    // And on live, as before.
    const auto t5 = insert_rows(pg(), room, 4);
    auto r5 = read_transaction(*c, "s");
    ASSERT_TRUE(r5);
    EXPECT_EQ(r5->ids(), t5);
}

} // namespace
} // namespace pgpush::testing
