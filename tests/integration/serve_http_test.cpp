// `pgpush serve` as an HTTP server: every malformed or oversized request gets the status nginx
// would give it (400, 405, 413, 414, 426, 431) and a clean close the client can read, not a
// reset; WebSocket upgrades are checked as RFC 6455 section 4.2.1 asks; keep-alive serves
// several requests on one connection. After each bad request the server still serves others.
//
// Requests go over raw TCP (any bytes, written while the answer is read, as a server may answer
// before the request is complete). Nothing sleeps: every read has a deadline.

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/buffer.hpp>
#include <boost/beast/http.hpp>

#include "tests/integration/serve_fixture.hpp"

namespace pgpush::testing {
namespace {

namespace http = boost::beast::http;
using nlohmann::json;

// A client on one TCP connection that writes raw bytes and reads HTTP responses.
class raw_client {
public:
    explicit raw_client(int port) {
        fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_port = htons(static_cast<std::uint16_t>(port));
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (fd_ < 0 || ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
            throw std::runtime_error(std::string("connect: ") + std::strerror(errno));
        }
        ::fcntl(fd_, F_SETFL, O_NONBLOCK);
    }
    ~raw_client() { ::close(fd_); }
    raw_client(const raw_client&) = delete;
    raw_client& operator=(const raw_client&) = delete;

    // Queues bytes; they are written while the next response is read.
    void send(std::string bytes) { out_ += bytes; }

    // The next response (its head and body), or nullopt when the connection closed or was reset
    // before one was complete, or at the deadline. Sets error() to what ended the read.
    std::optional<http::response<http::string_body>> response(bool to_head = false,
                                                              std::chrono::seconds timeout = 15s) {
        http::response_parser<http::string_body> parser;
        parser.body_limit(16 << 20);
        parser.skip(to_head);
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        while (true) {
            // The parser takes the header, then the body, a call each.
            while (!in_.empty() && !parser.is_done()) {
                boost::system::error_code ec;
                const auto used = parser.put(boost::asio::buffer(in_), ec);
                in_.erase(0, used);
                if (ec == http::error::need_more) break;
                if (ec) {
                    error_ = "unparsable response: " + ec.message();
                    return std::nullopt;
                }
            }
            if (parser.is_done()) return parser.release();
            if (!pump(deadline)) {
                if (eof_ && parser.got_some()) {
                    boost::system::error_code ec;
                    parser.put_eof(ec);
                    if (!ec && parser.is_done()) return parser.release();
                }
                return std::nullopt;
            }
        }
    }

    // After a response that said Connection: close, true when the server then closed the
    // connection cleanly (end of stream), false on a reset, more data, or the deadline.
    bool closed_cleanly(std::chrono::seconds timeout = 15s) {
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        while (in_.empty() && !eof_) {
            if (!pump(deadline)) break;
        }
        return in_.empty() && eof_;
    }

    const std::string& error() const { return error_; }

private:
    // Writes what it can and reads what comes, until something was read, end of stream, an
    // error, or the deadline; false when nothing more can be read.
    bool pump(std::chrono::steady_clock::time_point deadline) {
        if (eof_ || !error_.empty()) return false;
        while (true) {
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                deadline - std::chrono::steady_clock::now());
            if (left.count() <= 0) {
                error_ = "deadline";
                return false;
            }
            pollfd p{fd_, static_cast<short>(POLLIN | (out_.empty() ? 0 : POLLOUT)), 0};
            ::poll(&p, 1, static_cast<int>(left.count()));
            if (p.revents & POLLOUT) {
                const auto n = ::send(fd_, out_.data(), out_.size(), MSG_NOSIGNAL);
                if (n > 0) {
                    out_.erase(0, static_cast<std::size_t>(n));
                } else if (errno != EAGAIN) {
                    out_.clear(); // the server stopped reading: fine once it has answered
                }
            }
            if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
                char buf[65536];
                const auto n = ::recv(fd_, buf, sizeof buf, 0);
                if (n > 0) {
                    in_.append(buf, static_cast<std::size_t>(n));
                    return true;
                }
                if (n == 0) {
                    eof_ = true;
                    return false;
                }
                if (errno != EAGAIN) {
                    error_ = std::string("recv: ") + std::strerror(errno);
                    return false;
                }
            }
        }
    }

    int fd_ = -1;
    std::string out_;
    std::string in_;
    bool eof_ = false;
    std::string error_;
};

// What one request on a new connection got: the status (0: no response), the response, and
// whether the server closed cleanly after it.
struct outcome {
    int status = 0;
    http::response<http::string_body> response;
    bool closed_cleanly = false;
    std::string error;
};

outcome round_trip(int port, std::string request) {
    raw_client c(port);
    c.send(std::move(request));
    outcome o;
    auto r = c.response();
    if (!r) {
        o.error = c.error();
        return o;
    }
    o.status = static_cast<int>(r->result_int());
    o.response = std::move(*r);
    if (!o.response.keep_alive()) o.closed_cleanly = c.closed_cleanly();
    return o;
}

std::string get(const std::string& target, const std::string& fields = "") {
    return "GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" + fields + "\r\n";
}

// A WebSocket upgrade request with the given key and version, and extra fields.
std::string upgrade(const std::string& key, const std::string& version = "13",
                    const std::string& fields = "", const std::string& http_version = "1.1") {
    return "GET /ws HTTP/" + http_version +
           "\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: " +
           key + "\r\nSec-WebSocket-Version: " + version + "\r\n" + fields + "\r\n";
}

const std::string good_key = "dGhlIHNhbXBsZSBub25jZQ=="; // RFC 6455 section 1.3's example

struct bad_request {
    const char* what;
    std::string request;
    int status;
};

class serve_http_test : public serve_test {
protected:
    // /healthz, once the engine has sampled its stream (it may answer 503 for a moment after it
    // starts listening). Polls with a deadline: there is no event to await over HTTP.
    void await_healthy() {
        const auto deadline = std::chrono::steady_clock::now() + 15s;
        while (round_trip(port(), get("/healthz")).status != 200) {
            ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "never healthy";
        }
    }

    // Each request on its own connection gets its status, Connection: close, a short body and a
    // clean close; after each, another client is served.
    void expect_refused(const std::vector<bad_request>& cases) {
        for (const auto& c : cases) {
            SCOPED_TRACE(c.what);
            auto o = round_trip(port(), c.request);
            EXPECT_EQ(o.status, c.status) << o.error;
            if (o.status == 0) continue;
            EXPECT_FALSE(o.response.keep_alive());
            EXPECT_EQ(o.response[http::field::server], "pgpush");
            EXPECT_FALSE(o.response.body().empty());
            EXPECT_LT(o.response.body().size(), 512u);
            EXPECT_TRUE(o.closed_cleanly) << "no clean close after the answer";
            EXPECT_EQ(round_trip(port(), get("/healthz")).status, 200) << "not served afterwards";
        }
    }

    // pgpush_connections_refused_total{reason=...}
    double refused(const std::string& reason) {
        auto o = round_trip(port(), get("/metrics"));
        const std::string key = "pgpush_connections_refused_total{reason=\"" + reason + "\"} ";
        const auto at = o.response.body().find(key);
        return at == std::string::npos ? -1 : std::stod(o.response.body().substr(at + key.size()));
    }
};

TEST_F(serve_http_test, oversized_headers_get_431) {
    start();
    await_healthy();
    std::string many;
    for (int i = 0; i < 5000; ++i)
        many += "X-Field-" + std::to_string(i) + ": v\r\n";
    std::string hundred_and_one; // small enough in bytes, too many fields
    for (int i = 0; i < 101; ++i)
        hundred_and_one += "X-F" + std::to_string(i) + ": v\r\n";
    expect_refused({
        {"one 70 KiB field", get("/healthz", "X-Big: " + std::string(70 * 1024, 'a') + "\r\n"),
         431},
        {"5,000 fields", get("/healthz", many), 431},
        {"101 fields", get("/healthz", hundred_and_one), 431},
        {"a 20 KiB header on the WebSocket path",
         upgrade(good_key, "13", "Cookie: " + std::string(20 * 1024, 'c') + "\r\n"), 431},
    });
    EXPECT_EQ(refused("header_too_large"), 4);
}

TEST_F(serve_http_test, long_request_targets_get_414) {
    start();
    await_healthy();
    expect_refused({
        {"a 1 MiB URL", get("/healthz?" + std::string(1 << 20, 'q')), 414},
        {"a 9 KiB URL (header under its limit)", get("/metrics?" + std::string(9 * 1024, 'q')),
         414},
        {"a 12 KiB URL with a 10 KiB field",
         get("/ws?" + std::string(12 * 1024, 'q'),
             "X-Pad: " + std::string(10 * 1024, 'p') + "\r\n"),
         414},
    });
    EXPECT_EQ(refused("uri_too_long"), 3);
}

TEST_F(serve_http_test, oversized_bodies_get_413) {
    start();
    await_healthy();
    std::string chunked = "POST /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: "
                          "chunked\r\n\r\n";
    for (int i = 0; i < 64; ++i)
        chunked += "1000\r\n" + std::string(4096, 'b') + "\r\n";
    chunked += "0\r\n\r\n";
    expect_refused({
        {"a 1 MiB body",
         "POST /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1048576\r\n\r\n" +
             std::string(1 << 20, 'b'),
         413},
        {"a 1 MiB body on GET",
         "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1048576\r\n\r\n" +
             std::string(1 << 20, 'b'),
         413},
        {"256 KiB chunked", chunked, 413},
    });
    EXPECT_EQ(refused("body_too_large"), 3);
}

TEST_F(serve_http_test, unparsable_requests_get_400) {
    start();
    await_healthy();
    expect_refused({
        {"a garbage request line", "HELLO\r\n\r\n", 400},
        {"binary (a TLS ClientHello)",
         std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11), 400},
        {"spaces in the target", "GET /health z HTTP/1.1\r\nHost: x\r\n\r\n", 400},
        {"no version", "GET /healthz\r\nHost: x\r\n\r\n", 400},
        {"a field without a colon", get("/healthz", "NoColonHere\r\n"), 400},
        {"a target that is not a path", "GET healthz HTTP/1.1\r\nHost: x\r\n\r\n", 400},
        {"HTTP/1.1 without Host", "GET /healthz HTTP/1.1\r\n\r\n", 400},
        {"two Hosts", get("/healthz", "Host: other\r\n"), 400},
        {"two differing Content-Lengths",
         "POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
         400},
        {"a bad chunk",
         "POST /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400},
        {"HTTP/2.0 in text", "GET /healthz HTTP/2.0\r\nHost: x\r\n\r\n", 400},
    });
}

TEST_F(serve_http_test, methods_a_path_does_not_serve_get_405) {
    start();
    await_healthy();
    const std::vector<bad_request> cases = {
        {"POST /healthz", "POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 405},
        {"DELETE /metrics", "DELETE /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 405},
        {"an unknown method", "BREW /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 405},
        {"PUT /ws", "PUT /ws HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 405},
        {"an upgrade by POST",
         "POST /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: " +
             good_key + "\r\nSec-WebSocket-Version: 13\r\nContent-Length: 0\r\n\r\n",
         405},
    };
    expect_refused(cases);
    for (const auto& c : cases) {
        auto o = round_trip(port(), c.request);
        EXPECT_FALSE(o.response[http::field::allow].empty()) << c.what;
    }
    // Unknown paths are still 404, and keep the connection.
    auto o = round_trip(port(), get("/nothing-here"));
    EXPECT_EQ(o.status, 404);
}

TEST_F(serve_http_test, websocket_upgrades_are_checked_before_they_are_accepted) {
    start();
    await_healthy();
    expect_refused({
        {"a key that is not 16 bytes of base64", upgrade("abc"), 400},
        {"a 15-byte key", upgrade("dGhlIHNhbXBsZSBub25jZQ="), 400},
        {"a key of 24 characters outside base64", upgrade("dGhlIHNhbXBsZSBub25jZ!=="), 400},
        {"no key",
         "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Version: 13\r\n\r\n",
         400},
        {"two keys", upgrade(good_key, "13", "Sec-WebSocket-Key: " + good_key + "\r\n"), 400},
        {"Connection without upgrade",
         "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive\r\n"
         "Sec-WebSocket-Key: " +
             good_key + "\r\nSec-WebSocket-Version: 13\r\n\r\n",
         400},
        {"Upgrade to something else",
         "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: " +
             good_key + "\r\nSec-WebSocket-Version: 13\r\n\r\n",
         400},
        {"HTTP/1.0", upgrade(good_key, "13", "", "1.0"), 400},
        {"a plain GET on the WebSocket path", get("/ws"), 426},
    });
    auto v8 = round_trip(port(), upgrade(good_key, "8"));
    EXPECT_EQ(v8.status, 426);
    EXPECT_EQ(v8.response[http::field::sec_websocket_version], "13");
    EXPECT_TRUE(v8.closed_cleanly);

    // A good handshake is accepted (101), by hand and by a WebSocket client that then works.
    raw_client raw(port());
    raw.send(upgrade(good_key));
    auto r = raw.response();
    ASSERT_TRUE(r) << raw.error();
    EXPECT_EQ(r->result_int(), 101u);
    EXPECT_EQ((*r)[http::field::sec_websocket_accept], "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    auto c = connect({{"sub", "alice"}, {"uid", 10}, {"rooms", {1}}});
    subscribe(*c, "r", "SELECT id, name FROM rooms");
}

TEST_F(serve_http_test, keep_alive_serves_several_requests_on_one_connection) {
    start();
    await_healthy();
    raw_client c(port());
    c.send(get("/healthz"));
    auto first = c.response();
    ASSERT_TRUE(first) << c.error();
    EXPECT_EQ(first->result_int(), 200u);
    EXPECT_TRUE(first->keep_alive());
    // Pipelined: three requests in one write, three answers in order.
    c.send(get("/metrics") + "HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n" + get("/nothing"));
    auto metrics = c.response();
    ASSERT_TRUE(metrics) << c.error();
    EXPECT_EQ(metrics->result_int(), 200u);
    EXPECT_NE(metrics->body().find("pgpush_connection_limit "), std::string::npos);
    auto head = c.response(true);
    ASSERT_TRUE(head) << c.error();
    EXPECT_EQ(head->result_int(), 200u);
    EXPECT_NE((*head)[http::field::content_length], "0");
    auto missing = c.response();
    ASSERT_TRUE(missing) << c.error();
    EXPECT_EQ(missing->result_int(), 404u);
    // HTTP/1.0 keep-alive when asked for, and a close after a request that asks for one.
    c.send("GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    auto old = c.response();
    ASSERT_TRUE(old) << c.error();
    EXPECT_TRUE(old->keep_alive());
    c.send(get("/healthz", "Connection: close\r\n"));
    auto last = c.response();
    ASSERT_TRUE(last) << c.error();
    EXPECT_EQ(last->result_int(), 200u);
    EXPECT_FALSE(last->keep_alive());
    EXPECT_TRUE(c.closed_cleanly());
}

} // namespace
} // namespace pgpush::testing
