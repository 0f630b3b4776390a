#include "push/http_session.hpp"

#include <boost/beast/websocket.hpp>

#include "push/ws_session.hpp"

namespace pgpush::push {

namespace websocket = boost::beast::websocket;

namespace {

std::string path_of(std::string_view target) {
    return std::string(target.substr(0, target.find('?')));
}

} // namespace

http_session::http_session(net::ip::tcp::socket&& socket, session_context& ctx, health_fn health)
    : stream_(std::move(socket)), ctx_(ctx), health_(std::move(health)) {}

void http_session::run() {
    read();
}

void http_session::read() {
    parser_.emplace();
    parser_->body_limit(8 * 1024);
    parser_->header_limit(16 * 1024);
    stream_.expires_after(std::chrono::seconds(30));
    http::async_read(stream_, buffer_, *parser_,
                     beast::bind_front_handler(&http_session::on_read, shared_from_this()));
}

void http_session::on_read(beast::error_code ec, std::size_t) {
    if (ec) return;
    auto req = parser_->release();
    const std::string path = path_of(req.target());
    if (websocket::is_upgrade(req)) {
        if (path != "/ws" && path != "/") {
            response_ = {http::status::not_found, req.version()};
        } else {
            stream_.expires_never();
            std::make_shared<ws_session>(stream_.release_socket(), ctx_)->run(std::move(req));
            return;
        }
    } else if (req.method() == http::verb::get && path == "/healthz") {
        auto [ok, body] = health_();
        response_ = {ok ? http::status::ok : http::status::service_unavailable, req.version()};
        response_.set(http::field::content_type, "application/json");
        response_.body() = std::move(body);
    } else if (req.method() == http::verb::get && path == "/metrics") {
        response_ = {http::status::ok, req.version()};
        response_.set(http::field::content_type, "text/plain; version=0.0.4");
        response_.body() = ctx_.stats.prometheus();
    } else {
        response_ = {http::status::not_found, req.version()};
        response_.set(http::field::content_type, "text/plain");
        response_.body() = "not found: WebSocket on /ws; /healthz; /metrics\n";
    }
    response_.set(http::field::server, "pgpush");
    response_.keep_alive(req.keep_alive());
    response_.prepare_payload();
    http::async_write(
        stream_, response_,
        beast::bind_front_handler(&http_session::on_write, shared_from_this(), req.keep_alive()));
}

void http_session::on_write(bool keep_alive, beast::error_code ec, std::size_t) {
    if (ec) return;
    if (!keep_alive) {
        beast::error_code ignored;
        stream_.socket().shutdown(net::ip::tcp::socket::shutdown_send, ignored);
        return;
    }
    read();
}

} // namespace pgpush::push
