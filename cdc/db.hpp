#pragma once

// Synchronous database access (libpqxx) for the threads that may block: snapshot workers, the
// catalog and DDL workers, the prober, start-up. One way to connect, so every such connection
// pins the same session settings as the replication stream (values then print alike on every
// path), and one way to tell a passing outage from a mistake that retrying will not fix.

#include <exception>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace pqxx {
class connection_base;
}

namespace pgpush::cdc::db {

// Settings every pgpush connection pins, whatever the server's or role's defaults: value_json
// and the rules' value parsing rely on them.
const std::vector<std::pair<std::string, std::string>>& output_settings();

// A pqxx connection in a box (pqxx 6's connection is a template alias; this keeps it out of
// headers).
class connection {
public:
    // Connects (libpq's connect_timeout defaults to 10 s unless the conninfo sets one) and pins
    // output_settings() and application_name. Throws what libpqxx throws.
    connection(const std::string& conninfo, const std::string& application_name);
    ~connection();
    connection(const connection&) = delete;
    connection& operator=(const connection&) = delete;

    pqxx::connection_base& get();
    bool is_open() const;
    // From another thread: asks the server to cancel the statement running now (if any).
    void cancel() noexcept;

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

// Whether an error from libpqxx/libpq means the database was unreachable or going away (server
// down, restarting, connection lost, "the database system is starting up"): worth a retry, and
// a client hears `unavailable`. Authentication failures, a missing database and SQL errors are
// not.
bool is_transient(const std::exception& e);

// The first line of an error message, without trailing newlines: libpq messages carry a DETAIL
// or HINT on further lines.
std::string first_line(const std::string& message);

} // namespace pgpush::cdc::db
