#include "push/publication.hpp"

#include <pqxx/pqxx>
#include <spdlog/spdlog.h>

#include "cdc/db.hpp"
#include "cdc/pg_async.hpp"
#include "cdc/table_catalog.hpp"

namespace pgpush::push {

namespace {

std::string sql_table(const std::string& qualified) {
    auto dot = qualified.find('.');
    return cdc::pg::quote_identifier(qualified.substr(0, dot)) + "." +
           cdc::pg::quote_identifier(qualified.substr(dot + 1));
}

bool is_lock_timeout(const pqxx::sql_error& e) {
    return e.sqlstate() == "55P03"; // lock_not_available
}

pqxx::result exec(pqxx::connection_base& conn, const std::string& sql) {
    pqxx::nontransaction tx(conn);
    return tx.exec(sql);
}

} // namespace

std::set<std::string> published_tables(pqxx::connection_base& conn,
                                       const std::string& publication) {
    pqxx::nontransaction tx(conn);
    auto r = tx.exec_params("SELECT schemaname || '.' || tablename FROM pg_publication_tables "
                            "WHERE pubname = $1",
                            publication);
    std::set<std::string> out;
    for (const auto& row : r)
        out.insert(row[0].as<std::string>());
    return out;
}

publication_state prepare_tables(pqxx::connection_base& conn, const publication_options& o,
                                 const std::vector<std::string>& names,
                                 const std::set<std::string>& expected) {
    publication_state st;
    auto tables = cdc::describe_tables(conn, names);
    for (const auto& t : tables)
        st.present.insert(t.qualified());
    for (const auto& n : names) {
        if (!st.present.count(n)) {
            spdlog::warn(
                "rules name table {}, which does not exist: nothing can be subscribed to it", n);
        }
    }
    st.published = published_tables(conn, o.publication);
    for (const auto& t : expected) {
        if (st.present.count(t) && !st.published.count(t)) st.missing_before.insert(t);
    }
    exec(conn, "SET lock_timeout = " + std::to_string(o.lock_timeout.count()));
    if (o.manage) {
        std::string list;
        for (const auto& t : st.present)
            list += (list.empty() ? "" : ", ") + sql_table(t);
        bool exists = false;
        {
            pqxx::nontransaction tx(conn);
            exists =
                !tx.exec_params("SELECT 1 FROM pg_publication WHERE pubname = $1", o.publication)
                     .empty();
        }
        const std::string pub = cdc::pg::quote_identifier(o.publication);
        try {
            if (!exists) {
                exec(conn,
                     "CREATE PUBLICATION " + pub + (list.empty() ? "" : " FOR TABLE " + list));
                spdlog::info("created publication {} for {}", o.publication,
                             list.empty() ? "no tables yet" : list);
            } else if (!list.empty() && st.published != st.present) {
                exec(conn, "ALTER PUBLICATION " + pub + " SET TABLE " + list);
                spdlog::info("publication {} now covers {}", o.publication, list);
            }
        } catch (const pqxx::sql_error& e) {
            if (!is_lock_timeout(e)) throw;
            st.publication_waits = true;
            spdlog::warn("cannot change publication {} yet: {} (a long transaction holds a lock); "
                         "retrying",
                         o.publication, cdc::db::first_line(e.what()));
        }
        st.published = published_tables(conn, o.publication);
    }
    if (o.replica_identity_full) {
        for (const auto& t : tables) {
            if (t.replica_identity == 'f') continue;
            try {
                exec(conn, "ALTER TABLE " + sql_table(t.qualified()) + " REPLICA IDENTITY FULL");
                spdlog::info(
                    "set REPLICA IDENTITY FULL on {} (updates and deletes now carry the old row; "
                    "--no-replica-identity-full to leave tables alone)",
                    t.qualified());
            } catch (const pqxx::sql_error& e) {
                if (is_lock_timeout(e)) {
                    st.identity_waits.push_back(t.qualified());
                    continue;
                }
                spdlog::warn(
                    "cannot set REPLICA IDENTITY FULL on {} ({}): rows leaving a subscription's "
                    "result will not be sent as deletes",
                    t.qualified(), cdc::db::first_line(e.what()));
            }
        }
    }
    exec(conn, "RESET lock_timeout");
    return st;
}

} // namespace pgpush::push
