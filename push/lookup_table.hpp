#pragma once

// One lookup of the rules (`my_rooms: "SELECT room_id FROM room_members WHERE user_id =
// auth.sub"`), held in memory: for each subscriber key (the correlated column's value) the
// multiset of output values of the rows that pass the lookup's filter. Only the columns the
// lookup reads are kept. It is loaded from a snapshot and kept current from the change stream, in
// commit order, on the hub's thread; apply() says whose result a change altered.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "cdc/change.hpp"
#include "cdc/type_catalog.hpp"
#include "push/schema_cache.hpp"
#include "rules/predicate.hpp"
#include "rules/rule_set.hpp"

namespace pgpush::push {

class lookup_table {
public:
    // `table`: the lookup table as described (its columns, types). Throws rules::bind_error when
    // the lookup does not fit the table (a column gone, a filter that no longer binds).
    lookup_table(const rules::lookup_rule& rule, const table_state& table,
                 const cdc::type_catalog& types);

    const rules::lookup_rule& rule() const { return rule_; }
    // Column names a snapshot must select, in the order load() takes values.
    const std::vector<std::string>& columns() const { return column_names_; }
    const std::vector<cdc::oid>& column_types() const { return column_types_; }

    // A snapshot row: values of columns(), as Postgres prints them (nullopt: NULL).
    void load(const std::vector<std::optional<std::string>>& row);

    // A change to the lookup table: `changed` gets the keys whose result it altered (once each).
    // False when the change does not say enough to apply it exactly (an update or delete whose old
    // row lacks a column the lookup reads: no REPLICA IDENTITY FULL): the lookup must be loaded
    // again.
    bool apply(const cdc::change& c, std::vector<std::string>& changed);

    // The key of a subscriber (its claim, read as the key column's type); nullopt when the claim
    // is missing or cannot be such a value (its result is then not known, which denies).
    std::optional<std::string> key_of(const nlohmann::json& claims) const;

    // The result for a key, as an array claim: numbers, booleans or strings by the output
    // column's type. Valid until the next apply() of that key.
    const nlohmann::json& result(const std::optional<std::string>& key);

    std::size_t rows() const { return rows_; }
    std::size_t keys() const { return by_key_.size(); }

private:
    struct entry {
        // Output values (ids of their interned JSON text) and how many rows give each: 8 bytes a
        // distinct value of a key, whatever the values are.
        std::vector<std::pair<std::uint32_t, std::uint32_t>> values;
        std::shared_ptr<const nlohmann::json> cached; // built on demand, dropped on change
    };
    // Output values are interned: a room id shared by a thousand members is stored once.
    std::uint32_t intern(const std::string& text);
    void release(std::uint32_t id);
    // The (key, value) a row contributes, or nullopt (NULL key, or the filter says no).
    std::optional<std::pair<std::string, std::string>>
    contribution(const std::vector<rules::value>& values,
                 const std::vector<std::optional<std::string>>& text) const;
    void add(const std::pair<std::string, std::string>& kv, std::vector<std::string>* changed);
    void remove(const std::pair<std::string, std::string>& kv, std::vector<std::string>* changed);

    rules::lookup_rule rule_;
    const cdc::type_catalog& types_;
    rules::table_schema schema_; // of the lookup table
    std::vector<std::string> column_names_;
    std::vector<cdc::oid> column_types_;
    std::vector<std::size_t> positions_;     // of columns() in the table's rows
    std::size_t key_at_ = 0, output_at_ = 0; // indexes into columns()
    std::unique_ptr<const rules::predicate> filter_;
    std::unordered_map<std::string, entry> by_key_;
    std::vector<std::string> texts_;       // by id
    std::vector<std::uint32_t> text_uses_; // by id; 0: free
    std::vector<std::uint32_t> free_ids_;
    std::unordered_map<std::string, std::uint32_t> text_ids_;
    std::size_t rows_ = 0;
    std::vector<rules::value> scratch_, scratch_old_;
    const nlohmann::json empty_ = nlohmann::json::array();
};

} // namespace pgpush::push
