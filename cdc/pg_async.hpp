#pragma once

// libpq in non-blocking mode on Asio, from C++20 coroutines. libpq owns the socket; Asio only
// waits on it.

#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <libpq-fe.h>

#include "cdc/sql_quote.hpp"

namespace pgpush::cdc::pg {

namespace net = boost::asio;

struct connection_deleter {
    void operator()(PGconn* c) const { PQfinish(c); }
};
using connection = std::unique_ptr<PGconn, connection_deleter>;

struct result_deleter {
    void operator()(PGresult* r) const { PQclear(r); }
};
using result = std::unique_ptr<PGresult, result_deleter>;

// A failure reported by libpq or the server. sqlstate is empty when the connection itself failed.
class error : public std::runtime_error {
public:
    error(const std::string& message, std::string sqlstate = {})
        : std::runtime_error(message), sqlstate_(std::move(sqlstate)) {}
    const std::string& sqlstate() const { return sqlstate_; }

private:
    std::string sqlstate_;
};

// libpq's last error on `conn`, first line only, without the trailing newline.
std::string last_error(PGconn* conn);

// Waits on a libpq socket. Releases (never closes) the descriptor on destruction.
class socket_waiter {
public:
    socket_waiter(const net::any_io_executor& ex, int fd);
    ~socket_waiter();
    socket_waiter(const socket_waiter&) = delete;
    socket_waiter& operator=(const socket_waiter&) = delete;

    net::posix::stream_descriptor& descriptor() { return sd_; }
    net::awaitable<void> readable() { return wait(net::posix::descriptor_base::wait_read); }
    net::awaitable<void> writable() { return wait(net::posix::descriptor_base::wait_write); }
    net::awaitable<void> wait(net::posix::descriptor_base::wait_type what);

    // True when the socket has bytes the kernel holds for us right now. Asio's epoll reactor is
    // edge-triggered and libpq may leave bytes unread, so ask before waiting for a new edge.
    bool has_pending_input() const;

private:
    net::posix::stream_descriptor sd_;
};

struct connect_options {
    std::string conninfo;     // URL or key=value string, as the user gave it
    bool replication = false; // replication=database: a walsender that also runs SQL
    std::string application_name = "pgpush";
    // Session settings appended to the user's own "options".
    std::vector<std::pair<std::string, std::string>> settings;
    std::chrono::milliseconds timeout{10'000};
};

// Connects without blocking the thread; throws error on failure or timeout. The connection is
// left in non-blocking mode. TCP keepalives default on (the user's conninfo can override them),
// so a silently dead peer is noticed in under a minute.
net::awaitable<connection> async_connect(connect_options options);

// Sends `sql` (simple query protocol) and waits for its result. Returns the first result; for a
// COPY BOTH result (START_REPLICATION) returns at once, leaving the connection in copy mode.
// Throws error carrying the SQLSTATE when the command fails.
net::awaitable<result> async_exec(PGconn* conn, socket_waiter& socket, std::string_view sql);

// Flushes libpq's output buffer, waiting for the socket as needed.
net::awaitable<void> async_flush(PGconn* conn, socket_waiter& socket);

using sql::quote_identifier;
using sql::quote_literal;

// A conninfo with any password removed, for logs and error messages.
std::string redact_conninfo(std::string_view conninfo);

} // namespace pgpush::cdc::pg
