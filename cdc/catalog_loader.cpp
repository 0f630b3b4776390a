#include "cdc/catalog_loader.hpp"

#include <algorithm>

#include <nlohmann/json.hpp>
#include <pqxx/pqxx>
#include <spdlog/spdlog.h>

#include "cdc/pg_async.hpp"

namespace pgpush::cdc {

struct catalog_loader::connection {
    explicit connection(const std::string& conninfo) : conn(conninfo) {}
    pqxx::connection conn;
};

catalog_loader::catalog_loader(std::string conninfo) : conninfo_(std::move(conninfo)) {}

catalog_loader::~catalog_loader() = default;

void catalog_loader::load(type_catalog& catalog, std::span<const oid> ids) {
    std::vector<oid> todo(ids.begin(), ids.end());
    // Each round fetches what the previous one revealed (an array's element, a composite's field
    // types); Postgres' nesting is shallow, the bound stops a pathological catalog.
    for (int round = 0; round < 16 && !todo.empty(); ++round) {
        std::string array = "{";
        for (std::size_t i = 0; i < todo.size(); ++i) {
            if (i) array += ',';
            array += std::to_string(todo[i]);
        }
        array += '}';
        if (!conn_ || !conn_->conn.is_open()) conn_ = std::make_unique<connection>(conninfo_);
        pqxx::nontransaction tx(conn_->conn);
        auto rows = tx.exec_params(
            "SELECT t.oid, n.nspname, t.typname, t.typtype, t.typcategory, t.typelem, t.typdelim, "
            "t.typbasetype, t.typsubscript = 'array_subscript_handler'::regproc, "
            "COALESCE((SELECT json_agg(json_build_array(a.attname, a.atttypid::int8) ORDER BY "
            "a.attnum) "
            "FROM pg_attribute a WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT "
            "a.attisdropped), '[]') "
            "FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
            "WHERE t.oid = ANY($1::oid[])",
            array);
        std::vector<oid> found;
        for (const auto& r : rows) {
            pg_type_row row;
            row.id = r[0].as<oid>();
            row.nspname = r[1].as<std::string>();
            row.typname = r[2].as<std::string>();
            row.typtype = r[3].as<std::string>().front();
            row.typcategory = r[4].as<std::string>().front();
            row.typelem = r[5].as<oid>();
            row.typdelim = r[6].as<std::string>().front();
            row.typbasetype = r[7].as<oid>();
            row.is_array_subscript = r[8].as<bool>();
            for (const auto& f : nlohmann::json::parse(r[9].as<std::string>())) {
                row.fields.push_back({f.at(0).get<std::string>(), f.at(1).get<oid>()});
            }
            catalog.put(classify(row));
            found.push_back(row.id);
        }
        for (oid id : todo) {
            if (std::find(found.begin(), found.end(), id) == found.end()) {
                // Dropped since the WAL was written: its values can only be shown as text.
                spdlog::warn("type {} is not in pg_type (dropped?); its values are shown as text",
                             id);
                catalog.put(
                    type_info{id, "unknown_" + std::to_string(id), type_kind::text, 0, ',', {}});
            }
        }
        std::vector<oid> next;
        for (oid id : todo) {
            for (oid m : catalog.missing(id))
                next.push_back(m);
        }
        todo = std::move(next);
    }
}

} // namespace pgpush::cdc
