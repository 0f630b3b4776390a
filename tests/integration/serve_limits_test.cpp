// `pgpush serve` end to end: limits and bad input (docs/protocol.md#errors). Every bad message
// gets `error {id?, code, message}` with its documented code and leaves the connection usable;
// limits (message size, subscriptions, connections per user, subscribe rate, send budget) cut off
// only the client over them; another client connected meanwhile keeps receiving its events; and
// SIGTERM closes every connection with 1001 and exits 0.

#include <condition_variable>
#include <csignal>
#include <fstream>
#include <mutex>
#include <thread>

#include "tests/integration/serve_fixture.hpp"

namespace pgpush::testing {
namespace {

using nlohmann::json;

json alice() {
    return {{"sub", "alice"}, {"uid", 10}, {"rooms", {1}}};
}
json bob() {
    return {{"sub", "bob"}, {"uid", 11}, {"rooms", {1, 2}}};
}

class serve_limits_test : public serve_test {
protected:
    // The default rules, with every column of rooms visible (so an unknown column of it is
    // `unknown_column` rather than `forbidden`).
    static std::string limits_rules() {
        return R"(
tables:
  messages:
    allow: "auth.sub is not null"
    rows: "row.room_id in auth.rooms or row.sender_id = auth.uid"
    columns: [id, room_id, sender_id, body, sent_at]
  rooms:
    rows: "true"
    columns: "*"
channels:
  typing:
    filter: "payload.room in auth.rooms"
)";
    }

    void start_with(std::vector<std::string> extra = {}) {
        start(limits_rules(), std::move(extra));
    }

    // A client (bob) subscribed to rooms [base, base + 100): the one that must not notice.
    std::unique_ptr<ws_client> bystander(int base) {
        auto c = connect(bob());
        auto rows = subscribe(*c, "b",
                              "SELECT id, name FROM rooms WHERE id >= " + std::to_string(base) +
                                  " AND id < " + std::to_string(base + 100));
        EXPECT_EQ(rows, json::array());
        return c;
    }

    // Inserts room `id` and checks `c` gets it, as the next message, on subscription `sub`.
    void expect_room_event(ws_client& c, int id, const json& sub = "b") {
        pg().exec("INSERT INTO rooms (id, name) VALUES (" + std::to_string(id) + ", 'room " +
                  std::to_string(id) + "')");
        auto m = c.next();
        ASSERT_TRUE(m) << "no event for room " << id;
        EXPECT_EQ((*m)["type"], "insert") << m->dump();
        EXPECT_EQ((*m)["id"], sub) << m->dump();
        EXPECT_EQ((*m)["row"], json({{"id", id}, {"name", "room " + std::to_string(id)}}))
            << m->dump();
    }

    // The next message is `error` with `code`, the given id (none when null) and a message.
    static void expect_error(ws_client& c, const std::string& code, const json& id = nullptr) {
        auto m = c.next();
        ASSERT_TRUE(m) << "no error " << code << "; closed=" << c.closed();
        EXPECT_EQ((*m)["type"], "error") << m->dump();
        EXPECT_EQ((*m)["code"], code) << m->dump();
        if (id.is_null()) {
            EXPECT_FALSE(m->contains("id")) << m->dump();
        } else {
            EXPECT_EQ((*m)["id"], id) << m->dump();
        }
        EXPECT_TRUE((*m)["message"].is_string() && !(*m)["message"].get<std::string>().empty())
            << m->dump();
    }

    // A ping answered as the very next message: the connection is open and nothing else came.
    static void expect_pong(ws_client& c, const json& data) {
        c.send(json{{"type", "ping"}, {"data", data}});
        auto m = c.next();
        ASSERT_TRUE(m) << "no pong; closed=" << c.closed();
        EXPECT_EQ(*m, json({{"type", "pong"}, {"data", data}}));
    }

    // The server ended the connection (rather than our read giving up at its deadline).
    static void expect_closed_by_server(ws_client& c) {
        while (auto m = c.next()) {
            ADD_FAILURE() << "before the close: " << m->dump();
        }
        EXPECT_FALSE(c.timed_out()) << "still open";
    }

    // A number from /metrics: the first line starting with `name ` (labels included in name).
    long metric(const std::string& name) {
        auto [status, body] = http_get(port(), "/metrics");
        EXPECT_EQ(status, 200);
        auto at = body.find("\n" + name + " ");
        if (at == std::string::npos) return 0;
        return std::stol(body.substr(at + name.size() + 2));
    }

    // Polls /metrics until `name` equals `want` (true) or the deadline passes.
    bool await_metric(const std::string& name, long want, std::chrono::seconds timeout = 15s) {
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        while (std::chrono::steady_clock::now() < deadline) {
            if (metric(name) == want) return true;
            std::this_thread::sleep_for(20ms);
        }
        return metric(name) == want;
    }
};

// ---- bad messages: one table, one connection, one bystander ----

struct bad_case {
    const char* what;
    std::string text;
    const char* code;
    json id; // null: the error carries no id
    bool binary = false;
};

std::string sub(const std::string& id, const std::string& query) {
    return json{{"type", "subscribe"}, {"id", id}, {"query", query}}.dump();
}

const std::vector<bad_case>& bad_cases() {
    static const std::vector<bad_case> cases = {
        // Not JSON, not an object, no type.
        {"truncated JSON", R"({"type":"ping")", "bad_message", nullptr},
        {"not JSON at all", "hello", "bad_message", nullptr},
        {"empty text", "", "bad_message", nullptr},
        {"an array", "[1,2,3]", "bad_message", nullptr},
        {"a string", R"("subscribe")", "bad_message", nullptr},
        {"no type", R"({"id":"x"})", "bad_message", "x"},
        {"type not a string", R"({"type":7})", "bad_message", nullptr},
        {"binary frame", R"({"type":"ping"})", "bad_message", nullptr, true},
        // Unknown type.
        {"unknown type with id", R"({"type":"frobnicate","id":"u1"})", "unknown_type", "u1"},
        {"unknown type", R"({"type":"SUBSCRIBE"})", "unknown_type", nullptr},
        // Fields missing or of the wrong type.
        {"subscribe without query", R"({"type":"subscribe","id":"q1"})", "bad_message", "q1"},
        {"subscribe without id", R"({"type":"subscribe","query":"SELECT id FROM rooms"})",
         "bad_message", nullptr},
        {"query not a string", R"({"type":"subscribe","id":"q2","query":42})", "bad_message", "q2"},
        {"params not an array",
         R"({"type":"subscribe","id":"q3","query":"SELECT id FROM rooms","params":"x"})",
         "bad_message", "q3"},
        {"param an object",
         R"({"type":"subscribe","id":"q4","query":"SELECT id FROM rooms WHERE id = $1","params":[{"a":1}]})",
         "bad_message", "q4"},
        {"snapshot not a bool",
         R"({"type":"subscribe","id":"q5","query":"SELECT id FROM rooms","snapshot":"yes"})",
         "bad_message", "q5"},
        {"after not a string",
         R"({"type":"subscribe","id":"q6","query":"SELECT id FROM rooms","after":7})",
         "bad_message", "q6"},
        {"after not a position the engine wrote",
         R"({"type":"subscribe","id":"q7","query":"SELECT id FROM rooms","after":"nonsense"})",
         "bad_message", "q7"},
        {"id an object", R"({"type":"subscribe","id":{"a":1},"query":"SELECT id FROM rooms"})",
         "bad_message", nullptr},
        {"id empty", R"({"type":"subscribe","id":"","query":"SELECT id FROM rooms"})",
         "bad_message", nullptr},
        {"id over 128 bytes", sub(std::string(129, 'i'), "SELECT id FROM rooms"), "bad_message",
         nullptr},
        {"listen without channel", R"({"type":"listen","id":"l1"})", "bad_message", "l1"},
        {"unsubscribe without id", R"({"type":"unsubscribe"})", "bad_message", nullptr},
        {"auth without token", R"({"type":"auth"})", "bad_message", nullptr},
        // Queries outside the language.
        {"join", sub("j1", "SELECT m.id FROM messages m JOIN rooms r ON r.id = m.room_id"),
         "bad_query", "j1"},
        {"comma join", sub("j2", "SELECT id FROM messages, rooms"), "bad_query", "j2"},
        {"function", sub("f1", "SELECT id FROM messages WHERE lower(body) = 'x'"), "bad_query",
         "f1"},
        {"aggregate", sub("f2", "SELECT count(*) FROM messages"), "bad_query", "f2"},
        {"ORDER BY", sub("o1", "SELECT id FROM messages ORDER BY id"), "bad_query", "o1"},
        {"LIMIT", sub("o2", "SELECT id FROM rooms LIMIT 1"), "bad_query", "o2"},
        {"subquery", sub("o3", "SELECT id FROM rooms WHERE id IN (SELECT room_id FROM messages)"),
         "bad_query", "o3"},
        {"two statements", sub("o4", "SELECT id FROM rooms; DROP TABLE rooms"), "bad_query", "o4"},
        {"not a SELECT", sub("o5", "DELETE FROM rooms"), "bad_query", "o5"},
        {"does not parse", sub("o6", "SELEC id FROM"), "bad_query", "o6"},
        {"missing $1", sub("p1", "SELECT id FROM rooms WHERE id = $1"), "bad_query", "p1"},
        {"literal of the wrong type", sub("p2", "SELECT id FROM rooms WHERE id = 'abc'"),
         "bad_query", "p2"},
        // Tables and columns.
        {"no such table", sub("t1", "SELECT id FROM no_such_table"), "unknown_table", "t1"},
        {"table the rules do not list", sub("t2", "SELECT id FROM audit"), "unknown_table", "t2"},
        {"a catalog table", sub("t3", "SELECT usename FROM pg_catalog.pg_user"), "unknown_table",
         "t3"},
        {"forbidden column in SELECT", sub("c1", "SELECT id, secret FROM messages"), "forbidden",
         "c1"},
        {"forbidden column in WHERE", sub("c2", "SELECT id FROM messages WHERE secret = 'x'"),
         "forbidden", "c2"},
        {"no such column", sub("c3", "SELECT id, nope FROM rooms"), "unknown_column", "c3"},
        {"channel not in the rules", R"({"type":"listen","id":"l2","channel":"secrets"})",
         "forbidden", "l2"},
    };
    return cases;
}

TEST_F(serve_limits_test, bad_messages_get_their_error_and_hurt_no_one) {
    start_with();
    auto other = bystander(10000);
    auto c = connect(alice());
    int room = 10000;
    for (std::size_t i = 0; i < bad_cases().size(); ++i) {
        const auto& bc = bad_cases()[i];
        SCOPED_TRACE(bc.what);
        if (bc.binary) {
            c->send_binary(bc.text);
        } else {
            c->send(bc.text);
        }
        expect_error(*c, bc.code, bc.id);
        expect_pong(*c, static_cast<int>(i));
        expect_room_event(*other, ++room);
        ASSERT_FALSE(c->closed()) << "the connection did not survive " << bc.what;
    }
    // Still fully usable: a good subscription works and gets its events.
    EXPECT_EQ(subscribe(*c, "good", "SELECT id, name FROM rooms WHERE id = 10999"), json::array());
    pg().exec("INSERT INTO rooms (id, name) VALUES (10999, 'last')");
    auto ins = c->next_of("insert", "good");
    ASSERT_TRUE(ins);
    EXPECT_EQ((*ins)["row"], json({{"id", 10999}, {"name", "last"}}));
}

TEST_F(serve_limits_test, bad_messages_before_auth_leave_the_connection_open) {
    start_with();
    ws_client c(port());
    c.send(std::string("{not json"));
    expect_error(c, "bad_message");
    c.send(std::string(R"({"type":"frobnicate"})"));
    expect_error(c, "unknown_type");
    c.send(sub("s1", "SELECT id FROM rooms"));
    expect_error(c, "unauthenticated", "s1");
    expect_pong(c, "before auth");
    c.send(json{{"type", "auth"}, {"token", token(alice())}});
    auto m = c.next();
    ASSERT_TRUE(m);
    EXPECT_EQ((*m)["type"], "authenticated") << m->dump();
    EXPECT_EQ(subscribe(c, "s1", "SELECT id, name FROM rooms WHERE id = 1"),
              json::array({{{"id", 1}, {"name", "general"}}}));
}

TEST_F(serve_limits_test, duplicate_id_is_refused_and_the_first_keeps_working) {
    start_with();
    auto other = bystander(11000);
    auto c = connect(alice());
    EXPECT_EQ(subscribe(*c, "d1", "SELECT id, name FROM rooms WHERE id >= 11500 AND id < 12000"),
              json::array());
    c->send(sub("d1", "SELECT id, name FROM rooms WHERE id >= 11000 AND id < 11100"));
    expect_error(*c, "duplicate_id", "d1");
    c->send(json{{"type", "listen"}, {"id", "d1"}, {"channel", "typing"}});
    expect_error(*c, "duplicate_id", "d1");
    // An integer id is a different id from the string "1"... and is echoed as an integer.
    EXPECT_EQ(subscribe(*c, "1", "SELECT id, name FROM rooms WHERE id = 11601"), json::array());
    c->send(json{{"type", "subscribe"}, {"id", 1}, {"query", "SELECT id FROM rooms WHERE id = 1"}});
    auto r = c->next();
    ASSERT_TRUE(r);
    EXPECT_EQ((*r)["id"], 1) << r->dump();
    while (r && (*r)["type"] == "rows")
        r = c->next();
    ASSERT_TRUE(r);
    EXPECT_EQ((*r)["type"], "ready") << r->dump();
    c->send(json{{"type", "subscribe"}, {"id", 1}, {"query", "SELECT id FROM rooms"}});
    expect_error(*c, "duplicate_id", 1);

    // d1 is still the first subscription, once: one insert, then the marker.
    expect_room_event(*c, 11500, "d1");
    expect_pong(*c, "after d1");
    expect_room_event(*other, 11001);
}

TEST_F(serve_limits_test, unknown_id_is_refused) {
    start_with();
    auto c = connect(alice());
    // What `message` gets before the answer to a marker sent right after it. The marker goes the
    // same way as (un)subscribes, through the hub, so its answer cannot overtake theirs; a ping
    // is answered by the connection itself and could.
    int n = 0;
    auto replies_to = [&](const json& message) {
        const std::string marker = "marker" + std::to_string(++n);
        c->send(message);
        c->send(sub(marker, "SELECT id FROM no_such_table"));
        std::vector<json> out;
        while (auto m = c->next()) {
            if ((*m)["id"] == marker) {
                EXPECT_EQ((*m)["code"], "unknown_table") << m->dump();
                return out;
            }
            out.push_back(*m);
        }
        ADD_FAILURE() << "no answer to the marker";
        return out;
    };
    auto expect_unknown_id = [&](const json& message) {
        SCOPED_TRACE(message.dump());
        auto got = replies_to(message);
        ASSERT_EQ(got.size(), 1u) << "replies: " << json(got).dump();
        EXPECT_EQ(got[0]["type"], "error") << got[0].dump();
        EXPECT_EQ(got[0]["code"], "unknown_id") << got[0].dump();
        EXPECT_EQ(got[0]["id"], message["id"]) << got[0].dump();
    };
    expect_unknown_id({{"type", "unsubscribe"}, {"id", "never"}});
    expect_unknown_id({{"type", "unlisten"}, {"id", "never"}});
    // Unsubscribing twice: the second time the id is unknown.
    EXPECT_EQ(subscribe(*c, "s", "SELECT id FROM rooms WHERE id = 1"), json::array({{{"id", 1}}}));
    EXPECT_EQ(replies_to({{"type", "unsubscribe"}, {"id", "s"}}),
              std::vector<json>{json({{"type", "unsubscribed"}, {"id", "s"}})});
    expect_unknown_id({{"type", "unsubscribe"}, {"id", "s"}});
}

// ---- limits ----

TEST_F(serve_limits_test, message_over_max_message_bytes_closes_with_1009) {
    start_with({"--max-message-bytes", "1024"});
    auto other = bystander(12000);
    auto c = connect(alice());
    const long before = metric("pgpush_errors_total{code=\"message_too_large\"}");
    // Just under the limit is fine.
    expect_pong(*c, std::string(900, 'a'));
    // Over it: the connection is closed with 1009 (no reply is owed).
    // (Under the client's 4 kB write buffer: one frame, one write, so our send completes before
    // the server can close.)
    c->send(json{{"type", "ping"}, {"data", std::string(2000, 'b')}});
    expect_closed_by_server(*c);
    EXPECT_EQ(c->close_code(), 1009);
    EXPECT_TRUE(await_metric("pgpush_errors_total{code=\"message_too_large\"}", before + 1));
    // The others carry on, and new connections are welcome.
    expect_room_event(*other, 12001);
    auto again = connect(alice());
    expect_pong(*again, "back");
}

TEST_F(serve_limits_test, subscriptions_over_max_subscriptions_are_refused) {
    start_with({"--max-subscriptions", "3"});
    auto other = bystander(13000);
    auto c = connect(alice());
    for (int i = 1; i <= 3; ++i) {
        EXPECT_EQ(subscribe(*c, "s" + std::to_string(i),
                            "SELECT id, name FROM rooms WHERE id = " + std::to_string(13500 + i)),
                  json::array());
    }
    c->send(sub("s4", "SELECT id, name FROM rooms WHERE id = 13504"));
    expect_error(*c, "too_many_subscriptions", "s4");
    expect_pong(*c, "still here");
    // The refused one has no events; the three have theirs.
    pg().exec("INSERT INTO rooms (id, name) VALUES (13504, 'none')");
    expect_room_event(*c, 13502, "s2");
    // Room for one more after an unsubscribe.
    c->send(json{{"type", "unsubscribe"}, {"id", "s1"}});
    auto m = c->next();
    ASSERT_TRUE(m);
    EXPECT_EQ(*m, json({{"type", "unsubscribed"}, {"id", "s1"}}));
    EXPECT_EQ(subscribe(*c, "s5", "SELECT id, name FROM rooms WHERE id = 13505"), json::array());
    expect_room_event(*c, 13505, "s5");
    c->send(sub("s6", "SELECT id, name FROM rooms WHERE id = 13506"));
    expect_error(*c, "too_many_subscriptions", "s6");
    expect_room_event(*other, 13001);
}

TEST_F(serve_limits_test, connections_over_max_connections_per_user_are_refused) {
    start_with({"--max-connections-per-user", "2"});
    auto other = bystander(14000); // bob
    auto first = connect(alice());
    EXPECT_EQ(subscribe(*first, "a", "SELECT id, name FROM rooms WHERE id = 14500"), json::array());
    auto second = connect(alice());

    // The third of alice's: told why, then closed (close code:
    // connections_over_the_limit_close_with_1008).
    auto third = std::make_unique<ws_client>(port());
    third->send(json{{"type", "auth"}, {"token", token(alice())}});
    expect_error(*third, "too_many_connections");
    expect_closed_by_server(*third);

    // Nobody else noticed: alice's first two and bob carry on; bob may still connect.
    expect_room_event(*first, 14500, "a");
    expect_pong(*second, "second");
    expect_room_event(*other, 14001);
    auto bob2 = connect(bob());
    expect_pong(*bob2, "bob");

    // One of alice's leaves: a new one is admitted once the server has seen it go (bob's two
    // and alice's first are what stays open).
    second.reset();
    third.reset();
    ASSERT_TRUE(await_metric("pgpush_connections", 3));
    auto again = connect(alice());
    expect_pong(*again, "again");
}

TEST_F(serve_limits_test, connections_over_the_limit_close_with_1008) {
    start_with({"--max-connections-per-user", "1"});
    auto first = connect(alice());
    ws_client second(port());
    second.send(json{{"type", "auth"}, {"token", token(alice())}});
    expect_error(second, "too_many_connections");
    expect_closed_by_server(second);
    EXPECT_EQ(second.close_code(), 1008);
    EXPECT_FALSE(second.close_reason().empty());
}

TEST_F(serve_limits_test, subscribe_rate_over_the_limit_is_refused) {
    // A burst of 3 and a refill too slow to matter during the test.
    start_with({"--subscribe-rate", "0.001", "--subscribe-burst", "3"});
    auto other = bystander(15000);
    auto c = connect(alice());
    for (int i = 1; i <= 3; ++i) {
        EXPECT_EQ(subscribe(*c, "s" + std::to_string(i),
                            "SELECT id, name FROM rooms WHERE id = " + std::to_string(15500 + i)),
                  json::array());
    }
    c->send(sub("s4", "SELECT id, name FROM rooms WHERE id = 15504"));
    c->send(json{{"type", "listen"}, {"id", "l1"}, {"channel", "typing"}});
    c->send(sub("s5", "SELECT id, name FROM rooms WHERE id = 15505"));
    expect_error(*c, "rate_limited", "s4");
    expect_error(*c, "rate_limited", "l1");
    expect_error(*c, "rate_limited", "s5");
    // Usable: pings, unsubscribes and the granted subscriptions' events are not rate limited.
    expect_pong(*c, "still here");
    expect_room_event(*c, 15503, "s3");
    c->send(json{{"type", "unsubscribe"}, {"id", "s1"}});
    auto m = c->next();
    ASSERT_TRUE(m);
    EXPECT_EQ(*m, json({{"type", "unsubscribed"}, {"id", "s1"}}));
    // The bucket is per connection: the bystander (and a fresh connection) subscribe freely.
    EXPECT_EQ(subscribe(*other, "b2", "SELECT id, name FROM rooms WHERE id = 15999"),
              json::array());
    auto fresh = connect(alice());
    EXPECT_EQ(subscribe(*fresh, "f", "SELECT id, name FROM rooms WHERE id = 1"),
              json::array({{{"id", 1}, {"name", "general"}}}));
    expect_room_event(*other, 15001);
}

// ---- slow consumers ----

long vm_rss_kb(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
    }
    return -1;
}

TEST_F(serve_limits_test, slow_consumer_is_cut_off_and_the_others_get_every_row) {
    constexpr long budget = 256 * 1024;
    start_with({"--send-budget-bytes", std::to_string(budget)});
    // Both see room 1; ids from 100001 keep this test's rows apart.
    const std::string query = "SELECT id, body FROM messages WHERE room_id = 1 AND id > 100000";
    auto normal = connect(bob());
    EXPECT_EQ(subscribe(*normal, "m", query), json::array());
    auto slow = connect(alice());
    EXPECT_EQ(subscribe(*slow, "m", query), json::array());
    slow->stop_reading();
    const long rss_before = vm_rss_kb(server().pid());
    ASSERT_GT(rss_before, 0);

    // The normal client reads on its own thread while the rows go in.
    // 12 MB in all: more than the kernel's socket buffers can hide from the budget.
    constexpr int batches = 120, per_batch = 50, rows = batches * per_batch;
    std::vector<long> got;
    int received = 0; // under progress_mu
    bool reader_done = false;
    std::mutex progress_mu;
    std::condition_variable progress;
    std::string unexpected;
    std::thread reader([&] {
        while (static_cast<int>(got.size()) < rows) {
            auto m = normal->next(60s);
            if (!m) break;
            if ((*m)["type"] != "insert" || (*m)["id"] != "m") {
                unexpected = m->dump();
                break;
            }
            got.push_back((*m)["row"]["id"].get<long>());
            std::lock_guard lock(progress_mu);
            ++received;
            progress.notify_all();
        }
        std::lock_guard lock(progress_mu);
        reader_done = true;
        progress.notify_all();
    });
    // Small transactions (about 100 kB of events each, under the budget): a client that reads
    // keeps up; one that does not falls ever further behind. The next transaction waits until
    // the reading client has all but the last one, so a busy machine cannot make it fall behind
    // the budget too.
    for (int b = 0; b < batches; ++b) {
        {
            std::unique_lock lock(progress_mu);
            progress.wait(lock, [&] { return received >= (b - 1) * per_batch || reader_done; });
        }
        const int from = 100001 + b * per_batch;
        pg().exec("INSERT INTO messages (id, room_id, sender_id, body) SELECT g, 1, 12, "
                  "repeat('x', 2000) FROM generate_series(" +
                  std::to_string(from) + ", " + std::to_string(from + per_batch - 1) + ") g");
    }
    reader.join();
    EXPECT_EQ(unexpected, "");
    ASSERT_EQ(static_cast<int>(got.size()), rows) << "the normal client missed rows";
    for (int i = 0; i < rows; ++i)
        ASSERT_EQ(got[i], 100001 + i) << "out of order or doubled at " << i;

    // The slow one was cut off: counted, logged, and its connection ends once it reads again.
    EXPECT_EQ(metric("pgpush_slow_consumer_disconnects_total"), 1);
    EXPECT_TRUE(server().wait_for_stderr("slow consumer", 1, 5s)) << server().stderr_text();
    slow->resume_reading();
    int seen = 0;
    while (auto m = slow->next(15s)) {
        EXPECT_EQ((*m)["type"], "insert") << m->dump();
        ++seen;
    }
    EXPECT_FALSE(slow->timed_out()) << "the slow consumer is still connected";
    EXPECT_LT(seen, rows);

    // Its queue is released and memory stayed bounded (a generous guard, not a measurement).
    EXPECT_TRUE(await_metric("pgpush_queue_bytes", 0));
    const long rss_after = vm_rss_kb(server().pid());
    EXPECT_LT(rss_after, 512 * 1024) << "VmRSS " << rss_after << " kB";
    EXPECT_LT(rss_after - rss_before, 256 * 1024)
        << "VmRSS grew from " << rss_before << " to " << rss_after << " kB";

    // The engine carries on: the normal client and new ones are served.
    expect_pong(*normal, "after");
    auto again = connect(alice());
    EXPECT_EQ(subscribe(*again, "m", "SELECT id FROM messages WHERE id = 100001"),
              json::array({{{"id", 100001}}}));
}

// ---- shutdown ----

TEST_F(serve_limits_test, sigterm_closes_every_connection_with_1001_and_exits_0) {
    start_with();
    auto subscribed = connect(alice());
    EXPECT_EQ(subscribe(*subscribed, "r", "SELECT id, name FROM rooms WHERE id = 1"),
              json::array({{{"id", 1}, {"name", "general"}}}));
    auto idle = connect(bob());
    ws_client unauthenticated(port());
    expect_pong(unauthenticated, "not yet");

    server().signal(SIGTERM);
    for (ws_client* c : {subscribed.get(), idle.get(), &unauthenticated}) {
        expect_closed_by_server(*c);
        EXPECT_EQ(c->close_code(), 1001);
        EXPECT_FALSE(c->close_reason().empty());
    }
    auto status = server().wait();
    ASSERT_TRUE(status) << "still running after SIGTERM";
    EXPECT_EQ(*status, 0) << server().stderr_text();
    server_.reset(); // TearDown has nothing left to stop
}

} // namespace
} // namespace pgpush::testing
