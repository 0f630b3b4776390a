#include "cdc/pg_async.hpp"

#include <poll.h>

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace pgpush::cdc::pg {

using namespace boost::asio::experimental::awaitable_operators;

std::string last_error(PGconn* conn) {
    std::string msg = conn ? PQerrorMessage(conn) : "out of memory";
    while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' '))
        msg.pop_back();
    if (msg.empty()) msg = "unknown libpq error";
    return msg;
}

socket_waiter::socket_waiter(const net::any_io_executor& ex, int fd) : sd_(ex, fd) {}

socket_waiter::~socket_waiter() {
    sd_.release();
}

net::awaitable<void> socket_waiter::wait(net::posix::descriptor_base::wait_type what) {
    co_await sd_.async_wait(what, net::use_awaitable);
}

bool socket_waiter::has_pending_input() const {
    pollfd p{const_cast<net::posix::stream_descriptor&>(sd_).native_handle(), POLLIN, 0};
    return ::poll(&p, 1, 0) > 0 && (p.revents & (POLLIN | POLLHUP | POLLERR)) != 0;
}

namespace {

std::string first_line(std::string s) {
    auto nl = s.find('\n');
    if (nl != std::string::npos) s.resize(nl);
    return s;
}

std::string sqlstate_of(const PGresult* r) {
    const char* s = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    return s ? s : "";
}

// The user's "options" from their conninfo, so ours can be appended rather than replace them.
std::string user_options(const std::string& conninfo) {
    char* err = nullptr;
    PQconninfoOption* opts = PQconninfoParse(conninfo.c_str(), &err);
    if (err) PQfreemem(err);
    std::string out;
    if (opts == nullptr) return out;
    for (auto* o = opts; o->keyword != nullptr; ++o) {
        if (std::string_view(o->keyword) == "options" && o->val != nullptr) out = o->val;
    }
    PQconninfoFree(opts);
    return out;
}

} // namespace

net::awaitable<connection> async_connect(connect_options options) {
    auto ex = co_await net::this_coro::executor;

    std::string session_options = user_options(options.conninfo);
    for (const auto& [k, v] : options.settings) {
        if (!session_options.empty()) session_options += ' ';
        session_options += "-c " + k + "=" + v;
    }
    // Keywords before "dbname" are defaults the user's conninfo overrides; those after it are
    // ours alone (libpq: later entries win over the expanded dbname).
    std::vector<const char*> keys = {"keepalives",       "keepalives_idle", "keepalives_interval",
                                     "keepalives_count", "dbname",          "application_name",
                                     "options"};
    std::vector<const char*> values = {"1",
                                       "10",
                                       "5",
                                       "3",
                                       options.conninfo.c_str(),
                                       options.application_name.c_str(),
                                       session_options.c_str()};
    if (session_options.empty()) {
        keys.pop_back();
        values.pop_back();
    }
    if (options.replication) {
        keys.push_back("replication");
        values.push_back("database");
    }
    keys.push_back(nullptr);
    values.push_back(nullptr);

    connection conn(PQconnectStartParams(keys.data(), values.data(), /*expand_dbname=*/1));
    if (!conn || PQstatus(conn.get()) == CONNECTION_BAD) {
        throw error(first_line(last_error(conn.get())));
    }

    net::steady_timer deadline(ex, options.timeout);
    // Per libpq: start as if PQconnectPoll had said PGRES_POLLING_WRITING. The socket may change
    // between polls (libpq tries each address in turn), so wait on whichever is current.
    PostgresPollingStatusType state = PGRES_POLLING_WRITING;
    while (state != PGRES_POLLING_OK) {
        if (state == PGRES_POLLING_FAILED) throw error(first_line(last_error(conn.get())));
        socket_waiter socket(ex, PQsocket(conn.get()));
        // (No ?: between two awaitables inside co_await: GCC 12 miscompiles it.)
        const auto what = state == PGRES_POLLING_READING ? net::posix::descriptor_base::wait_read
                                                         : net::posix::descriptor_base::wait_write;
        auto waited = co_await (socket.wait(what) || deadline.async_wait(net::use_awaitable));
        if (waited.index() == 1) {
            throw error("timed out after " + std::to_string(options.timeout.count()) +
                        " ms connecting to the database");
        }
        state = PQconnectPoll(conn.get());
    }
    if (PQsetnonblocking(conn.get(), 1) != 0) throw error(last_error(conn.get()));
    co_return conn;
}

net::awaitable<void> async_flush(PGconn* conn, socket_waiter& socket) {
    while (true) {
        int r = PQflush(conn);
        if (r == 0) co_return;
        if (r < 0) throw error(last_error(conn));
        // While waiting to write, keep reading so the server is never stuck writing to us.
        co_await (socket.writable() || socket.readable());
        if (PQconsumeInput(conn) == 0) throw error(last_error(conn));
    }
}

net::awaitable<result> async_exec(PGconn* conn, socket_waiter& socket, std::string_view sql) {
    std::string text(sql);
    if (PQsendQuery(conn, text.c_str()) == 0) throw error(last_error(conn));
    co_await async_flush(conn, socket);

    result first;
    while (true) {
        while (PQisBusy(conn)) {
            if (!socket.has_pending_input()) co_await socket.readable();
            if (PQconsumeInput(conn) == 0) throw error(last_error(conn));
        }
        result r(PQgetResult(conn));
        if (!r) break;
        auto status = PQresultStatus(r.get());
        if (status == PGRES_COPY_BOTH) co_return r;
        if (status == PGRES_FATAL_ERROR || status == PGRES_BAD_RESPONSE) {
            auto msg = first_line(PQresultErrorMessage(r.get()));
            auto state = sqlstate_of(r.get());
            // Drain what is left so the connection stays usable, then report.
            while (true) {
                while (PQisBusy(conn)) {
                    if (!socket.has_pending_input()) co_await socket.readable();
                    if (PQconsumeInput(conn) == 0) break;
                }
                result rest(PQgetResult(conn));
                if (!rest) break;
            }
            throw error(msg.empty() ? last_error(conn) : msg, state);
        }
        if (!first) first = std::move(r);
    }
    co_return first;
}

std::string redact_conninfo(std::string_view conninfo) {
    std::string s(conninfo);
    // URL form: scheme://user:password@host → scheme://user:***@host
    if (auto scheme = s.find("://"); scheme != std::string::npos) {
        auto at = s.find('@', scheme + 3);
        auto colon = s.find(':', scheme + 3);
        if (at != std::string::npos && colon != std::string::npos && colon < at) {
            s.replace(colon + 1, at - colon - 1, "***");
        }
    }
    // key=value form and URL query parameters: password=... up to the next space or '&'.
    for (std::size_t p = s.find("password="); p != std::string::npos;
         p = s.find("password=", p + 1)) {
        auto start = p + 9;
        auto end = s.find_first_of(" &", start);
        if (end == std::string::npos) end = s.size();
        s.replace(start, end - start, "***");
    }
    return s;
}

} // namespace pgpush::cdc::pg
