#pragma once

// rules.yaml, loaded: who may see which tables, rows, columns and NOTIFY channels. Immutable once
// built; the engine holds it by shared_ptr<const rule_set> and swaps the pointer on reload.
// Format: docs/rules.md.

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "rules/ast.hpp"
#include "rules/predicate.hpp"

namespace pgpush::rules {

struct table_rule {
    std::string name; // qualified: "public.messages"
    expr_ptr allow;   // claims only: who may subscribe; null = any authenticated client
    expr_ptr rows;    // row + claims: which rows
    expr_ptr updates; // row + old + claims: which updates of visible rows to send; null = all
    bool all_columns = false;                     // columns: "*"
    std::vector<std::string> columns;             // the allowlist, when not "*"
    std::optional<std::size_t> max_subscriptions; // per connection
    std::size_t line = 0;                         // where it is defined (1-based)

    bool column_allowed(std::string_view column) const;
};

struct channel_rule {
    std::string name;
    expr_ptr allow;  // claims only; null = any authenticated client
    expr_ptr filter; // payload + claims; null = every notification
    std::size_t line = 0;
};

// A named lookup (rules.yaml lookups:): `SELECT output FROM table WHERE key_column = auth.<claim
// path> [AND filter]`. For a subscriber, its result is the output column's values over the rows
// of `table` whose key equals the claim and that pass the filter; `lookup.name` in an expression
// stands for that result as an array claim would (the engine computes it and keeps it current
// from the change stream).
struct lookup_rule {
    std::string name;
    std::string table;                   // qualified: "public.room_members"
    std::string output;                  // the selected column
    std::string key_column;              // the correlated column
    std::vector<std::string> claim_path; // the auth path it is compared with, e.g. {"sub"}
    expr_ptr filter;                     // the other conjuncts over the table's columns; null: none
    std::size_t line = 0;                // where it is defined (1-based)
    // Columns the lookup reads (key, output, and those of the filter), distinct, in first-use
    // order.
    std::vector<std::string> columns;

    lookup_rule() = default;
    // A copy is a deep one (the filter too), so that the engine may keep a lookup's definition
    // beyond the rule set it came from.
    lookup_rule(const lookup_rule& other);
    lookup_rule& operator=(const lookup_rule& other);
    lookup_rule(lookup_rule&&) noexcept = default;
    lookup_rule& operator=(lookup_rule&&) noexcept = default;
    ~lookup_rule() = default;
};

class rule_set {
public:
    // nullptr when the table (qualified name) or channel is not in the rules: invisible.
    const table_rule* table(std::string_view qualified) const;
    const channel_rule* channel(std::string_view name) const;
    // nullptr when no lookup has that name.
    const lookup_rule* lookup(std::string_view name) const;

    const std::map<std::string, table_rule, std::less<>>& tables() const { return tables_; }
    const std::map<std::string, channel_rule, std::less<>>& channels() const { return channels_; }
    const std::map<std::string, lookup_rule, std::less<>>& lookups() const { return lookups_; }

private:
    friend class rules_loader;
    std::map<std::string, table_rule, std::less<>> tables_;
    std::map<std::string, channel_rule, std::less<>> channels_;
    // Expressions of tables_ and channels_ point into this map (expr::lookup): its nodes never
    // move, and the set is immutable once loaded.
    std::map<std::string, lookup_rule, std::less<>> lookups_;
};

// A lookup's own filter (lookup_rule::filter: its conjuncts besides the correlation), bound
// against the lookup table's schema to be evaluated on that table's rows: row columns only, no
// claims. nullptr when the lookup has none. Throws bind_error (a column the table lacks, a literal
// its type refuses).
std::unique_ptr<const predicate> bind_lookup_filter(const lookup_rule& lookup,
                                                    const table_schema& lookup_table);

// The key a subscriber's claims select in a lookup table: the claim at lookup.claim_path read as
// `key_column = auth.<claim>` reads it (a string by the key column type's input function, a
// number as a number, a numeric claim against a text column as its decimal text), as index_key()
// makes keys for the key column's family. nullopt when the claim is missing, null, an array or
// object, or text the column's type refuses: the subscriber's result is then not known (the
// resolver answers nullptr, which denies, as a missing array claim does). Throws bind_error when
// the table has no key column.
std::optional<std::string> lookup_key(const lookup_rule& lookup, const table_schema& lookup_table,
                                      const nlohmann::json& claims);

// Every table the engine must stream: the tables of `tables:` and those of `lookups:`. Qualified,
// sorted, distinct.
std::vector<std::string> streamed_tables(const rule_set& rules);

// One problem in a rules file; line and column are 1-based.
struct diagnostic {
    std::size_t line = 0;
    std::size_t column = 0;
    std::string message;
};

// "file:line:col: message"
std::string format(const diagnostic& d, std::string_view file);

struct load_result {
    std::shared_ptr<const rule_set> rules; // null when there are errors
    std::vector<diagnostic> errors;        // all of them, in file order
};

// The live tables a rules file is checked against (pgpush check --db): qualified name -> schema.
using schema_map = std::map<std::string, table_schema, std::less<>>;

// Parses and validates rules.yaml text. With `schema`, also checks that every table and column
// exists and that literals fit their columns' types.
load_result load_rules(std::string_view yaml, const schema_map* schema = nullptr);

// "messages" -> "public.messages"; "chat.messages" stays. Identifiers are lower-cased unless
// double-quoted, as SQL does.
std::string qualify_table(std::string_view name);

} // namespace pgpush::rules
