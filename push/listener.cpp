#include "push/listener.hpp"

#include <spdlog/spdlog.h>

namespace pgpush::push {

listener::listener(net::io_context& accept_on, std::vector<net::io_context*> workers,
                   net::ip::tcp::endpoint endpoint, session_context& ctx,
                   http_session::health_fn health)
    : acceptor_(accept_on), workers_(std::move(workers)), ctx_(ctx), health_(std::move(health)) {
    acceptor_.open(endpoint.protocol());
    acceptor_.set_option(net::socket_base::reuse_address(true));
    acceptor_.bind(endpoint);
    acceptor_.listen(net::socket_base::max_listen_connections);
}

void listener::run() {
    accept();
}

void listener::stop() {
    beast::error_code ignored;
    acceptor_.close(ignored);
}

void listener::accept() {
    auto& io = *workers_[next_++ % workers_.size()];
    acceptor_.async_accept(
        io, [self = shared_from_this()](beast::error_code ec, net::ip::tcp::socket socket) {
            if (ec == net::error::operation_aborted) return;
            if (!ec) {
                socket.set_option(net::ip::tcp::no_delay(true), ec);
                std::make_shared<http_session>(std::move(socket), self->ctx_, self->health_)->run();
            } else if (ec == net::error::no_descriptors) {
                spdlog::warn("accept: out of file descriptors (raise ulimit -n)");
            }
            self->accept();
        });
}

} // namespace pgpush::push
