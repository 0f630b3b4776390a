#include "tests/support/ws_client.hpp"

#include <cstdlib>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <jwt.h>

namespace pgpush::testing {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;

struct ws_client::impl {
    net::io_context io;
    websocket::stream<beast::tcp_stream> ws{io};
    beast::flat_buffer buffer;
    bool closed = false;
    bool reading = true;
    bool timed_out = false;
};

ws_client::ws_client(int port, const std::string& target) : impl_(std::make_unique<impl>()) {
    net::ip::tcp::endpoint ep(net::ip::make_address("127.0.0.1"),
                              static_cast<unsigned short>(port));
    beast::get_lowest_layer(impl_->ws).expires_after(std::chrono::seconds(10));
    beast::get_lowest_layer(impl_->ws).connect(ep);
    beast::get_lowest_layer(impl_->ws).expires_never();
    impl_->ws.read_message_max(64 * 1024 * 1024);
    impl_->ws.handshake("127.0.0.1:" + std::to_string(port), target);
}

ws_client::~ws_client() {
    beast::error_code ignored;
    beast::get_lowest_layer(impl_->ws).socket().close(ignored);
}

void ws_client::send(const std::string& text) {
    impl_->ws.text(true);
    impl_->ws.write(net::buffer(text));
}

void ws_client::send_binary(const std::string& bytes) {
    impl_->ws.binary(true);
    impl_->ws.write(net::buffer(bytes));
}

std::optional<nlohmann::json> ws_client::next(std::chrono::milliseconds timeout) {
    if (impl_->closed) return std::nullopt;
    std::optional<beast::error_code> result;
    impl_->ws.async_read(impl_->buffer, [&](beast::error_code ec, std::size_t) { result = ec; });
    impl_->io.restart();
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!result && std::chrono::steady_clock::now() < deadline) {
        impl_->io.run_one_until(deadline);
    }
    if (!result) {
        // Abandon the read: close the socket so it completes, leaving the client unusable.
        beast::error_code ignored;
        beast::get_lowest_layer(impl_->ws).socket().cancel(ignored);
        impl_->io.restart();
        while (!result)
            impl_->io.run_one();
        impl_->closed = true;
        impl_->timed_out = true;
        return std::nullopt;
    }
    if (*result) {
        impl_->closed = true;
        return std::nullopt;
    }
    auto text = beast::buffers_to_string(impl_->buffer.data());
    impl_->buffer.consume(impl_->buffer.size());
    return nlohmann::json::parse(text);
}

std::optional<nlohmann::json> ws_client::next_of(const std::string& type, const nlohmann::json& id,
                                                 std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (true) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) return std::nullopt;
        auto m = next(left);
        if (!m) return std::nullopt;
        if ((*m)["type"] == type && (id.is_null() || (*m)["id"] == id)) return m;
    }
}

bool ws_client::closed() const {
    return impl_->closed;
}

bool ws_client::timed_out() const {
    return impl_->timed_out;
}

int ws_client::close_code() const {
    return static_cast<int>(impl_->ws.reason().code);
}

std::string ws_client::close_reason() const {
    return std::string(impl_->ws.reason().reason.c_str());
}

void ws_client::stop_reading() {
    // Shrink our receive buffer so the server's writes back up quickly.
    beast::get_lowest_layer(impl_->ws).socket().set_option(
        net::socket_base::receive_buffer_size(4096));
}

void ws_client::resume_reading() {
    beast::get_lowest_layer(impl_->ws).socket().set_option(
        net::socket_base::receive_buffer_size(4 * 1024 * 1024));
}

std::pair<int, std::string> http_get(int port, const std::string& target) {
    net::io_context io;
    beast::tcp_stream stream(io);
    stream.connect(net::ip::tcp::endpoint(net::ip::make_address("127.0.0.1"),
                                          static_cast<unsigned short>(port)));
    http::request<http::empty_body> req{http::verb::get, target, 11};
    req.set(http::field::host, "127.0.0.1");
    http::write(stream, req);
    beast::flat_buffer buffer;
    http::response<http::string_body> res;
    http::read(stream, buffer, res);
    return {static_cast<int>(res.result_int()), res.body()};
}

std::string make_token(const nlohmann::json& claims, const std::string& secret,
                       const std::string& alg) {
    return make_token(claims, secret, alg, nlohmann::json::object());
}

std::string make_token(const nlohmann::json& claims, const std::string& secret,
                       const std::string& alg, const nlohmann::json& headers) {
    jwt_t* jwt = nullptr;
    jwt_new(&jwt);
    jwt_add_grants_json(jwt, claims.dump().c_str());
    if (!headers.empty()) jwt_add_headers_json(jwt, headers.dump().c_str());
    jwt_set_alg(jwt, jwt_str_alg(alg.c_str()),
                reinterpret_cast<const unsigned char*>(secret.data()),
                static_cast<int>(secret.size()));
    char* s = jwt_encode_str(jwt);
    std::string out = s ? s : "";
    std::free(s);
    jwt_free(jwt);
    return out;
}

} // namespace pgpush::testing
