// Fuzzes rules/: the rules.yaml loader, the expression and query parsers, binding and evaluation.
//
// Input, first byte:
//   0 mod 4: the rest is a rules.yaml file; loading must give rules or errors with positions
//            inside the file, never crash. Loaded lookups (lookups:) are copied, their filters
//            bound and their keys read against a table of their own columns.
//   1 mod 4: the rest is a subscription query, planned against a fixed rules file (with a
//            lookup), schema, claims and lookup result; a plan must evaluate on a fixed set of
//            rows without crashing, and read the lookup exactly when the rules did.
//   2 mod 4: the rest is a rules-dialect expression, bound with claims (near misses for their
//            columns' types among them), lookups (every lookup.x reads a fixed result, or none
//            for lookup.unknown) and a schema, evaluated and rendered as SQL.
//   3 mod 4: the rest is a LIKE pattern, a NUL, and a text: the linear matcher must agree with
//            the backtracking one it replaced (kept here as the oracle), for any bytes.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <string>

#include <nlohmann/json.hpp>

#include "rules/like.hpp"
#include "rules/matcher.hpp"
#include "rules/parser.hpp"
#include "rules/plan.hpp"
#include "tests/support/like_oracle.hpp"

using namespace pgpush::rules;

namespace {

const table_schema& schema() {
    static const table_schema s{"public",
                                "messages",
                                {{"id", column_family::integer, "bigint"},
                                 {"room_id", column_family::integer, "integer"},
                                 {"body", column_family::text, "text"},
                                 {"score", column_family::floating, "double precision"},
                                 {"price", column_family::numeric, "numeric"},
                                 {"sent_at", column_family::timestamp, "timestamptz"},
                                 {"day", column_family::date, "date"},
                                 {"r", column_family::real, "real"},
                                 {"ok", column_family::boolean, "boolean"},
                                 {"mood", column_family::other, "mood"}}};
    return s;
}

const nlohmann::json& claims() {
    static const nlohmann::json c = {{"sub", 42},
                                     {"rooms", {1, 2, 3}},
                                     {"roles", {"admin"}},
                                     {"name", "x"},
                                     {"org", {{"id", "7"}}},
                                     {"uid", "4.5"},
                                     {"big", "9223372036854775808"},
                                     {"num", 42},
                                     {"pattern", "a%\\"},
                                     {"nums", {"2.50", 1, nullptr, {{"a", 1}}}}};
    return c;
}

const std::vector<std::vector<value>>& rows() {
    static const std::vector<std::vector<value>> r = {
        {value::integer(1), value::integer(2), value::text("hello"), value::floating(1.5),
         value::decimal("2.50"), value::timestamp(0), value::timestamp(0), value::floating(0.5),
         value::boolean(true), value::text("happy")},
        {value::integer(2), value::null(), value::text(""), value::floating(0.0 / 0.0),
         value::decimal("NaN"), value::null(), value::null(), value::null(), value::boolean(false),
         value::null()},
    };
    return r;
}

const std::shared_ptr<const rule_set>& fixed_rules() {
    static const std::shared_ptr<const rule_set> r =
        load_rules("lookups:\n  my_rooms: \"SELECT room_id FROM room_members WHERE user_id = "
                   "auth.sub AND role <> 'banned'\"\n"
                   "tables:\n  messages:\n    rows: \"row.room_id in auth.rooms or row.id = "
                   "auth.sub or row.room_id in lookup.my_rooms\"\n    columns: \"*\"\n")
            .rules;
    return r;
}

// A lookup's result as the engine hands it over, with elements of every JSON type and near
// misses for the columns they meet.
const nlohmann::json& lookup_result() {
    static const nlohmann::json r = {1, "2", 2.5, "2.50", nullptr, true, "x", {{"a", 1}}, {3}};
    return r;
}

// The lookups of an expression parsed on its own, resolved by name here as the loader resolves
// them in a rules file: lookup.unknown has no known result, lookup.undefined is not defined,
// any other reads lookup_result().
const lookup_rule& make_lookup(const char* name) {
    static std::deque<lookup_rule> made;
    lookup_rule r;
    r.name = name;
    r.table = "public.room_members";
    r.output = "room_id";
    r.key_column = "user_id";
    r.claim_path = {"sub"};
    made.push_back(std::move(r));
    return made.back();
}
const lookup_rule& known_lookup() {
    static const lookup_rule& l = make_lookup("known");
    return l;
}
const lookup_rule& unknown_lookup() {
    static const lookup_rule& l = make_lookup("unknown");
    return l;
}

void resolve_lookups(expr& e) {
    if (e.type == expr::kind::ref && e.space == ref_space::lookup) {
        const std::string& name = e.path.front();
        if (name == "unknown") {
            e.lookup = &unknown_lookup();
        } else if (name != "undefined") {
            e.lookup = &known_lookup();
        }
    }
    for (auto& a : e.args)
        resolve_lookups(*a);
}

// A table of a lookup's own columns, each of the family its position picks, for binding its
// filter and reading its key.
table_schema lookup_table(const lookup_rule& l) {
    static const std::pair<column_family, const char*> types[] = {
        {column_family::integer, "bigint"},           {column_family::text, "text"},
        {column_family::boolean, "boolean"},          {column_family::timestamp, "timestamptz"},
        {column_family::numeric, "numeric"},          {column_family::other, "jsonb"},
        {column_family::floating, "double precision"}};
    const auto dot = l.table.find('.');
    table_schema t{
        l.table.substr(0, dot), dot == std::string::npos ? l.table : l.table.substr(dot + 1), {}};
    for (std::size_t i = 0; i < l.columns.size(); ++i) {
        const auto& [family, type] = types[i % std::size(types)];
        t.columns.push_back({l.columns[i], family, type});
    }
    return t;
}

void evaluate_everywhere_of(const predicate& p, const table_schema& t) {
    std::vector<value> row(t.columns.size());
    p.evaluate({row, {}, nullptr});
    for (std::size_t i = 0; i < row.size(); ++i)
        row[i] = from_pg_text(t.columns[i].family, "1");
    p.evaluate({row, {}, nullptr});
    p.index();
    p.to_string();
}

void exercise_lookups(const rule_set& rules) {
    streamed_tables(rules);
    for (const auto& [name, original] : rules.lookups()) {
        if (original.columns.empty() || original.claim_path.empty() || original.output.empty())
            std::abort();
        const lookup_rule l = original; // copies are deep
        if ((l.filter == nullptr) != (original.filter == nullptr)) std::abort();
        const table_schema t = lookup_table(l);
        try {
            if (auto f = bind_lookup_filter(l, t)) evaluate_everywhere_of(*f, t);
        } catch (const bind_error&) {
        }
        try {
            lookup_key(l, t, claims());
        } catch (const bind_error&) {
        }
    }
}

void evaluate_everywhere(const predicate& p) {
    for (const auto& row : rows()) {
        p.evaluate({row, row, nullptr});
        p.evaluate({row, {}, nullptr});
    }
    p.index();
    p.columns();
    p.to_string();
    std::vector<std::string> names, params;
    for (const auto& c : schema().columns)
        names.push_back(c.name);
    p.to_sql(names, params);
    matcher m;
    m.add(1, schema(), &p);
    std::vector<hit> hits;
    for (const auto& row : rows()) {
        m.match("public.messages", change_kind::update, row, rows()[0], hits);
        m.match("public.messages", change_kind::insert, row, {}, hits);
    }
    m.remove(1);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
    switch (data[0] % 4) {
    case 0: {
        auto r = load_rules(text);
        if (r.rules && !r.errors.empty()) std::abort();
        if (!r.rules && r.errors.empty()) std::abort();
        for (const auto& d : r.errors) {
            if (d.line == 0 || d.column == 0 || d.message.empty()) std::abort();
        }
        if (r.rules) exercise_lookups(*r.rules);
        break;
    }
    case 1: {
        nlohmann::json params[] = {7, "x"};
        int asked = 0;
        auto plan = plan_subscription(
            fixed_rules(), {text, &claims(), params},
            [](std::string_view t) -> const table_schema* {
                return t == "public.messages" ? &schema() : nullptr;
            },
            [&asked](const lookup_rule&) {
                ++asked;
                return &lookup_result();
            });
        if (auto* p = std::get_if<subscription_plan>(&plan)) {
            evaluate_everywhere(*p->filter);
            // The rules read my_rooms, once; client SQL cannot name a lookup.
            if (asked != 1 || p->lookups.size() != 1 ||
                p->lookups[0] != fixed_rules()->lookup("my_rooms"))
                std::abort();
        }
        break;
    }
    case 3: {
        const auto nul = text.find('\0');
        const std::string_view pattern = text.substr(0, nul);
        const std::string_view subject =
            nul == std::string_view::npos ? std::string_view() : text.substr(nul + 1);
        const like_pattern compiled(pattern);
        const bool got = compiled.match(subject);
        if (got != like_match(subject, pattern)) std::abort();
        if (check_like_pattern(pattern) != compiled.error()) std::abort();
        if (compiled.error() != like_pattern_error::none) {
            if (got) std::abort();
        } else if (pattern.size() <= 64 && subject.size() <= 512) {
            if (got != pgpush::testing::oracle_like(subject, pattern)) std::abort();
        }
        break;
    }
    default:
        try {
            auto e = parse_expression(text, dialect::rules);
            to_string(*e);
            resolve_lookups(*e);
            bind_context ctx;
            ctx.table = &schema();
            ctx.claims = &claims();
            ctx.allow_old = true;
            ctx.lookups = [](const lookup_rule& l) -> const nlohmann::json* {
                return &l == &unknown_lookup() ? nullptr : &lookup_result();
            };
            const expr* one[] = {e.get()};
            auto p = predicate::bind(one, ctx);
            evaluate_everywhere(*p);
        } catch (const parse_error&) {
        } catch (const bind_error&) {
        }
    }
    return 0;
}
