#pragma once

// Accepts connections and hands each to the next I/O thread in turn.

#include <memory>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "push/http_session.hpp"

namespace pgpush::push {

class listener : public std::enable_shared_from_this<listener> {
public:
    listener(net::io_context& accept_on, std::vector<net::io_context*> workers,
             net::ip::tcp::endpoint endpoint, session_context& ctx, http_session::health_fn health);
    void run();
    void stop();
    net::ip::tcp::endpoint local_endpoint() const { return acceptor_.local_endpoint(); }

private:
    void accept();

    net::ip::tcp::acceptor acceptor_;
    std::vector<net::io_context*> workers_;
    std::size_t next_ = 0;
    session_context& ctx_;
    http_session::health_fn health_;
};

} // namespace pgpush::push
