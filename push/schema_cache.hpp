#pragma once

// What the hub knows of the tables it serves: their columns (as the rules compare them), their
// column types, and whether the publication carries them. A table is described once, when it is
// first subscribed to, by a `table_describer` that does the catalog query off the hub's thread;
// the replication stream's Relation messages keep it current afterwards.

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "cdc/change.hpp"
#include "cdc/table_catalog.hpp"
#include "cdc/type_catalog.hpp"
#include "rules/predicate.hpp"

namespace pgpush::push {

// A table as the catalog describes it, with the type information its columns need (non-built-in
// types: enums, domains, composites...), so the hub's type catalog can learn them.
struct described_table {
    cdc::table_description table;
    std::vector<cdc::type_info> types;
};

// Where descriptions come from: a database worker in the engine, a fake in unit tests.
class table_describer {
public:
    // `done(table, error)`: the table (nullopt when it does not exist), or an error text when the
    // catalog could not be read (the database is down). Must run on the hub's thread.
    using callback =
        std::function<void(std::optional<described_table>, std::optional<std::string> error)>;
    virtual ~table_describer() = default;
    virtual void describe(const std::string& qualified, callback done) = 0;
};

struct table_state {
    rules::table_schema schema;
    std::vector<cdc::oid> types;    // by column position
    std::vector<std::string> names; // by column position
};

class schema_cache {
public:
    schema_cache(cdc::type_catalog& types, table_describer& describer)
        : types_(types), describer_(describer) {}

    // nullptr until described (or when the table does not exist).
    table_state* find(const std::string& qualified);

    // Describes `qualified` unless that is under way already; `then(error)` runs when the answer
    // is in (error set when the database could not be asked). Many waiters share one query.
    void fetch(const std::string& qualified, std::function<void(const std::string* error)> then);

    // A Relation message: the table's shape as the stream now sends it. True when a known table
    // changed shape (its subscriptions must be planned again).
    bool update(const cdc::relation_schema& relation);

    // Forget a table (it was dropped or left the publication): the next subscription describes
    // it again.
    void forget(const std::string& qualified);

private:
    void store(const described_table& d);

    cdc::type_catalog& types_;
    table_describer& describer_;
    std::unordered_map<std::string, std::unique_ptr<table_state>> tables_;
    std::map<std::string, std::vector<std::function<void(const std::string*)>>> waiting_;
};

} // namespace pgpush::push
