#include "cdc/table_catalog.hpp"

#include <map>

#include <pqxx/pqxx>

namespace pgpush::cdc {

std::vector<table_description> describe_tables(const std::string& conninfo,
                                               const std::vector<std::string>& qualified) {
    pqxx::connection conn(conninfo);
    return describe_tables(conn, qualified);
}

std::vector<table_description> describe_tables(pqxx::connection_base& conn,
                                               const std::vector<std::string>& qualified) {
    pqxx::nontransaction tx(conn);
    std::string names = "{";
    for (std::size_t i = 0; i < qualified.size(); ++i) {
        if (i) names += ',';
        names += '"';
        for (char c : qualified[i]) {
            if (c == '"' || c == '\\') names += '\\';
            names += c;
        }
        names += '"';
    }
    names += '}';
    // Names are matched as written (already lower-cased/qualified by the caller), not parsed as
    // SQL, so "public.Odd" finds a table created as "Odd".
    auto rows = tx.exec_params(
        "SELECT n.nspname, c.relname, c.relreplident, a.attname, a.atttypid::int8, "
        "format_type(a.atttypid, a.atttypmod) "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_attribute a ON a.attrelid = c.oid "
        "WHERE c.relkind IN ('r', 'p') AND n.nspname || '.' || c.relname = ANY($1::text[]) "
        "AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '' "
        "ORDER BY n.nspname, c.relname, a.attnum",
        names);
    std::map<std::string, table_description> by_name;
    for (const auto& r : rows) {
        std::string key = r[0].as<std::string>() + "." + r[1].as<std::string>();
        auto& t = by_name[key];
        t.schema = r[0].as<std::string>();
        t.name = r[1].as<std::string>();
        t.replica_identity = r[2].as<std::string>().front();
        t.columns.push_back({r[3].as<std::string>(), r[4].as<oid>(), r[5].as<std::string>()});
    }
    std::vector<table_description> out;
    for (auto& [k, v] : by_name)
        out.push_back(std::move(v));
    return out;
}

} // namespace pgpush::cdc
