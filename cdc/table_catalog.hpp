#pragma once

// The live shape of tables, read from the catalog: what `pgpush check --db` validates rules
// against, and what a subscription binds to before the stream has sent a Relation message.

#include <string>
#include <vector>

#include "cdc/pgoutput.hpp"

namespace pqxx {
class connection_base;
}

namespace pgpush::cdc {

struct column_description {
    std::string name;
    oid type = 0;
    std::string type_name; // format_type(): "integer", "character varying(20)", ...
};

struct table_description {
    std::string schema;
    std::string name;
    char replica_identity = 'd';
    // In the order the replication stream sends them: by attnum, without dropped and generated
    // columns (pgoutput leaves those out).
    std::vector<column_description> columns;

    std::string qualified() const { return schema + "." + name; }
};

// The tables among `qualified` ("schema.table") that exist; missing ones are simply absent.
// Throws std::runtime_error when the database cannot be reached.
std::vector<table_description> describe_tables(const std::string& conninfo,
                                               const std::vector<std::string>& qualified);
// The same on an open connection.
std::vector<table_description> describe_tables(pqxx::connection_base& conn,
                                               const std::vector<std::string>& qualified);

} // namespace pgpush::cdc
