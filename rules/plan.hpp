#pragma once

// From a client's subscribe request to what the engine runs: the table, the columns to send, and
// the filter (the query's WHERE AND the table rule's rows, claims bound). Every refusal has a
// stable code. Pure.

#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "rules/predicate.hpp"
#include "rules/rule_set.hpp"

namespace pgpush::rules {

enum class plan_error_code {
    bad_query,      // does not parse, unsupported SQL, wrong literal types, missing $N
    unknown_table,  // not in the rules (invisible) or not in the database
    forbidden,      // allow: said no, or a column outside the allowlist was named
    unknown_column, // a column that does not exist (of a table whose columns are all visible)
};

std::string_view to_string(plan_error_code c);

struct plan_error {
    plan_error_code code;
    std::string message;
};

struct subscription_plan {
    std::shared_ptr<const rule_set> rules; // keeps `rule` alive
    const table_rule* rule = nullptr;
    std::string table;                     // qualified
    std::vector<std::size_t> columns;      // positions to send, in the order the query named them
    std::vector<std::string> column_names; // same order
    std::unique_ptr<const predicate> filter;
    std::unique_ptr<const predicate> updates; // null: every update of a visible row
    // The lookups the plan read (allow, rows, updates), distinct, in the order first read: the
    // engine plans again when one's result for this subscriber changes.
    std::vector<const lookup_rule*> lookups;
};

struct subscribe_request {
    std::string_view sql;
    const nlohmann::json* claims = nullptr; // the verified JWT's claims
    std::span<const nlohmann::json> params; // $1..$N
};

// The live schema of a table (qualified name), or nullptr if it does not exist.
using schema_lookup = std::function<const table_schema*(std::string_view)>;

// `lookups` gives each lookup's current result for this subscriber; it is asked once per lookup
// the rules reference. Without one (or when it answers nullptr) a lookup is not known: it binds
// as a missing claim, which denies.
std::variant<subscription_plan, plan_error>
plan_subscription(const std::shared_ptr<const rule_set>& rules, const subscribe_request& request,
                  const schema_lookup& schema_of, const lookup_resolver& lookups = {});

// Whether `claims` may LISTEN on `channel`, and the payload filter to apply (null: all).
struct listen_plan {
    std::shared_ptr<const rule_set> rules;
    const channel_rule* rule = nullptr;
    std::unique_ptr<const predicate> filter;
    // The lookups the plan read (allow, filter), distinct: as for subscription_plan.
    std::vector<const lookup_rule*> lookups;
};

std::variant<listen_plan, plan_error> plan_listen(const std::shared_ptr<const rule_set>& rules,
                                                  std::string_view channel,
                                                  const nlohmann::json& claims,
                                                  const lookup_resolver& lookups = {});

} // namespace pgpush::rules
