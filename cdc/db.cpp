#include "cdc/db.hpp"

#include <libpq-fe.h>
#include <pqxx/pqxx>

namespace pgpush::cdc::db {

const std::vector<std::pair<std::string, std::string>>& output_settings() {
    static const std::vector<std::pair<std::string, std::string>> settings = {
        {"DateStyle", "ISO"},        {"TimeZone", "UTC"},     {"IntervalStyle", "iso_8601"},
        {"extra_float_digits", "3"}, {"bytea_output", "hex"}, {"client_encoding", "UTF8"},
    };
    return settings;
}

namespace {

std::string quote_value(const std::string& v) {
    std::string out = "'";
    for (char c : v) {
        if (c == '\'' || c == '\\') out += '\\';
        out += c;
    }
    return out + "'";
}

// The user's conninfo (URL or key=value) as key=value, with our defaults for what it leaves unset.
std::string with_defaults(const std::string& conninfo, const std::string& application_name) {
    char* err = nullptr;
    PQconninfoOption* opts = PQconninfoParse(conninfo.c_str(), &err);
    if (opts == nullptr) {
        std::string why = err ? err : "cannot parse the connection string";
        if (err) PQfreemem(err);
        throw pqxx::broken_connection(first_line(why));
    }
    std::string out;
    bool timeout_set = false;
    for (auto* o = opts; o->keyword != nullptr; ++o) {
        if (o->val == nullptr) continue;
        if (std::string_view(o->keyword) == "connect_timeout") timeout_set = true;
        if (!out.empty()) out += ' ';
        out += std::string(o->keyword) + "=" + quote_value(o->val);
    }
    PQconninfoFree(opts);
    if (!timeout_set) out += " connect_timeout=10";
    out += " fallback_application_name=" + quote_value(application_name);
    return out;
}

} // namespace

struct connection::impl {
    explicit impl(const std::string& conninfo) : conn(conninfo) {}
    pqxx::connection conn;
};

connection::connection(const std::string& conninfo, const std::string& application_name)
    : impl_(std::make_unique<impl>(with_defaults(conninfo, application_name))) {
    std::string sql;
    for (const auto& [k, v] : output_settings())
        sql += "SET " + k + " = " + quote_value(v) + "; ";
    pqxx::nontransaction(impl_->conn).exec(sql);
}

connection::~connection() = default;

pqxx::connection_base& connection::get() {
    return impl_->conn;
}

bool connection::is_open() const {
    return impl_->conn.is_open();
}

void connection::cancel() noexcept {
    try {
        impl_->conn.cancel_query();
    } catch (...) {
    }
}

std::string first_line(const std::string& message) {
    std::string s = message.substr(0, message.find('\n'));
    while (!s.empty() && (s.back() == ' ' || s.back() == '\r'))
        s.pop_back();
    return s;
}

bool is_transient(const std::exception& e) {
    if (dynamic_cast<const pqxx::broken_connection*>(&e) != nullptr ||
        dynamic_cast<const pqxx::in_doubt_error*>(&e) != nullptr) {
        // A connection that could not be made or was lost. Some of these are mistakes, not
        // outages: say so rather than retry them for ever.
        const std::string m = e.what();
        for (const char* fatal :
             {"password authentication failed", "authentication failed", "does not exist",
              "pg_hba.conf", "invalid connection option", "invalid URI", "missing \"=\"",
              "could not translate host name", "server does not support SSL"}) {
            if (m.find(fatal) != std::string::npos) return false;
        }
        return true;
    }
    if (const auto* s = dynamic_cast<const pqxx::sql_error*>(&e)) {
        const std::string& state = s->sqlstate();
        // 08: connection exception; 57P01-57P03: admin/crash shutdown, cannot connect now.
        return state.rfind("08", 0) == 0 || state == "57P01" || state == "57P02" ||
               state == "57P03";
    }
    // libpqxx reports some losses as a plain failure ("not connected", "Lost connection").
    if (dynamic_cast<const pqxx::failure*>(&e) != nullptr) {
        const std::string m = e.what();
        return m.find("not connected") != std::string::npos ||
               m.find("onnection") != std::string::npos;
    }
    return false;
}

} // namespace pgpush::cdc::db
