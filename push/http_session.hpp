#pragma once

// Serves one HTTP connection: /healthz, /metrics, and the upgrade to a WebSocket (on /ws or /).

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "push/session_context.hpp"

namespace pgpush::push {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;

class http_session : public std::enable_shared_from_this<http_session> {
public:
    using health_fn = std::function<std::pair<bool, std::string>()>; // (healthy, JSON body)
    http_session(net::ip::tcp::socket&& socket, session_context& ctx, health_fn health);
    void run();

private:
    void read();
    void on_read(beast::error_code ec, std::size_t);
    void on_write(bool keep_alive, beast::error_code ec, std::size_t);

    beast::tcp_stream stream_;
    beast::flat_buffer buffer_;
    std::optional<http::request_parser<http::string_body>> parser_;
    http::response<http::string_body> response_;
    session_context& ctx_;
    health_fn health_;
};

} // namespace pgpush::push
