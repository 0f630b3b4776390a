// `pgpush serve` out of file descriptors: an engine under `ulimit -n 1024` facing 1,100 idle TCP
// connections keeps serving its WebSocket clients and /healthz, lets new clients in (idle
// connections make room), does not spin or flood its log, and is healthy once they go. At the
// connection limit with nothing idle to close, health checks are still answered and upgrades
// get 503, and accepting pauses (it does not fail) until a connection closes.
//
// Nothing sleeps: each step awaits a message or an answer with a deadline; the few waits on a
// metric poll /metrics with a deadline.

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "tests/integration/serve_fixture.hpp"

namespace pgpush::testing {
namespace {

using nlohmann::json;

// A TCP connection to 127.0.0.1:port that says nothing; -1 if it could not be made.
int idle_connection(int port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        ::close(fd);
        return -1;
    }
    return fd;
}

// Sends `request` on a new connection and reads the answer until the server closes; (status,
// whole response), status 0 when there was no answer by the deadline.
std::pair<int, std::string> round_trip(int port, const std::string& request,
                                       std::chrono::seconds timeout = 30s) {
    const int fd = idle_connection(port);
    if (fd < 0) return {0, std::string("connect: ") + std::strerror(errno)};
    const timeval tv{static_cast<time_t>(timeout.count()), 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    std::string response;
    if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) ==
        static_cast<ssize_t>(request.size())) {
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        char buf[65536];
        ssize_t n;
        while (std::chrono::steady_clock::now() < deadline &&
               (n = ::recv(fd, buf, sizeof buf, 0)) > 0) {
            response.append(buf, static_cast<std::size_t>(n));
        }
    }
    ::close(fd);
    if (response.rfind("HTTP/1.1 ", 0) != 0) return {0, response};
    return {std::stoi(response.substr(9, 3)), response};
}

std::pair<int, std::string> get(int port, const std::string& target) {
    return round_trip(port, "GET " + target +
                                " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
}

// The value of a sample (name with its labels) in Prometheus text; -1 when absent.
double sample(const std::string& text, const std::string& name) {
    const std::string key = "\n" + name + " ";
    const auto at = text.find(key);
    if (at == std::string::npos) return -1;
    return std::stod(text.substr(at + key.size()));
}

// Reads one response from `fd` (head and Content-Length body); "" if none came in time.
std::string read_response(int fd, std::chrono::seconds timeout = 30s) {
    const timeval tv{static_cast<time_t>(timeout.count()), 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    std::string in;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
        const auto end = in.find("\r\n\r\n");
        if (end != std::string::npos) {
            const auto at = in.find("Content-Length: ");
            const auto length = at < end ? std::stoul(in.substr(at + 16)) : 0;
            if (in.size() >= end + 4 + length) return in;
        }
        char buf[65536];
        const auto n = ::recv(fd, buf, sizeof buf, 0);
        if (n <= 0) break;
        in.append(buf, static_cast<std::size_t>(n));
    }
    return "";
}

// True when the server closes `fd` (end of stream) before the deadline.
bool closed_by_server(int fd, std::chrono::seconds timeout = 30s) {
    const timeval tv{static_cast<time_t>(timeout.count()), 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char c;
    return ::recv(fd, &c, 1, 0) == 0;
}

// Lines of `text` that contain `needle`.
std::size_t lines_with(const std::string& text, const std::string& needle) {
    std::size_t n = 0;
    std::size_t from = 0;
    while (from < text.size()) {
        auto end = text.find('\n', from);
        if (end == std::string::npos) end = text.size();
        if (text.find(needle, from) < end) ++n;
        from = end + 1;
    }
    return n;
}

const json message_reader = {{"sub", "reader"}, {"uid", 1}, {"rooms", {1}}};

class serve_fd_test : public serve_test {
protected:
    static void SetUpTestSuite() {
        serve_test::SetUpTestSuite();
        // The test holds 1,100 connections of its own, and more.
        rlimit r{};
        ::getrlimit(RLIMIT_NOFILE, &r);
        r.rlim_cur = r.rlim_max;
        ::setrlimit(RLIMIT_NOFILE, &r);
    }

    void TearDown() override {
        for (int fd : idle_)
            ::close(fd);
        idle_.clear();
        serve_test::TearDown();
    }

    // As serve_test::start, with the engine's descriptors limited to `open_files`.
    void start_limited(unsigned long open_files, std::vector<std::string> extra = {}) {
        static int n = 0;
        const std::string name =
            "serve_fd_" + std::to_string(::getpid()) + "_" + std::to_string(++n);
        rules_path_ = "/tmp/pgpush-" + name + ".yaml";
        std::ofstream(rules_path_) << default_rules();
        data_dir_ = "/tmp/pgpush-" + name + ".data";
        std::vector<std::string> argv = {
            pgpush_binary(), "serve",       "--db",      pg().url(), "--rules",       rules_path_,
            "--listen",      "127.0.0.1:0", "--slot",    name,       "--publication", name,
            "--jwt-secret",  test_secret,   "--threads", "2",        "--data-dir",    data_dir_};
        argv.insert(argv.end(), extra.begin(), extra.end());
        server_ =
            std::make_unique<subprocess>(argv, std::vector<std::pair<std::string, std::string>>{},
                                         subprocess_limits{open_files});
        ASSERT_TRUE(server_->wait_for_stderr("streaming from slot")) << server_->stderr_text();
        ASSERT_TRUE(server_->wait_for_stderr("listening on 127.0.0.1:")) << server_->stderr_text();
        const auto& err = server_->stderr_text();
        port_ = std::stoi(err.substr(err.find("listening on 127.0.0.1:") + 23));
        // /healthz may answer 503 until the engine has sampled its stream.
        const auto deadline = std::chrono::steady_clock::now() + 30s;
        while (get(port_, "/healthz").first != 200) {
            ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "never healthy";
        }
    }

    std::string metrics() {
        auto [status, text] = get(port_, "/metrics");
        EXPECT_EQ(status, 200) << text;
        return text;
    }

    // Polls /metrics until `done` holds for `name`'s value; false at the deadline.
    bool await_metric(const std::string& name, const std::function<bool(double)>& done,
                      std::chrono::seconds timeout = 30s) {
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        while (std::chrono::steady_clock::now() < deadline) {
            if (done(sample(metrics(), name))) return true;
        }
        return false;
    }

    void open_idle(int count) {
        for (int i = 0; i < count; ++i) {
            const int fd = idle_connection(port_);
            ASSERT_GE(fd, 0) << "connection " << i << ": " << std::strerror(errno);
            idle_.push_back(fd);
        }
    }

    // What 1,100 idle connections must not break: a subscribed client still gets live changes,
    // /healthz answers on a new connection, a new client connects and authenticates, and the
    // log has a few lines about it, not thousands.
    // Reads what the engine has written to stderr so far (for up to a moment).
    const std::string& engine_log() {
        server_->wait_for_stderr("\n(never written)", 1, 200ms);
        return server_->stderr_text();
    }

    // What 1,100 idle connections must not break: a subscribed client still gets live changes,
    // /healthz answers on a new connection, a new client connects and authenticates (and, with
    // descriptors to spare, subscribes), and the log has a few lines about it, not thousands.
    void expect_served_through_idle_flood(bool descriptors_to_spare) {
        auto reader = connect(message_reader);
        subscribe(*reader, "m", "SELECT id, body FROM messages WHERE room_id = 1");

        open_idle(1100);
        // Accepted after every idle connection before it.
        auto [status, body] = get(port_, "/healthz");
        EXPECT_EQ(status, 200) << body;

        pg().exec("INSERT INTO messages (room_id, sender_id, body) VALUES (1, 1, 'still here')");
        auto event = reader->next_of("insert", "m");
        ASSERT_TRUE(event) << "the subscribed client got nothing";
        EXPECT_EQ((*event)["row"]["body"], "still here");

        auto late = connect({{"sub", "late"}, {"uid", 2}, {"rooms", {1}}});
        // A snapshot may need a new database connection: a descriptor.
        if (descriptors_to_spare)
            subscribe(*late, "m", "SELECT id, body FROM messages WHERE room_id = 1");

        const auto& err = engine_log();
        EXPECT_LE(lines_with(err, "file descriptors") + lines_with(err, "connection limit"), 6u)
            << err.substr(0, 4000);

        // The idle connections go; everyone is served as before.
        for (int fd : idle_)
            ::close(fd);
        idle_.clear();
        EXPECT_TRUE(await_metric("pgpush_tcp_connections", [](double v) { return v <= 4; }))
            << metrics();
        EXPECT_EQ(get(port_, "/healthz").first, 200);
        if (!descriptors_to_spare)
            subscribe(*late, "m", "SELECT id, body FROM messages WHERE room_id = 1");
        pg().exec("INSERT INTO messages (room_id, sender_id, body) VALUES (1, 1, 'after')");
        for (auto* c : {reader.get(), late.get()}) {
            auto e = c->next_of("insert", "m");
            ASSERT_TRUE(e);
            EXPECT_EQ((*e)["row"]["body"], "after");
        }
        auto after = connect({{"sub", "after"}, {"uid", 3}, {"rooms", {1}}});
        subscribe(*after, "m", "SELECT id, body FROM messages WHERE room_id = 1");
    }

    std::vector<int> idle_;
};

// Under its own limit (the open-file limit less a reserve), idle connections make room for new
// ones: the descriptors never run out.
TEST_F(serve_fd_test, idle_connections_make_room_at_the_connection_limit) {
    reset_data();
    start_limited(1024);
    const auto before = metrics();
    const double limit = sample(before, "pgpush_connection_limit");
    EXPECT_GT(limit, 0);
    EXPECT_LT(limit, 1024);
    expect_served_through_idle_flood(true);
    const auto m = metrics();
    EXPECT_GT(sample(m, "pgpush_connections_evicted_total"), 0) << m;
}

// With a connection limit above what the descriptors allow, accept runs out of descriptors:
// accepting pauses (it does not spin), idle connections are closed to give some back, and the
// log says so once per interval.
TEST_F(serve_fd_test, out_of_descriptors_pauses_accepting_without_flooding_the_log) {
    reset_data();
    start_limited(1024, {"--max-connections", "5000"});
    expect_served_through_idle_flood(false);
    const auto m = metrics();
    EXPECT_GT(sample(m, "pgpush_accept_paused_total{reason=\"out_of_descriptors\"}"), 0) << m;
    EXPECT_GT(sample(m, "pgpush_connections_evicted_total"), 0) << m;
    EXPECT_NE(engine_log().find("out of file descriptors"), std::string::npos);
}

// A connection idle between keep-alive requests makes room too, and the one that waited longest
// goes first.
TEST_F(serve_fd_test, keep_alive_connections_idle_longest_make_room_first) {
    reset_data();
    start_limited(1024, {"--max-connections", "3"});
    auto reader = connect(message_reader);
    subscribe(*reader, "m", "SELECT id, body FROM messages WHERE room_id = 1");
    const std::string request = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    std::vector<int> kept;
    for (int i = 0; i < 2; ++i) {
        open_idle(1);
        kept.push_back(idle_.back());
        ASSERT_EQ(::send(kept.back(), request.data(), request.size(), MSG_NOSIGNAL),
                  static_cast<ssize_t>(request.size()));
        const auto response = read_response(kept.back());
        ASSERT_EQ(response.rfind("HTTP/1.1 200 ", 0), 0u) << response;
        ASSERT_EQ(response.find("Connection: close"), std::string::npos) << response;
    }
    // The limit is reached (reader and two idle): the next client closes the older idle one.
    auto next = connect({{"sub", "next"}, {"uid", 2}, {"rooms", {1}}});
    EXPECT_TRUE(closed_by_server(kept[0]));
    // The newer one is still served on its connection.
    ASSERT_EQ(::send(kept[1], request.data(), request.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(request.size()));
    EXPECT_EQ(read_response(kept[1]).rfind("HTTP/1.1 200 ", 0), 0u);
    subscribe(*next, "m", "SELECT id, body FROM messages WHERE room_id = 1");
    pg().exec("INSERT INTO messages (room_id, sender_id, body) VALUES (1, 1, 'both')");
    for (auto* c : {reader.get(), next.get()}) {
        auto e = c->next_of("insert", "m");
        ASSERT_TRUE(e);
        EXPECT_EQ((*e)["row"]["body"], "both");
    }
    // (The /metrics request itself, at the limit, may close the other idle one.)
    EXPECT_GE(sample(metrics(), "pgpush_connections_evicted_total"), 1);
}

// At the limit with only WebSocket sessions (never closed for room): health checks are answered,
// upgrades get 503 with Retry-After; past the overflow accepting pauses until a connection
// closes, and then the next client gets in.
TEST_F(serve_fd_test, at_the_limit_health_checks_are_answered_and_upgrades_refused) {
    reset_data();
    start_limited(1024, {"--max-connections", "2"});
    auto reader = connect(message_reader);
    subscribe(*reader, "m", "SELECT id, body FROM messages WHERE room_id = 1");
    auto second = connect({{"sub", "second"}, {"uid", 2}, {"rooms", {1}}});

    auto [status, body] = get(port_, "/healthz");
    EXPECT_EQ(status, 200) << body;
    EXPECT_NE(body.find("Connection: close"), std::string::npos) << body;
    EXPECT_THROW(ws_client extra(port_), std::exception) << "an upgrade over the limit succeeded";
    auto [code, answer] = round_trip(
        port_, "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: "
               "Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n");
    EXPECT_EQ(code, 503) << answer;
    EXPECT_NE(answer.find("Retry-After: "), std::string::npos) << answer;
    EXPECT_NE(answer.find("connection limit (2 connections)"), std::string::npos) << answer;

    // Fill the overflow too: accepting pauses; a /healthz behind them is answered once the
    // over-limit connections time out (they get a short deadline) and accepting resumes.
    open_idle(40);
    EXPECT_EQ(get(port_, "/healthz").first, 200);
    EXPECT_GT(sample(metrics(), "pgpush_accept_paused_total{reason=\"connection_limit\"}"), 0);

    // A WebSocket session closing makes room for the next client. Its slot is given back when
    // the engine has seen the close, so the next client tries until it gets in (or the deadline).
    second.reset();
    std::unique_ptr<ws_client> next;
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    while (!next && std::chrono::steady_clock::now() < deadline) {
        try {
            next = std::make_unique<ws_client>(port_);
        } catch (const std::exception&) {
        }
    }
    ASSERT_TRUE(next) << "no room after a WebSocket session closed";
    next->send(json{{"type", "auth"}, {"token", token({{"sub", "next"}, {"uid", 3}})}});
    auto authenticated = next->next();
    ASSERT_TRUE(authenticated);
    EXPECT_EQ((*authenticated)["type"], "authenticated");
    pg().exec("INSERT INTO messages (room_id, sender_id, body) VALUES (1, 1, 'at the limit')");
    auto event = reader->next_of("insert", "m");
    ASSERT_TRUE(event);
    EXPECT_EQ((*event)["row"]["body"], "at the limit");
    const auto m = metrics();
    EXPECT_GT(sample(m, "pgpush_connections_refused_total{reason=\"connection_limit\"}"), 0) << m;
}

} // namespace
} // namespace pgpush::testing
