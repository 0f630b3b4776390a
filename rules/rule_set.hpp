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

class rule_set {
public:
    // nullptr when the table (qualified name) or channel is not in the rules: invisible.
    const table_rule* table(std::string_view qualified) const;
    const channel_rule* channel(std::string_view name) const;

    const std::map<std::string, table_rule, std::less<>>& tables() const { return tables_; }
    const std::map<std::string, channel_rule, std::less<>>& channels() const { return channels_; }

private:
    friend class rules_loader;
    std::map<std::string, table_rule, std::less<>> tables_;
    std::map<std::string, channel_rule, std::less<>> channels_;
};

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
