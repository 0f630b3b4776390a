#include "rules/plan.hpp"

#include <algorithm>

#include <nlohmann/json.hpp>

#include "rules/parser.hpp"

namespace pgpush::rules {

std::string_view to_string(plan_error_code c) {
    switch (c) {
    case plan_error_code::bad_query:
        return "bad_query";
    case plan_error_code::unknown_table:
        return "unknown_table";
    case plan_error_code::forbidden:
        return "forbidden";
    case plan_error_code::unknown_column:
        return "unknown_column";
    }
    return "bad_query";
}

namespace {

plan_error error(plan_error_code code, std::string message) {
    return {code, std::move(message)};
}

std::string at(source_offset offset) {
    return " (at character " + std::to_string(offset + 1) + ")";
}

// Column refs of the query's WHERE (bare or table-qualified).
void where_columns(const expr& e, std::vector<const expr*>& out) {
    if (e.type == expr::kind::ref && e.space == ref_space::column) out.push_back(&e);
    for (const auto& a : e.args)
        where_columns(*a, out);
}

// Asks the engine for each lookup's result once per plan (so allow, rows and updates see the
// same one) and remembers which were read.
class lookup_reader {
public:
    explicit lookup_reader(const lookup_resolver& engine) : engine_(engine) {}
    lookup_reader(const lookup_reader&) = delete;
    lookup_reader& operator=(const lookup_reader&) = delete;

    lookup_resolver resolver() {
        return [this](const lookup_rule& l) { return get(l); };
    }
    std::vector<const lookup_rule*> read() const {
        std::vector<const lookup_rule*> out;
        for (const auto& r : read_)
            out.push_back(r.first);
        return out;
    }

private:
    const nlohmann::json* get(const lookup_rule& l) {
        for (const auto& [rule, result] : read_) {
            if (rule == &l) return result;
        }
        const nlohmann::json* result = engine_ ? engine_(l) : nullptr;
        read_.emplace_back(&l, result);
        return result;
    }

    const lookup_resolver& engine_;
    std::vector<std::pair<const lookup_rule*, const nlohmann::json*>> read_;
};

// Runs a claims-only expression (allow:) for these claims.
std::optional<tri> allowed(const expr* allow, const nlohmann::json& claims,
                           const lookup_resolver& lookups) {
    if (allow == nullptr) return tri::true_;
    bind_context ctx;
    ctx.claims = &claims;
    ctx.lookups = lookups;
    const expr* one[] = {allow};
    auto p = predicate::bind(one, ctx);
    return p->evaluate({});
}

} // namespace

std::variant<subscription_plan, plan_error>
plan_subscription(const std::shared_ptr<const rule_set>& rules, const subscribe_request& request,
                  const schema_lookup& schema_of, const lookup_resolver& lookups) {
    static const nlohmann::json no_claims = nlohmann::json::object();
    const nlohmann::json& claims = request.claims ? *request.claims : no_claims;

    select_query q;
    try {
        q = parse_select(request.sql);
    } catch (const parse_error& e) {
        return error(plan_error_code::bad_query, e.what() + at(e.offset));
    }
    const std::string table = (q.schema.empty() ? "public" : q.schema) + "." + q.table;
    // A table outside the rules is answered exactly like one that does not exist.
    const table_rule* rule = rules->table(table);
    const table_schema* schema = rule ? schema_of(table) : nullptr;
    if (rule == nullptr || schema == nullptr) {
        return error(plan_error_code::unknown_table, "table " + table + " does not exist");
    }
    lookup_reader reader(lookups);
    try {
        if (allowed(rule->allow.get(), claims, reader.resolver()) != tri::true_) {
            return error(plan_error_code::forbidden, "not allowed to subscribe to " + table);
        }
    } catch (const bind_error& e) {
        return error(plan_error_code::forbidden, "not allowed to subscribe to " + table);
    }

    subscription_plan plan;
    plan.rules = rules;
    plan.rule = rule;
    plan.table = table;
    auto visible = [&](const std::string& column) { return rule->column_allowed(column); };
    if (q.star) {
        for (std::size_t i = 0; i < schema->columns.size(); ++i) {
            if (visible(schema->columns[i].name)) {
                plan.columns.push_back(i);
                plan.column_names.push_back(schema->columns[i].name);
            }
        }
    } else {
        for (std::size_t k = 0; k < q.columns.size(); ++k) {
            const auto& c = q.columns[k];
            if (!visible(c)) {
                return error(plan_error_code::forbidden, "column " + c + " of " + table +
                                                             " is not available" +
                                                             at(q.column_offsets[k]));
            }
            auto pos = schema->find(c);
            if (!pos) {
                return error(plan_error_code::unknown_column, "column " + c +
                                                                  " does not exist in " + table +
                                                                  at(q.column_offsets[k]));
            }
            if (std::find(plan.columns.begin(), plan.columns.end(), *pos) != plan.columns.end()) {
                return error(plan_error_code::bad_query,
                             "column " + c + " is selected twice" + at(q.column_offsets[k]));
            }
            plan.columns.push_back(*pos);
            plan.column_names.push_back(c);
        }
    }
    if (plan.columns.empty()) {
        return error(plan_error_code::forbidden, "no column of " + table + " is available");
    }
    // Filtering on a column one may not see would reveal it row by row. A name qualified by
    // something other than the table (other.x, and so lookup.x or auth.x: rules.yaml's names
    // mean nothing in a query) is unknown, whether or not the column would be visible.
    if (q.where) {
        std::vector<const expr*> used;
        where_columns(*q.where, used);
        for (const expr* c : used) {
            if (c->path.size() == 2 && c->path[0] != q.table) {
                return error(plan_error_code::unknown_column,
                             "'" + c->path[0] + "' is not the table being queried (" + q.table +
                                 ")" + at(c->offset));
            }
        }
        for (const expr* c : used) {
            if (!visible(c->path.back())) {
                return error(plan_error_code::forbidden, "column " + c->path.back() + " of " +
                                                             table + " is not available" +
                                                             at(c->offset));
            }
        }
    }
    if (static_cast<std::size_t>(q.max_param) > request.params.size()) {
        return error(plan_error_code::bad_query,
                     "the query uses $" + std::to_string(q.max_param) + " but " +
                         std::to_string(request.params.size()) + " parameter(s) were given");
    }

    bind_context ctx;
    ctx.table = schema;
    ctx.claims = &claims;
    ctx.params = request.params;
    try {
        const expr* conjuncts[] = {q.where.get(), nullptr};
        plan.filter = predicate::bind(std::span<const expr* const>(conjuncts, 1), ctx);
    } catch (const bind_error& e) {
        auto code = e.code == bind_error_code::unknown_column ? plan_error_code::unknown_column
                                                              : plan_error_code::bad_query;
        return error(code, e.what() + at(e.offset));
    }
    try {
        // The rule's rows: the operator's text, not the client's; its errors are not the client's.
        ctx.lookups = reader.resolver();
        const expr* conjuncts[] = {q.where.get(), rule->rows.get()};
        plan.filter = predicate::bind(conjuncts, ctx);
        if (rule->updates) {
            bind_context uctx = ctx;
            uctx.allow_old = true;
            const expr* u[] = {rule->updates.get()};
            plan.updates = predicate::bind(u, uctx);
        }
    } catch (const bind_error& e) {
        return error(plan_error_code::forbidden, "the rules for " + table +
                                                     " do not fit its columns (" + e.what() +
                                                     "): nothing is served until they are fixed");
    }
    plan.lookups = reader.read();
    return plan;
}

std::variant<listen_plan, plan_error> plan_listen(const std::shared_ptr<const rule_set>& rules,
                                                  std::string_view channel,
                                                  const nlohmann::json& claims,
                                                  const lookup_resolver& lookups) {
    const channel_rule* rule = rules->channel(channel);
    const auto denied =
        error(plan_error_code::forbidden, "not allowed to listen on " + std::string(channel));
    // Like tables: an unlisted channel is indistinguishable from one nobody may use.
    if (rule == nullptr) return denied;
    listen_plan plan;
    lookup_reader reader(lookups);
    try {
        if (allowed(rule->allow.get(), claims, reader.resolver()) != tri::true_) return denied;
        plan.rules = rules;
        plan.rule = rule;
        if (rule->filter) {
            bind_context ctx;
            ctx.claims = &claims;
            ctx.allow_payload = true;
            ctx.lookups = reader.resolver();
            const expr* one[] = {rule->filter.get()};
            plan.filter = predicate::bind(one, ctx);
        }
    } catch (const bind_error&) {
        return denied; // a rule that cannot be evaluated denies (the loader reports it)
    }
    plan.lookups = reader.read();
    return plan;
}

} // namespace pgpush::rules
