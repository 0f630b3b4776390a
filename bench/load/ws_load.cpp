// ws_load: an end-to-end load generator for `pgpush serve`.
//
// Opens N WebSocket clients (one thread, epoll), authenticates each as its own user in one of R
// rooms, subscribes each to its room's messages, measures the server's RSS per idle subscribed
// connection, then drives INSERTs into Postgres at a fixed rate and records, for every event a
// client receives, commit -> client latency (the event's commit_time against the receive time;
// same machine, same clock).
//
//   ws_load --port P --db URL --server-pid PID --clients 1000 --rooms 100 --rate 2000 --seconds 20
//
// Prints a table and the command line.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <sys/resource.h>
#include <thread>
#include <vector>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <jwt.h>
#include <libpq-fe.h>

namespace net = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using clock_type = std::chrono::system_clock;

namespace {

struct options {
    int port = 8080;
    std::string db;
    int server_pid = 0;
    int clients = 1000;
    int rooms = 100;
    int rate = 2000;
    int seconds = 20;
    std::string secret = "load-test-secret-load-test-secret!!";
};

std::int64_t now_us() {
    return std::chrono::duration_cast<std::chrono::microseconds>(
               clock_type::now().time_since_epoch())
        .count();
}

// "2026-11-23T10:00:00.123456Z" -> microseconds since the Unix epoch.
std::int64_t parse_rfc3339(std::string_view s) {
    auto num = [&](std::size_t at, std::size_t n) {
        std::int64_t v = 0;
        for (std::size_t i = at; i < at + n; ++i)
            v = v * 10 + (s[i] - '0');
        return v;
    };
    if (s.size() < 27) return 0;
    std::int64_t y = num(0, 4), m = num(5, 2), d = num(8, 2);
    y -= m <= 2;
    const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
    const std::int64_t yoe = y - era * 400;
    const std::int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const std::int64_t days = era * 146097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719468;
    return ((days * 24 + num(11, 2)) * 60 + num(14, 2)) * 60'000'000 + num(17, 2) * 1'000'000 +
           num(20, 6);
}

std::string token_for(int i, int room, const std::string& secret) {
    jwt_t* j = nullptr;
    jwt_new(&j);
    std::string claims =
        "{\"sub\":\"u" + std::to_string(i) + "\",\"rooms\":[" + std::to_string(room) + "]}";
    jwt_add_grants_json(j, claims.c_str());
    jwt_set_alg(j, JWT_ALG_HS256, reinterpret_cast<const unsigned char*>(secret.data()),
                static_cast<int>(secret.size()));
    char* s = jwt_encode_str(j);
    std::string out = s;
    std::free(s);
    jwt_free(j);
    return out;
}

long rss_kib(int pid) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(f, line)) {
        if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
    }
    return 0;
}

struct stats {
    std::vector<std::int64_t> latencies; // microseconds
    std::uint64_t events = 0;
    std::uint64_t errors = 0;
};

class load_client : public std::enable_shared_from_this<load_client> {
public:
    load_client(net::io_context& io, int index, int room, stats& s, std::atomic<int>& ready,
                std::atomic<int>& failed)
        : ws_(io), index_(index), room_(room), stats_(s), ready_(ready), failed_(failed) {}

    void start(const net::ip::tcp::endpoint& ep, const std::string& token) {
        token_ = token;
        beast::get_lowest_layer(ws_).async_connect(ep, [self = shared_from_this(),
                                                        ep](beast::error_code ec) {
            if (ec) return self->fail();
            self->ws_.async_handshake("127.0.0.1:" + std::to_string(ep.port()),
                                      "/ws?token=" + self->token_, [self](beast::error_code ec2) {
                                          if (ec2) return self->fail();
                                          self->subscribe();
                                      });
        });
    }

private:
    void fail() { ++failed_; }

    void subscribe() {
        out_ = "{\"type\":\"subscribe\",\"id\":1,\"snapshot\":false,\"query\":\"SELECT id, "
               "room_id, body, sent_at "
               "FROM messages WHERE room_id = " +
               std::to_string(room_) + "\"}";
        ws_.text(true);
        ws_.async_write(net::buffer(out_),
                        [self = shared_from_this()](beast::error_code ec, std::size_t) {
                            if (ec) return self->fail();
                            self->read();
                        });
    }

    void read() {
        ws_.async_read(in_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
            if (ec) return; // closed at the end
            self->on_message();
            self->read();
        });
    }

    void on_message() {
        const auto received = now_us();
        auto data = in_.cdata();
        std::string_view text(static_cast<const char*>(data.data()), data.size());
        if (text.find("\"type\":\"insert\"") != std::string_view::npos) {
            auto at = text.find("\"commit_time\":\"");
            if (at != std::string_view::npos) {
                stats_.latencies.push_back(received - parse_rfc3339(text.substr(at + 15)));
            }
            ++stats_.events;
        } else if (text.find("\"type\":\"ready\"") != std::string_view::npos) {
            ++ready_;
        } else if (text.find("\"type\":\"authenticated\"") == std::string_view::npos) {
            ++stats_.errors;
            if (stats_.errors < 5)
                std::fprintf(stderr, "client %d: %.*s\n", index_, static_cast<int>(text.size()),
                             text.data());
        }
        in_.consume(in_.size());
    }

    websocket::stream<beast::tcp_stream> ws_;
    int index_;
    int room_;
    stats& stats_;
    std::atomic<int>& ready_;
    std::atomic<int>& failed_;
    std::string token_, out_;
    beast::flat_buffer in_;
};

double percentile(std::vector<std::int64_t>& v, double p) {
    if (v.empty()) return 0;
    auto k = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1));
    std::nth_element(v.begin(), v.begin() + static_cast<long>(k), v.end());
    return static_cast<double>(v[k]) / 1000.0;
}

} // namespace

int main(int argc, char** argv) {
    options o;
    for (int i = 1; i + 1 < argc; i += 2) {
        std::string k = argv[i], v = argv[i + 1];
        if (k == "--port")
            o.port = std::stoi(v);
        else if (k == "--db")
            o.db = v;
        else if (k == "--server-pid")
            o.server_pid = std::stoi(v);
        else if (k == "--clients")
            o.clients = std::stoi(v);
        else if (k == "--rooms")
            o.rooms = std::stoi(v);
        else if (k == "--rate")
            o.rate = std::stoi(v);
        else if (k == "--seconds")
            o.seconds = std::stoi(v);
        else if (k == "--secret")
            o.secret = v;
        else {
            std::fprintf(stderr, "unknown option %s\n", k.c_str());
            return 2;
        }
    }
    rlimit r{};
    getrlimit(RLIMIT_NOFILE, &r);
    r.rlim_cur = r.rlim_max;
    setrlimit(RLIMIT_NOFILE, &r);

    net::io_context io(1);
    stats s;
    std::atomic<int> ready{0}, failed{0};
    const net::ip::tcp::endpoint ep(net::ip::make_address("127.0.0.1"),
                                    static_cast<unsigned short>(o.port));
    const long rss_before = o.server_pid ? rss_kib(o.server_pid) : 0;
    std::vector<std::shared_ptr<load_client>> clients;
    for (int i = 0; i < o.clients; ++i) {
        auto c = std::make_shared<load_client>(io, i, i % o.rooms, s, ready, failed);
        c->start(ep, token_for(i, i % o.rooms, o.secret));
        clients.push_back(c);
        // Connect in batches so the listen backlog is not overrun.
        if (i % 200 == 199) {
            while (ready + failed < i + 1 - 100)
                io.run_one_for(std::chrono::milliseconds(50));
        }
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    while (ready + failed < o.clients && std::chrono::steady_clock::now() < deadline) {
        io.run_one_for(std::chrono::milliseconds(50));
    }
    // Let the server settle before sampling its memory.
    const auto settle = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    while (std::chrono::steady_clock::now() < settle)
        io.run_one_for(std::chrono::milliseconds(50));
    const long rss_after = o.server_pid ? rss_kib(o.server_pid) : 0;

    // The writer: single-row INSERTs at the target rate, round-robin over rooms.
    std::atomic<bool> writing{true};
    std::atomic<long> written{0};
    std::thread writer([&] {
        PGconn* db = PQconnectdb(o.db.c_str());
        if (PQstatus(db) != CONNECTION_OK) {
            std::fprintf(stderr, "writer: %s\n", PQerrorMessage(db));
            writing = false;
            return;
        }
        const auto start = std::chrono::steady_clock::now();
        const long total = static_cast<long>(o.rate) * o.seconds;
        for (long n = 0; n < total; ++n) {
            std::this_thread::sleep_until(start +
                                          std::chrono::microseconds(n * 1'000'000 / o.rate));
            std::string sql = "INSERT INTO messages (room_id, sender_id, body) VALUES (" +
                              std::to_string(n % o.rooms) + ", 1, 'load message " +
                              std::to_string(n) + "')";
            PGresult* res = PQexec(db, sql.c_str());
            PQclear(res);
            ++written;
        }
        PQfinish(db);
        writing = false;
    });
    const auto t0 = std::chrono::steady_clock::now();
    while (writing)
        io.run_one_for(std::chrono::milliseconds(50));
    const auto t_write = std::chrono::steady_clock::now();
    writer.join();
    // Drain what is still in flight.
    const std::uint64_t expected = static_cast<std::uint64_t>(written) *
                                   static_cast<std::uint64_t>(o.clients) /
                                   static_cast<std::uint64_t>(o.rooms);
    const auto drain_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (s.events < expected && std::chrono::steady_clock::now() < drain_deadline) {
        io.run_one_for(std::chrono::milliseconds(50));
    }
    const double seconds = std::chrono::duration<double>(t_write - t0).count();

    std::printf("\nws_load: %d clients (%d ready, %d failed), %d rooms, %ld rows written at %d/s "
                "for %.1f s\n",
                o.clients, ready.load(), failed.load(), o.rooms, written.load(), o.rate, seconds);
    std::printf("| clients | changes/s | deliveries | expected | deliveries/s | p50 ms | p99 ms | "
                "max ms | RSS/conn KiB |\n");
    std::printf("| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
    auto lat = s.latencies;
    const double p50 = percentile(lat, 0.50), p99 = percentile(lat, 0.99),
                 pmax = percentile(lat, 1.0);
    std::printf("| %d | %.0f | %lu | %lu | %.0f | %.2f | %.2f | %.2f | %.1f |\n", o.clients,
                static_cast<double>(written) / seconds, static_cast<unsigned long>(s.events),
                static_cast<unsigned long>(expected), static_cast<double>(s.events) / seconds, p50,
                p99, pmax,
                o.server_pid ? static_cast<double>(rss_after - rss_before) / o.clients : 0.0);
    std::printf("server RSS: %ld KiB before connecting, %ld KiB with %d idle subscribed clients; "
                "%lu errors\n",
                rss_before, rss_after, o.clients, static_cast<unsigned long>(s.errors));
    std::printf("command:");
    for (int i = 0; i < argc; ++i)
        std::printf(" %s", argv[i]);
    std::printf("\n");
    return s.events == expected && failed == 0 ? 0 : 1;
}
