// Fuzzes rules/: the rules.yaml loader, the expression and query parsers, binding and evaluation.
//
// Input, first byte:
//   0 mod 4: the rest is a rules.yaml file; loading must give rules or errors with positions
//            inside the file, never crash.
//   1 mod 4: the rest is a subscription query, planned against a fixed rules file, schema and
//            claims; a plan must evaluate on a fixed set of rows without crashing.
//   2 mod 4: the rest is a rules-dialect expression, bound with claims (near misses for their
//            columns' types among them) and a schema, evaluated and rendered as SQL.
//   3 mod 4: the rest is a LIKE pattern, a NUL, and a text: the linear matcher must agree with
//            the backtracking one it replaced (kept here as the oracle), for any bytes.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
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
        load_rules("tables:\n  messages:\n    rows: \"row.room_id in auth.rooms or row.id = "
                   "auth.sub\"\n    columns: \"*\"\n")
            .rules;
    return r;
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
        break;
    }
    case 1: {
        nlohmann::json params[] = {7, "x"};
        auto plan = plan_subscription(fixed_rules(), {text, &claims(), params},
                                      [](std::string_view t) -> const table_schema* {
                                          return t == "public.messages" ? &schema() : nullptr;
                                      });
        if (auto* p = std::get_if<subscription_plan>(&plan)) evaluate_everywhere(*p->filter);
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
            bind_context ctx;
            ctx.table = &schema();
            ctx.claims = &claims();
            ctx.allow_old = true;
            const expr* one[] = {e.get()};
            auto p = predicate::bind(one, ctx);
            evaluate_everywhere(*p);
        } catch (const parse_error&) {
        } catch (const bind_error&) {
        }
    }
    return 0;
}
