#include "cdc/setup.hpp"

#include <pqxx/pqxx>
#include <spdlog/spdlog.h>

#include "cdc/pg_async.hpp"

namespace pgpush::cdc {

std::string_view to_string(setup_error_code c) {
    switch (c) {
    case setup_error_code::connection_failed:
        return "connection_failed";
    case setup_error_code::server_too_old:
        return "server_too_old";
    case setup_error_code::wal_level_not_logical:
        return "wal_level_not_logical";
    case setup_error_code::no_replication_privilege:
        return "no_replication_privilege";
    case setup_error_code::no_wal_senders:
        return "no_wal_senders";
    case setup_error_code::bad_name:
        return "bad_name";
    case setup_error_code::unknown_table:
        return "unknown_table";
    case setup_error_code::not_a_table:
        return "not_a_table";
    case setup_error_code::publication_missing:
        return "publication_missing";
    case setup_error_code::table_not_in_publication:
        return "table_not_in_publication";
    case setup_error_code::permission_denied:
        return "permission_denied";
    case setup_error_code::slot_mismatch:
        return "slot_mismatch";
    case setup_error_code::slot_invalidated:
        return "slot_invalidated";
    case setup_error_code::too_many_slots:
        return "too_many_slots";
    }
    return "unknown";
}

bool valid_slot_name(std::string_view name) {
    if (name.empty() || name.size() > 63) return false;
    for (char c : name) {
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
    }
    return true;
}

namespace {

std::string one_line(std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == ' '))
        s.pop_back();
    for (auto& c : s) {
        if (c == '\n') c = ' ';
    }
    return s;
}

[[noreturn]] void fail(setup_error_code code, const std::string& message) {
    throw setup_error(code, message);
}

struct table_ref {
    std::string schema;
    std::string name;
    std::string qualified() const { return schema + "." + name; }
};

table_ref resolve_table(pqxx::nontransaction& tx, const std::string& user_name) {
    // to_regclass parses the name as SQL would (search_path, quoting) and yields NULL instead of
    // raising when it does not exist.
    auto r = tx.exec_params(
        "SELECT n.nspname, c.relname, c.relkind FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass($1)",
        user_name);
    if (r.empty()) {
        fail(setup_error_code::unknown_table, "table \"" + user_name + "\" does not exist");
    }
    auto kind = r[0][2].as<std::string>();
    table_ref t{r[0][0].as<std::string>(), r[0][1].as<std::string>()};
    if (kind != "r" && kind != "p") {
        fail(setup_error_code::not_a_table,
             "\"" + t.qualified() + "\" is not a table; only tables can be streamed");
    }
    return t;
}

std::string table_list_sql(const std::vector<table_ref>& tables) {
    std::string sql;
    for (const auto& t : tables) {
        if (!sql.empty()) sql += ", ";
        sql += pg::quote_identifier(t.schema) + "." + pg::quote_identifier(t.name);
    }
    return sql;
}

void check_publication(pqxx::nontransaction& tx, const source_config& config,
                       const std::vector<table_ref>& tables, source_info& info) {
    auto pub = tx.exec_params("SELECT puballtables FROM pg_publication WHERE pubname = $1",
                              config.publication);
    if (pub.empty()) {
        if (!config.create_publication) {
            fail(setup_error_code::publication_missing,
                 "publication \"" + config.publication +
                     "\" does not exist: create it (CREATE PUBLICATION " +
                     pg::quote_identifier(config.publication) +
                     " FOR TABLE ...) or name tables with --table");
        }
        std::string sql =
            "CREATE PUBLICATION " + pg::quote_identifier(config.publication) +
            (tables.empty() ? " FOR ALL TABLES" : " FOR TABLE " + table_list_sql(tables));
        try {
            tx.exec(sql);
        } catch (const pqxx::insufficient_privilege& e) {
            fail(setup_error_code::permission_denied,
                 "cannot create publication \"" + config.publication + "\": " + one_line(e.what()) +
                     (tables.empty()
                          ? "; FOR ALL TABLES needs a superuser: name tables with --table"
                          : "; the tables' owner (or a superuser) must run: " + sql));
        } catch (const pqxx::unique_violation&) {
            // Created concurrently by another process: fine, it is checked below.
        }
        info.publication_created = true;
        spdlog::info("created publication \"{}\" {}", config.publication,
                     tables.empty() ? "for all tables" : "for " + table_list_sql(tables));
        return;
    }
    if (pub[0][0].as<bool>()) return; // FOR ALL TABLES publishes everything
    for (const auto& t : tables) {
        auto in = tx.exec_params("SELECT 1 FROM pg_publication_tables WHERE pubname = $1 AND "
                                 "schemaname = $2 AND tablename = $3",
                                 config.publication, t.schema, t.name);
        if (in.empty()) {
            fail(setup_error_code::table_not_in_publication,
                 "table \"" + t.qualified() + "\" is not in publication \"" + config.publication +
                     "\": ALTER PUBLICATION " + pg::quote_identifier(config.publication) +
                     " ADD TABLE " + table_list_sql({t}));
        }
    }
}

void check_slot(pqxx::nontransaction& tx, const source_config& config, source_info& info) {
    auto slot = tx.exec_params("SELECT plugin, database, wal_status, confirmed_flush_lsn::text "
                               "FROM pg_replication_slots WHERE slot_name = $1",
                               config.slot);
    if (!slot.empty()) {
        auto plugin =
            slot[0][0].is_null() ? std::string("(physical)") : slot[0][0].as<std::string>();
        auto database = slot[0][1].is_null() ? std::string() : slot[0][1].as<std::string>();
        if (plugin != "pgoutput" || database != info.database) {
            fail(setup_error_code::slot_mismatch,
                 "slot \"" + config.slot + "\" exists but is for plugin " + plugin +
                     (database.empty() ? "" : " on database " + database) + ", not pgoutput on " +
                     info.database + ": choose another --slot");
        }
        if (!slot[0][2].is_null() && slot[0][2].as<std::string>() == "lost") {
            fail(setup_error_code::slot_invalidated,
                 "slot \"" + config.slot +
                     "\" was invalidated (its WAL is gone, see max_slot_wal_keep_size): changes "
                     "since it last confirmed are lost; drop it and start afresh");
        }
        if (!slot[0][3].is_null()) {
            if (auto l = parse_lsn(slot[0][3].as<std::string>())) info.slot_confirmed_flush = *l;
        }
        return;
    }
    try {
        tx.exec_params("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", config.slot);
    } catch (const pqxx::sql_error& e) {
        if (e.sqlstate() == "53400") {
            fail(setup_error_code::too_many_slots,
                 "cannot create slot \"" + config.slot + "\": " + one_line(e.what()) +
                     "; raise max_replication_slots or drop unused slots");
        }
        if (e.sqlstate() == "42710") return; // created concurrently
        fail(setup_error_code::permission_denied,
             "cannot create slot \"" + config.slot + "\": " + one_line(e.what()));
    }
    info.slot_created = true;
    spdlog::info("created replication slot \"{}\"", config.slot);
}

} // namespace

namespace {

std::unique_ptr<pqxx::connection> connect(const std::string& conninfo) {
    try {
        return std::make_unique<pqxx::connection>(conninfo);
    } catch (const std::exception& e) {
        fail(setup_error_code::connection_failed,
             "cannot connect to " + pg::redact_conninfo(conninfo) + ": " + one_line(e.what()) +
                 " (check --db / PGPUSH_DB)");
    }
}

source_info check_basics(pqxx::nontransaction& tx) {
    source_info info;
    auto who =
        tx.exec("SELECT current_setting('server_version_num')::int, current_database(), "
                "current_user, current_setting('wal_level'), "
                "current_setting('max_wal_senders')::int, "
                "current_setting('max_replication_slots')::int, "
                "(SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user), "
                "pg_encoding_to_char((SELECT encoding FROM pg_database WHERE datname = "
                "current_database()))");
    info.server_version = who[0][0].as<int>();
    info.database = who[0][1].as<std::string>();
    info.user = who[0][2].as<std::string>();
    info.encoding = who[0][7].as<std::string>();
    if (info.server_version < 140000) {
        fail(setup_error_code::server_too_old, "PostgreSQL " +
                                                   std::to_string(info.server_version / 10000) +
                                                   " is too old: pgpush needs 14 or later");
    }
    if (auto level = who[0][3].as<std::string>(); level != "logical") {
        fail(setup_error_code::wal_level_not_logical,
             "wal_level is \"" + level +
                 "\" but streaming changes needs \"logical\": run ALTER SYSTEM SET wal_level = "
                 "logical (or set it in postgresql.conf) and restart PostgreSQL");
    }
    if (who[0][4].as<int>() == 0 || who[0][5].as<int>() == 0) {
        fail(setup_error_code::no_wal_senders,
             "max_wal_senders and max_replication_slots must both be at least 1 (they are " +
                 who[0][4].as<std::string>() + " and " + who[0][5].as<std::string>() +
                 "): raise them in postgresql.conf and restart PostgreSQL");
    }
    if (!who[0][6].as<bool>()) {
        fail(setup_error_code::no_replication_privilege,
             "role \"" + info.user + "\" may not stream changes: a superuser must run ALTER ROLE " +
                 pg::quote_identifier(info.user) + " REPLICATION");
    }
    if (info.encoding != "UTF8") {
        spdlog::warn("database encoding is {}, not UTF8: text that is not valid UTF-8 is shown "
                     "with U+FFFD replacement characters",
                     info.encoding);
    }
    return info;
}

} // namespace

source_info preflight(const std::string& conninfo) {
    auto conn = connect(conninfo);
    pqxx::nontransaction tx(*conn);
    return check_basics(tx);
}

source_info prepare_source(const source_config& config) {
    if (!valid_slot_name(config.slot)) {
        fail(setup_error_code::bad_name,
             "slot name \"" + config.slot +
                 "\" is not valid: use 1-63 lower-case letters, digits and underscores");
    }
    if (config.publication.empty() || config.publication.size() > 63) {
        fail(setup_error_code::bad_name,
             "publication name \"" + config.publication + "\" must be 1-63 characters");
    }
    auto conn = connect(config.conninfo);
    pqxx::nontransaction tx(*conn);
    source_info info = check_basics(tx);

    std::vector<table_ref> tables;
    for (const auto& t : config.tables)
        tables.push_back(resolve_table(tx, t));
    for (const auto& t : tables)
        info.tables.push_back(t.qualified());

    check_publication(tx, config, tables, info);
    if (!config.temporary_slot) check_slot(tx, config, info);
    return info;
}

} // namespace pgpush::cdc
