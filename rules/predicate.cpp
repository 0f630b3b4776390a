#include "rules/predicate.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <limits>

#include <nlohmann/json.hpp>

#include "cdc/sql_quote.hpp"

namespace pgpush::rules {

std::optional<std::size_t> table_schema::find(std::string_view column) const {
    for (std::size_t i = 0; i < columns.size(); ++i) {
        if (columns[i].name == column) return i;
    }
    return std::nullopt;
}

std::string_view to_string(bind_error_code c) {
    switch (c) {
    case bind_error_code::unknown_column:
        return "unknown_column";
    case bind_error_code::type_mismatch:
        return "type_mismatch";
    case bind_error_code::bad_param:
        return "bad_param";
    case bind_error_code::bad_expression:
        return "bad_expression";
    }
    return "bad_expression";
}

using node = predicate::node;
using op = predicate::node::op;

namespace {

bool numeric_family(column_family f) {
    return f == column_family::integer || f == column_family::numeric ||
           f == column_family::floating || f == column_family::real;
}

value tri_value(tri t) {
    return t == tri::unknown ? value::null() : value::boolean(t == tri::true_);
}

tri truth_of(const value& v) {
    if (v.type() == value_type::boolean) return tri_of(v.as_bool());
    return tri::unknown;
}

tri compare_tri(const value& a, compare_op cmp, const value& b) {
    auto c = compare(a, b);
    if (!c) return tri::unknown;
    switch (cmp) {
    case compare_op::eq:
        return tri_of(*c == 0);
    case compare_op::ne:
        return tri_of(*c != 0);
    case compare_op::lt:
        return tri_of(*c < 0);
    case compare_op::le:
        return tri_of(*c <= 0);
    case compare_op::gt:
        return tri_of(*c > 0);
    case compare_op::ge:
        return tri_of(*c >= 0);
    }
    return tri::unknown;
}

tri in_tri(const value& x, std::span<const value> list) {
    if (x.is_null()) return tri::unknown;
    bool unknown = false;
    for (const auto& item : list) {
        auto t = compare_tri(x, compare_op::eq, item);
        if (t == tri::true_) return tri::true_;
        if (t == tri::unknown) unknown = true;
    }
    return unknown ? tri::unknown : tri::false_;
}

tri and_tri(tri a, tri b) {
    if (a == tri::false_ || b == tri::false_) return tri::false_;
    if (a == tri::unknown || b == tri::unknown) return tri::unknown;
    return tri::true_;
}

tri between_tri(const value& x, const value& lo, const value& hi) {
    return and_tri(compare_tri(x, compare_op::ge, lo), compare_tri(x, compare_op::le, hi));
}

// A JSON scalar as a value; strings borrow from the JSON.
value from_json(const nlohmann::json& j) {
    if (j.is_boolean()) return value::boolean(j.get<bool>());
    if (j.is_number_integer()) {
        if (j.is_number_unsigned() &&
            j.get<std::uint64_t>() > static_cast<std::uint64_t>(INT64_MAX)) {
            return value::floating(j.get<double>());
        }
        return value::integer(j.get<std::int64_t>());
    }
    if (j.is_number_float()) return value::floating(j.get<double>());
    if (j.is_string()) return value::text(j.get_ref<const std::string&>());
    return value::null();
}

const nlohmann::json* json_path(const nlohmann::json* j, const std::vector<std::string>& path) {
    for (const auto& seg : path) {
        if (j == nullptr || !j->is_object()) return nullptr;
        auto it = j->find(seg);
        if (it == j->end()) return nullptr;
        j = &*it;
    }
    return j;
}

std::string number_text(const value& v) {
    std::array<char, 32> buf;
    if (v.type() == value_type::integer) {
        auto [end, ec] = std::to_chars(buf.data(), buf.data() + buf.size(), v.as_int());
        return std::string(buf.data(), end);
    }
    if (v.type() == value_type::floating) {
        auto [end, ec] = std::to_chars(buf.data(), buf.data() + buf.size(), v.as_double());
        return std::string(buf.data(), end);
    }
    return std::string(v.as_text());
}

} // namespace

// Builds a predicate from expressions: resolves names, substitutes claims and parameters, folds
// constants and coerces them to the types of the columns they meet.
class binder {
public:
    binder(predicate& p, const bind_context& ctx) : p_(p), ctx_(ctx) {}

    std::uint32_t boolean(const expr& e) {
        auto i = bind(e);
        check_boolean(i, e);
        return i;
    }

private:
    struct info {
        bool from_literal = false; // constants written in the text (wrong types are errors)
        std::optional<column_family> family;  // columns
        input_type input = input_type::other; // columns: how text meeting them is read
    };

    std::uint32_t add(node n) { return add(n, info{false, std::nullopt}); }
    std::uint32_t add(node n, info inf) {
        p_.nodes_.push_back(n);
        infos_.push_back(inf);
        return static_cast<std::uint32_t>(p_.nodes_.size() - 1);
    }
    std::uint32_t constant(value v, bool from_literal) {
        p_.constants_.push_back(v);
        node n;
        n.kind = op::constant;
        n.a = static_cast<std::uint32_t>(p_.constants_.size() - 1);
        return add(n, info{from_literal, std::nullopt});
    }
    std::uint32_t truth(tri t) { return constant(tri_value(t), false); }
    bool is_constant(std::uint32_t i) const { return p_.nodes_[i].kind == op::constant; }
    const value& constant_of(std::uint32_t i) const { return p_.constants_[p_.nodes_[i].a]; }

    std::string_view keep(std::string s) {
        p_.strings_.push_back(std::move(s));
        return p_.strings_.back();
    }
    // Values that outlive the JSON or AST they came from.
    value own(const value& v) {
        if (v.type() == value_type::text) return value::text(keep(std::string(v.as_text())));
        if (v.type() == value_type::decimal) return value::decimal(keep(std::string(v.as_text())));
        return v;
    }

    value literal_value(const literal& l) {
        switch (l.type) {
        case literal::kind::null:
            return value::null();
        case literal::kind::boolean:
            return value::boolean(l.boolean);
        case literal::kind::integer:
            return value::integer(l.integer);
        case literal::kind::decimal:
            return value::decimal(keep(l.text));
        case literal::kind::text:
            return value::text(keep(l.text));
        }
        return value::null();
    }

    [[noreturn]] void fail(bind_error_code code, const expr& at, const std::string& msg) const {
        throw bind_error(code, at.offset, msg);
    }

    void check_boolean(std::uint32_t i, const expr& e) const {
        const node& n = p_.nodes_[i];
        if (n.kind == op::constant) {
            const value& v = constant_of(i);
            if (!v.is_null() && v.type() != value_type::boolean && infos_[i].from_literal) {
                fail(bind_error_code::type_mismatch, e,
                     "'" + rules::to_string(e) + "' is not a boolean condition");
            }
        } else if (n.kind == op::column || n.kind == op::old_column) {
            if (infos_[i].family && *infos_[i].family != column_family::boolean) {
                fail(bind_error_code::type_mismatch, e,
                     "column " + rules::to_string(e) + " is " + ctx_.table->columns[n.a].type_name +
                         ", not boolean: compare it with something");
            }
        }
    }

    std::uint32_t column_ref(const expr& e, bool old) {
        if (ctx_.table == nullptr) {
            fail(bind_error_code::bad_expression, e,
                 "'" + rules::to_string(e) + "' cannot be used here: there is no row");
        }
        std::string name = e.path.back();
        if (e.space == ref_space::column && e.path.size() == 2 && e.path[0] != ctx_.table->name) {
            fail(bind_error_code::unknown_column, e,
                 "'" + e.path[0] + "' is not the table being queried (" + ctx_.table->name + ")");
        }
        auto pos = ctx_.table->find(name);
        if (!pos) {
            fail(bind_error_code::unknown_column, e,
                 "column \"" + name + "\" does not exist in " + ctx_.table->qualified());
        }
        const column_info& col = ctx_.table->columns[*pos];
        const input_type input = input_type_of(col.family, col.type_name);
        node n;
        n.kind = old ? op::old_column : op::column;
        n.a = static_cast<std::uint32_t>(*pos);
        n.b = static_cast<std::uint32_t>(input);
        return add(n, info{false, col.family, input});
    }

    // What a claim (auth.x) or a lookup (lookup.x) stands for for this subscriber: nullptr when
    // the claim is missing or the lookup's result is not known.
    const nlohmann::json* resolve(const expr& e) const {
        if (e.space == ref_space::lookup) {
            const std::string& name = e.path.front();
            if (!ctx_.lookups)
                fail(bind_error_code::bad_expression, e, "lookup." + name + " cannot be used here");
            if (e.lookup == nullptr)
                fail(bind_error_code::bad_expression, e, "lookup." + name + " is not defined");
            return ctx_.lookups(*e.lookup);
        }
        if (ctx_.claims == nullptr) {
            fail(bind_error_code::bad_expression, e,
                 "auth." + e.path.front() + " cannot be used here");
        }
        return json_path(ctx_.claims, e.path);
    }

    static bool claim_like(const expr& e) {
        return e.type == expr::kind::ref &&
               (e.space == ref_space::auth || e.space == ref_space::lookup);
    }

    std::uint32_t claim(const expr& e) {
        const nlohmann::json* j = resolve(e);
        if (j == nullptr) return constant(value::null(), false); // missing claim: NULL, denies
        if (j->is_array()) {
            // An array claim is only meaningful on the right of IN (handled there).
            return constant(value::null(), false);
        }
        return constant(own(from_json(*j)), false);
    }

    std::uint32_t param(const expr& e) {
        if (e.param < 1 || static_cast<std::size_t>(e.param) > ctx_.params.size()) {
            fail(bind_error_code::bad_param, e,
                 "$" + std::to_string(e.param) + " has no value (" +
                     std::to_string(ctx_.params.size()) + " parameter(s) given)");
        }
        const auto& j = ctx_.params[static_cast<std::size_t>(e.param - 1)];
        if (!j.is_null() && !j.is_string() && !j.is_number() && !j.is_boolean()) {
            fail(bind_error_code::bad_param, e,
                 "$" + std::to_string(e.param) + " must be a scalar");
        }
        // Parameters are values the client wrote, like literals: wrong types are its error.
        return constant(own(from_json(j)), true);
    }

    // Coerces constant `c` to the type of the column it meets, as Postgres reads an untyped
    // literal: text goes through the column type's input function (read_input), exactly. A
    // literal or parameter Postgres would refuse is an error; a claim is NULL. Numbers stay
    // numbers (a numeric claim meeting text is its decimal text).
    std::uint32_t coerce_to(std::uint32_t c, column_family family, input_type input, const expr& at,
                            const expr& column_expr) {
        const value& v = constant_of(c);
        if (v.is_null()) return c;
        const bool literal = infos_[c].from_literal;
        std::optional<value> out;
        std::string storage;
        auto read = [&](std::string_view text) {
            if (auto r = read_input(input, text, storage)) out = own(*r);
        };
        switch (family) {
        case column_family::integer:
        case column_family::numeric:
        case column_family::floating:
        case column_family::real:
            if (v.is_number()) {
                out = v;
            } else if (v.type() == value_type::text) {
                read(v.as_text());
            }
            break;
        case column_family::timestamp:
        case column_family::date:
        case column_family::boolean:
            if ((v.type() == value_type::timestamp && family != column_family::boolean) ||
                (v.type() == value_type::boolean && family == column_family::boolean)) {
                out = v;
            } else if (v.type() == value_type::text) {
                read(v.as_text());
            }
            break;
        case column_family::text:
        case column_family::other:
            if (v.type() == value_type::text) {
                read(v.as_text());
            } else if (v.is_number() && !literal) {
                read(number_text(v)); // a numeric claim against a text column
            }
            break;
        }
        if (!out) {
            if (literal) {
                fail(bind_error_code::type_mismatch, at,
                     "type mismatch: " + rules::to_string(column_expr) + " is " +
                         std::string(rules::to_string(family)) + ", " + rules::to_string(at) +
                         " is not");
            }
            return constant(value::null(), false);
        }
        return constant(*out, literal);
    }

    std::uint32_t coerce_to_column(std::uint32_t c, std::uint32_t column, const expr& at,
                                   const expr& column_expr) {
        return coerce_to(c, *infos_[column].family, infos_[column].input, at, column_expr);
    }

    // Two operands about to be compared: coerce a constant to a column's type, and refuse
    // columns of types that cannot be compared.
    void reconcile(std::uint32_t& a, std::uint32_t& b, const expr& ea, const expr& eb) {
        // Copies: coerce_to() adds nodes, which may move infos_.
        const std::optional<column_family> fa = infos_[a].family;
        const std::optional<column_family> fb = infos_[b].family;
        if (fa && is_constant(b)) b = coerce_to_column(b, a, eb, ea);
        if (fb && is_constant(a)) a = coerce_to_column(a, b, ea, eb);
        if (fa && fb && !comparable_families(*fa, *fb)) {
            fail(bind_error_code::type_mismatch, ea,
                 "type mismatch: " + rules::to_string(ea) + " is " +
                     std::string(rules::to_string(*fa)) + ", " + rules::to_string(eb) + " is " +
                     std::string(rules::to_string(*fb)));
        }
    }

    std::uint32_t bind(const expr& e) {
        switch (e.type) {
        case expr::kind::literal:
            return constant(literal_value(e.lit), true);
        case expr::kind::param:
            return param(e);
        case expr::kind::ref:
            switch (e.space) {
            case ref_space::column:
            case ref_space::row:
                return column_ref(e, false);
            case ref_space::old:
                if (!ctx_.allow_old)
                    fail(bind_error_code::bad_expression, e, "old.* cannot be used here");
                return column_ref(e, true);
            case ref_space::auth:
            case ref_space::lookup:
                return claim(e);
            case ref_space::payload: {
                if (!ctx_.allow_payload) {
                    fail(bind_error_code::bad_expression, e,
                         "payload.* only exists in channel filters");
                }
                p_.paths_.push_back(e.path);
                node n;
                n.kind = op::payload;
                n.a = static_cast<std::uint32_t>(p_.paths_.size() - 1);
                return add(n);
            }
            }
            break;
        case expr::kind::list:
            fail(bind_error_code::bad_expression, e, "a list can only follow IN");
        case expr::kind::not_: {
            auto c = boolean(*e.args[0]);
            if (is_constant(c)) return truth(tri_not(truth_of(constant_of(c))));
            node n;
            n.kind = op::not_;
            n.a = c;
            return add(n);
        }
        case expr::kind::and_:
        case expr::kind::or_:
            return junction(e);
        case expr::kind::compare: {
            auto a = bind(*e.args[0]);
            auto b = bind(*e.args[1]);
            reconcile(a, b, *e.args[0], *e.args[1]);
            if (is_constant(a) && is_constant(b)) {
                return truth(compare_tri(constant_of(a), e.op, constant_of(b)));
            }
            node n;
            n.kind = op::compare;
            n.cmp = e.op;
            n.a = a;
            n.b = b;
            return add(n);
        }
        case expr::kind::in:
            return in(e);
        case expr::kind::is_null: {
            // A claim is NULL when it is missing or JSON null; an array or object is a value,
            // though it compares with nothing.
            const expr& x = *e.args[0];
            if (claim_like(x)) {
                const nlohmann::json* j = resolve(x);
                return truth(tri_of((j == nullptr || j->is_null()) != e.negated));
            }
            auto a = bind(x);
            if (is_constant(a)) return truth(tri_of(constant_of(a).is_null() != e.negated));
            node n;
            n.kind = op::is_null;
            n.negated = e.negated;
            n.a = a;
            return add(n);
        }
        case expr::kind::like: {
            auto a = like_operand(*e.args[0]);
            auto b = like_operand(*e.args[1]);
            if (!is_constant(b)) {
                fail(bind_error_code::bad_expression, *e.args[1],
                     "a LIKE pattern must be a value (a string, $N or auth.*), not " +
                         rules::to_string(*e.args[1]));
            }
            p_.patterns_.emplace_back();
            const value& pattern = constant_of(b);
            if (pattern.type() == value_type::text) {
                const auto problem = check_like_pattern(pattern.as_text());
                if (problem != like_pattern_error::none) {
                    if (infos_[b].from_literal) {
                        fail(bind_error_code::type_mismatch, *e.args[1],
                             problem == like_pattern_error::too_long
                                 ? "LIKE pattern " + rules::to_string(*e.args[1]).substr(0, 40) +
                                       "... is longer than " +
                                       std::to_string(like_max_pattern_chars) + " characters"
                                 : "LIKE pattern must not end with escape character: " +
                                       rules::to_string(*e.args[1]));
                    }
                    b = constant(value::null(), false); // a claim Postgres would refuse: NULL
                } else {
                    p_.patterns_.back() = like_pattern(pattern.as_text());
                }
            }
            const auto compiled = static_cast<std::uint32_t>(p_.patterns_.size() - 1);
            if (is_constant(a)) {
                auto t = p_.like(constant_of(a), constant_of(b), compiled);
                return truth(e.negated ? tri_not(t) : t);
            }
            node n;
            n.kind = op::like;
            n.negated = e.negated;
            n.a = a;
            n.b = b;
            n.c = compiled;
            return add(n);
        }
        case expr::kind::between: {
            auto a = bind(*e.args[0]);
            auto lo = bind(*e.args[1]);
            auto hi = bind(*e.args[2]);
            reconcile(a, lo, *e.args[0], *e.args[1]);
            reconcile(a, hi, *e.args[0], *e.args[2]);
            if (is_constant(a) && is_constant(lo) && is_constant(hi)) {
                auto t = between_tri(constant_of(a), constant_of(lo), constant_of(hi));
                return truth(e.negated ? tri_not(t) : t);
            }
            node n;
            n.kind = op::between;
            n.negated = e.negated;
            n.a = a;
            n.b = lo;
            n.c = hi;
            return add(n);
        }
        }
        fail(bind_error_code::bad_expression, e, "unsupported expression");
    }

    // An operand of LIKE: a text or "other" column, a payload field, or a value that is text.
    // A numeric claim is its decimal text; a literal or parameter that is not text, or text
    // with a NUL byte, is an error; any other claim is NULL.
    std::uint32_t like_operand(const expr& x) {
        auto i = bind(x);
        const std::optional<column_family> f = infos_[i].family;
        if (f && *f != column_family::text && *f != column_family::other) {
            fail(bind_error_code::type_mismatch, x,
                 "LIKE needs text: " + rules::to_string(x) + " is " +
                     std::string(rules::to_string(*f)));
        }
        if (!is_constant(i)) return i;
        const value v = constant_of(i);
        if (v.is_null()) return i;
        const bool is_text =
            v.type() == value_type::text && v.as_text().find('\0') == std::string_view::npos;
        if (infos_[i].from_literal) {
            if (!is_text) {
                fail(bind_error_code::type_mismatch, x,
                     "LIKE needs text: " + rules::to_string(x) + " is not");
            }
            return i;
        }
        if (is_text) return i;
        if (v.is_number()) return constant(value::text(keep(number_text(v))), false);
        return constant(value::null(), false);
    }

    // Postgres' numeric types in the order of its implicit casts (int2 -> int4 -> int8 ->
    // numeric -> real -> double precision): the common type of several is the last of them.
    static int numeric_rank(input_type t) {
        switch (t) {
        case input_type::int2:
            return 0;
        case input_type::int4:
            return 1;
        case input_type::int8:
            return 2;
        case input_type::numeric:
            return 3;
        case input_type::float4:
            return 4;
        case input_type::float8:
            return 5;
        default:
            return -1;
        }
    }

    // The type Postgres gives an IN list of several items against numeric column `a`: the
    // common type of the column and the items that have one (a literal is int4, int8 or
    // numeric by its size and form; a JSON number from $N or a claim is bigint or double
    // precision, as to_sql writes it; a string claim has the column's type). Untyped items
    // (quoted literals, string $N) are read as that type.
    input_type list_type(std::uint32_t a,
                         std::span<const std::pair<std::uint32_t, const expr*>> raw) {
        const input_type column = infos_[a].input;
        int rank = numeric_rank(column);
        if (rank < 0) return column; // oid: left as it is
        static constexpr input_type by_rank[] = {input_type::int2,   input_type::int4,
                                                 input_type::int8,   input_type::numeric,
                                                 input_type::float4, input_type::float8};
        for (const auto& [i, at] : raw) {
            const value& v = constant_of(i);
            int r = -1;
            if (v.type() == value_type::integer) {
                const bool literal = at->type == expr::kind::literal;
                r = literal && v.as_int() >= INT32_MIN && v.as_int() <= INT32_MAX ? 1 : 2;
            } else if (v.type() == value_type::decimal) {
                r = 3;
            } else if (v.type() == value_type::floating) {
                r = 5;
            }
            rank = std::max(rank, r);
        }
        return by_rank[rank];
    }

    std::uint32_t in(const expr& e) {
        auto a = bind(*e.args[0]);
        const expr& rhs = *e.args[1];
        std::vector<std::pair<std::uint32_t, const expr*>> raw; // bound items, where written
        if (rhs.type == expr::kind::list) {
            for (const auto& item : rhs.args) {
                auto i = bind(*item);
                if (!is_constant(i))
                    fail(bind_error_code::bad_expression, *item, "list items must be values");
                raw.emplace_back(i, item.get());
            }
        } else if (claim_like(rhs)) {
            const nlohmann::json* j = resolve(rhs);
            // A missing or non-array claim (or a lookup whose result is not known) is NULL:
            // x IN NULL is unknown, which denies.
            if (j == nullptr || !j->is_array()) return truth(tri::unknown);
            for (const auto& el : *j)
                raw.emplace_back(constant(own(from_json(el)), false), &rhs);
            if (raw.empty()) return truth(e.negated ? tri::true_ : tri::false_);
        } else {
            fail(bind_error_code::bad_expression, rhs, "IN needs a list or an array claim");
        }
        const std::optional<column_family> family = infos_[a].family;
        std::optional<input_type> common;
        if (family && numeric_family(*family) && raw.size() > 1) common = list_type(a, raw);
        std::vector<value> items;
        std::vector<bool> literal; // per item: written in the text (not a claim)
        for (const auto& [item, at] : raw) {
            std::uint32_t i = item;
            if (family) {
                input_type as = infos_[a].input;
                if (common && infos_[i].from_literal && constant_of(i).type() == value_type::text)
                    as = *common;
                i = coerce_to(i, *family, as, *at, *e.args[0]);
            }
            items.push_back(constant_of(i));
            literal.push_back(infos_[i].from_literal);
        }
        // Typed items take the common type: against a real column numeric literals become reals;
        // with a double among the items, everything is compared as a double.
        const bool to_real = common == input_type::float4;
        const bool to_double = common == input_type::float8 && family != column_family::floating &&
                               family != column_family::real;
        if (to_real || to_double) {
            for (std::size_t k = 0; k < items.size(); ++k) {
                value& v = items[k];
                if (v.type() != value_type::integer && v.type() != value_type::decimal) continue;
                const std::string digits = v.type() == value_type::integer
                                               ? std::to_string(v.as_int())
                                               : std::string(v.as_text());
                std::string storage;
                auto r =
                    read_input(to_real ? input_type::float4 : input_type::float8, digits, storage);
                if (!r && literal[k]) {
                    fail(bind_error_code::type_mismatch, rhs,
                         digits + " is out of range for " +
                             (to_real ? "a real" : "double precision"));
                }
                v = r ? *r : value::null(); // a claim out of range is NULL
            }
        }
        if (is_constant(a)) {
            auto t = in_tri(constant_of(a), items);
            return truth(e.negated ? tri_not(t) : t);
        }
        p_.lists_.push_back(std::move(items));
        node n;
        n.kind = op::in_list;
        n.negated = e.negated;
        n.a = a;
        n.b = static_cast<std::uint32_t>(p_.lists_.size() - 1);
        return add(n);
    }

    std::uint32_t junction(const expr& e) {
        const bool is_and = e.type == expr::kind::and_;
        // AND: a false child decides; true children drop out. OR: the reverse.
        const tri decisive = is_and ? tri::false_ : tri::true_;
        std::vector<std::uint32_t> kept;
        bool unknown = false, decided = false;
        // Every child is bound, even after one decides: a literal Postgres would refuse is an
        // error wherever it stands, as it is there (at parse time, not at evaluation).
        for (const auto& arg : e.args) {
            auto c = boolean(*arg);
            if (!is_constant(c)) {
                kept.push_back(c);
                continue;
            }
            tri t = truth_of(constant_of(c));
            if (t == decisive) decided = true;
            if (t == tri::unknown) unknown = true;
        }
        if (decided) return truth(decisive);
        if (kept.empty()) return truth(unknown ? tri::unknown : tri_not(decisive));
        if (unknown) kept.push_back(truth(tri::unknown));
        if (kept.size() == 1) return kept[0];
        node n;
        n.kind = is_and ? op::and_ : op::or_;
        n.a = static_cast<std::uint32_t>(p_.children_.size());
        n.b = static_cast<std::uint32_t>(kept.size());
        p_.children_.insert(p_.children_.end(), kept.begin(), kept.end());
        return add(n);
    }

    predicate& p_;
    const bind_context& ctx_;
    std::vector<info> infos_;

public:
    // The AND of several bound roots, folded the same way.
    std::uint32_t conjunction(std::span<const expr* const> conjuncts) {
        std::vector<std::uint32_t> kept;
        bool unknown = false, decided = false;
        for (const expr* e : conjuncts) {
            if (e == nullptr) continue;
            auto c = boolean(*e);
            if (!is_constant(c)) {
                kept.push_back(c);
                continue;
            }
            tri t = truth_of(constant_of(c));
            if (t == tri::false_) decided = true;
            if (t == tri::unknown) unknown = true;
        }
        if (decided) return truth(tri::false_);
        if (kept.empty()) return truth(unknown ? tri::unknown : tri::true_);
        if (unknown) kept.push_back(truth(tri::unknown));
        if (kept.size() == 1) return kept[0];
        node n;
        n.kind = op::and_;
        n.a = static_cast<std::uint32_t>(p_.children_.size());
        n.b = static_cast<std::uint32_t>(kept.size());
        p_.children_.insert(p_.children_.end(), kept.begin(), kept.end());
        return add(n);
    }
};

std::unique_ptr<predicate> predicate::bind(std::span<const expr* const> conjuncts,
                                           const bind_context& context) {
    std::unique_ptr<predicate> p(new predicate());
    binder b(*p, context);
    p->root_ = b.conjunction(conjuncts);
    return p;
}

value predicate::operand(std::uint32_t i, const row_values& r) const noexcept {
    const node& n = nodes_[i];
    switch (n.kind) {
    case op::constant:
        return constants_[n.a];
    case op::column:
        return n.a < r.row.size() ? r.row[n.a] : value::null();
    case op::old_column:
        return n.a < r.old.size() ? r.old[n.a] : value::null();
    case op::payload: {
        const nlohmann::json* j = json_path(r.payload, paths_[n.a]);
        return j ? from_json(*j) : value::null();
    }
    default:
        return tri_value(test(i, r));
    }
}

tri predicate::test(std::uint32_t i, const row_values& r) const noexcept {
    const node& n = nodes_[i];
    switch (n.kind) {
    case op::constant:
    case op::column:
    case op::old_column:
    case op::payload:
        return truth_of(operand(i, r));
    case op::and_: {
        tri acc = tri::true_;
        for (std::uint32_t k = 0; k < n.b; ++k) {
            tri t = test(children_[n.a + k], r);
            if (t == tri::false_) return tri::false_;
            if (t == tri::unknown) acc = tri::unknown;
        }
        return acc;
    }
    case op::or_: {
        tri acc = tri::false_;
        for (std::uint32_t k = 0; k < n.b; ++k) {
            tri t = test(children_[n.a + k], r);
            if (t == tri::true_) return tri::true_;
            if (t == tri::unknown) acc = tri::unknown;
        }
        return acc;
    }
    case op::not_:
        return tri_not(test(n.a, r));
    case op::compare:
        return compare_tri(operand(n.a, r), n.cmp, operand(n.b, r));
    case op::in_list: {
        tri t = in_tri(operand(n.a, r), lists_[n.b]);
        return n.negated ? tri_not(t) : t;
    }
    case op::is_null: {
        bool null = false;
        if (nodes_[n.a].kind == op::payload) {
            // An array or object is a value here, though it compares with nothing.
            const nlohmann::json* j = json_path(r.payload, paths_[nodes_[n.a].a]);
            null = j == nullptr || j->is_null();
        } else {
            null = operand(n.a, r).is_null();
        }
        return tri_of(null != n.negated);
    }
    case op::like: {
        tri t = like(operand(n.a, r), operand(n.b, r), n.c);
        return n.negated ? tri_not(t) : t;
    }
    case op::between: {
        tri t = between_tri(operand(n.a, r), operand(n.b, r), operand(n.c, r));
        return n.negated ? tri_not(t) : t;
    }
    }
    return tri::unknown;
}

tri predicate::like(const value& subject, const value& pattern,
                    std::uint32_t compiled) const noexcept {
    if (subject.is_null() || pattern.type() != value_type::text) return tri::unknown;
    if (subject.type() == value_type::text)
        return tri_of(patterns_[compiled].match(subject.as_text()));
    // A number (a payload field) is its decimal text, as a numeric claim is.
    std::array<char, 32> buf;
    std::to_chars_result written{};
    if (subject.type() == value_type::integer) {
        written = std::to_chars(buf.data(), buf.data() + buf.size(), subject.as_int());
    } else if (subject.type() == value_type::floating) {
        written = std::to_chars(buf.data(), buf.data() + buf.size(), subject.as_double());
    } else {
        return tri::unknown;
    }
    if (written.ec != std::errc{}) return tri::unknown;
    return tri_of(patterns_[compiled].match(
        std::string_view(buf.data(), static_cast<std::size_t>(written.ptr - buf.data()))));
}

tri predicate::evaluate(const row_values& r) const noexcept {
    return test(root_, r);
}

std::optional<tri> predicate::constant() const {
    if (nodes_[root_].kind != op::constant) return std::nullopt;
    return truth_of(constants_[nodes_[root_].a]);
}

std::optional<predicate::index_hint> predicate::index() const {
    auto hint_for = [&](std::uint32_t i) -> std::optional<index_hint> {
        const node& n = nodes_[i];
        if (n.kind == op::compare && n.cmp == compare_op::eq) {
            const node& x = nodes_[n.a];
            const node& y = nodes_[n.b];
            if (x.kind == op::column && y.kind == op::constant && !constants_[y.a].is_null()) {
                return index_hint{x.a, {constants_[y.a]}, false};
            }
            if (y.kind == op::column && x.kind == op::constant && !constants_[x.a].is_null()) {
                return index_hint{y.a, {constants_[x.a]}, false};
            }
        }
        if (n.kind == op::in_list && !n.negated && nodes_[n.a].kind == op::column) {
            index_hint h{nodes_[n.a].a, {}, false};
            for (const auto& v : lists_[n.b]) {
                if (!v.is_null()) h.values.push_back(v);
            }
            return h;
        }
        return std::nullopt;
    };
    if (auto h = hint_for(root_)) {
        h->exact = true;
        return h;
    }
    const node& r = nodes_[root_];
    if (r.kind != op::and_) return std::nullopt;
    std::optional<index_hint> best;
    for (std::uint32_t k = 0; k < r.b; ++k) {
        auto h = hint_for(children_[r.a + k]);
        if (h && (!best || h->values.size() < best->values.size())) best = std::move(h);
    }
    return best;
}

std::vector<std::size_t> predicate::columns() const {
    std::vector<std::size_t> out;
    for (const auto& n : nodes_) {
        if ((n.kind == op::column || n.kind == op::old_column) &&
            std::find(out.begin(), out.end(), n.a) == out.end()) {
            out.push_back(n.a);
        }
    }
    std::sort(out.begin(), out.end());
    return out;
}

std::string predicate::render(std::uint32_t i) const {
    const node& n = nodes_[i];
    auto val = [](const value& v) -> std::string {
        switch (v.type()) {
        case value_type::null:
            return "NULL";
        case value_type::boolean:
            return v.as_bool() ? "true" : "false";
        case value_type::integer:
            return std::to_string(v.as_int());
        case value_type::floating:
            return number_text(v);
        case value_type::decimal:
            return std::string(v.as_text());
        case value_type::text:
            return "'" + std::string(v.as_text()) + "'";
        case value_type::timestamp:
            return "timestamp(" + std::to_string(v.as_int()) + ")";
        case value_type::list:
            return "list";
        }
        return "?";
    };
    const std::string neg = n.negated ? "NOT " : "";
    switch (n.kind) {
    case op::constant:
        return val(constants_[n.a]);
    case op::column:
        return "$col" + std::to_string(n.a);
    case op::old_column:
        return "$old" + std::to_string(n.a);
    case op::payload: {
        std::string s = "payload";
        for (const auto& seg : paths_[n.a])
            s += "." + seg;
        return s;
    }
    case op::and_:
    case op::or_: {
        std::string s = "(";
        for (std::uint32_t k = 0; k < n.b; ++k) {
            if (k) s += n.kind == op::and_ ? " AND " : " OR ";
            s += render(children_[n.a + k]);
        }
        return s + ")";
    }
    case op::not_:
        return "NOT " + render(n.a);
    case op::compare:
        return render(n.a) + " " + std::string(rules::to_string(n.cmp)) + " " + render(n.b);
    case op::in_list: {
        std::string s = render(n.a) + " " + neg + "IN (";
        for (std::size_t k = 0; k < lists_[n.b].size(); ++k)
            s += (k ? ", " : "") + val(lists_[n.b][k]);
        return s + ")";
    }
    case op::is_null:
        return render(n.a) + " IS " + neg + "NULL";
    case op::like:
        return render(n.a) + " " + neg + "LIKE " + render(n.b);
    case op::between:
        return render(n.a) + " " + neg + "BETWEEN " + render(n.b) + " AND " + render(n.c);
    }
    return "?";
}

std::string predicate::to_string() const {
    return render(root_);
}

namespace {

using cdc::sql::quote_identifier;

// Microseconds since 2000-01-01 UTC as Postgres reads a timestamptz: "2024-01-02 03:04:05.5+00".
std::string timestamp_text(std::int64_t micros) {
    if (micros == std::numeric_limits<std::int64_t>::max()) return "infinity";
    if (micros == std::numeric_limits<std::int64_t>::min()) return "-infinity";
    constexpr std::int64_t day = 86'400'000'000;
    std::int64_t days = micros / day, rem = micros % day;
    if (rem < 0) {
        rem += day;
        --days;
    }
    // Days since 2000-01-01 to a civil date (H. Hinnant's algorithm, shifted from 1970).
    std::int64_t z = days + 10'957 + 719'468;
    const std::int64_t era = (z >= 0 ? z : z - 146'096) / 146'097;
    const std::int64_t doe = z - era * 146'097;
    const std::int64_t yoe = (doe - doe / 1460 + doe / 36'524 - doe / 146'096) / 365;
    std::int64_t y = yoe + era * 400;
    const std::int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const std::int64_t mp = (5 * doy + 2) / 153;
    const std::int64_t d = doy - (153 * mp + 2) / 5 + 1;
    const std::int64_t m = mp < 10 ? mp + 3 : mp - 9;
    if (m <= 2) ++y;
    const bool bc = y <= 0;
    char buf[80];
    std::snprintf(buf, sizeof buf, "%04lld-%02lld-%02lld %02lld:%02lld:%02lld.%06lld+00%s",
                  static_cast<long long>(bc ? 1 - y : y), static_cast<long long>(m),
                  static_cast<long long>(d), static_cast<long long>(rem / 3'600'000'000),
                  static_cast<long long>(rem / 60'000'000 % 60),
                  static_cast<long long>(rem / 1'000'000 % 60),
                  static_cast<long long>(rem % 1'000'000), bc ? " BC" : "");
    return buf;
}

// A constant as a parameter reference with an explicit cast, pushing its text to `params`. Text
// is cast to `text_cast` ("::text", or "::uuid" against a uuid column).
std::string parameter(const value& v, std::vector<std::string>& params,
                      const char* text_cast = "::text") {
    auto next = [&](std::string text, const char* cast) {
        params.push_back(std::move(text));
        return "$" + std::to_string(params.size()) + cast;
    };
    switch (v.type()) {
    case value_type::null:
        return "NULL";
    case value_type::boolean:
        return v.as_bool() ? "TRUE" : "FALSE";
    case value_type::integer:
        return next(std::to_string(v.as_int()), "::int8");
    case value_type::decimal:
        return next(std::string(v.as_text()), "::numeric");
    case value_type::floating: {
        double d = v.as_double();
        if (std::isnan(d)) return next("NaN", "::float8");
        if (std::isinf(d)) return next(d > 0 ? "Infinity" : "-Infinity", "::float8");
        std::array<char, 32> buf;
        auto [end, ec] = std::to_chars(buf.data(), buf.data() + buf.size(), d);
        return next(std::string(buf.data(), end), "::float8");
    }
    case value_type::text:
        return next(std::string(v.as_text()), text_cast);
    case value_type::timestamp:
        return next(timestamp_text(v.as_int()), "::timestamptz");
    case value_type::list:
        break;
    }
    return "NULL";
}

bool textual(input_type t) {
    return t == input_type::text || t == input_type::padded || t == input_type::uuid ||
           t == input_type::text_cast || t == input_type::other;
}

const char* const collate_c = " COLLATE \"C\")";

} // namespace

std::string predicate::to_sql(std::span<const std::string> column_names,
                              std::vector<std::string>& params) const {
    return sql(root_, column_names, params);
}

// How the text operands of one comparison are written so that Postgres compares exactly as the
// evaluator does, in C order whatever the columns' collations:
//  - plain: text/varchar/name columns, as themselves; where order matters (and for <>),
//    with COLLATE "C". Equality keeps a form an index on the column can serve, and adds the C
//    comparison so that a nondeterministic collation cannot widen it: col = $1 AND
//    (col COLLATE "C") = $1 is exactly the C equality.
//  - uuid: uuid columns against uuid constants ($n::uuid): byte order is the canonical text's.
//  - cast: anything else textual (char(n), "char", domains, enums and other types compared by
//    text, or a mix): the columns' text, (col::text COLLATE "C"); char(n) with its padding, as
//    the stream carries it.
predicate::text_sql predicate::text_mode(std::initializer_list<std::uint32_t> operands) const {
    bool any = false, all_plain = true, all_uuid = true;
    for (auto i : operands) {
        const node& n = nodes_[i];
        if (n.kind != op::column) continue;
        const auto t = static_cast<input_type>(n.b);
        if (!textual(t)) continue;
        any = true;
        all_plain = all_plain && t == input_type::text;
        all_uuid = all_uuid && t == input_type::uuid;
    }
    if (!any) return text_sql::none;
    if (all_plain) return text_sql::plain;
    if (all_uuid) return text_sql::uuid;
    return text_sql::cast;
}

std::string predicate::sql_operand(std::uint32_t i, text_sql mode, bool collate,
                                   std::span<const std::string> names,
                                   std::vector<std::string>& params) const {
    const node& n = nodes_[i];
    if (n.kind == op::constant) {
        return parameter(constants_[n.a], params, mode == text_sql::uuid ? "::uuid" : "::text");
    }
    if (n.kind == op::column && n.a < names.size() && textual(static_cast<input_type>(n.b))) {
        const std::string col = quote_identifier(names[n.a]);
        switch (mode) {
        case text_sql::plain:
            return collate ? "(" + col + collate_c : col;
        case text_sql::cast:
            // char(n) as the stream carries it, padded: its casts to text drop the padding.
            if (static_cast<input_type>(n.b) == input_type::padded) {
                return "(textin(bpcharout(" + col + "))" + collate_c;
            }
            return "(" + col + "::text" + collate_c;
        case text_sql::uuid:
        case text_sql::none:
            return col;
        }
    }
    return sql(i, names, params);
}

std::string predicate::sql(std::uint32_t i, std::span<const std::string> names,
                           std::vector<std::string>& params) const {
    const node& n = nodes_[i];
    const std::string neg = n.negated ? "NOT " : "";
    switch (n.kind) {
    case op::constant:
        return parameter(constants_[n.a], params);
    case op::column:
        return n.a < names.size() ? quote_identifier(names[n.a]) : "NULL";
    case op::old_column:
    case op::payload:
        return "NULL"; // not row data: never part of a snapshot's filter
    case op::and_:
    case op::or_: {
        std::string out = "(";
        for (std::uint32_t k = 0; k < n.b; ++k) {
            if (k) out += n.kind == op::and_ ? " AND " : " OR ";
            out += sql(children_[n.a + k], names, params);
        }
        return out + ")";
    }
    case op::not_:
        return "(NOT " + sql(n.a, names, params) + ")";
    case op::compare: {
        const text_sql mode = text_mode({n.a, n.b});
        const bool a_col = nodes_[n.a].kind == op::column, b_col = nodes_[n.b].kind == op::column;
        if (mode == text_sql::plain && n.cmp == compare_op::eq && a_col != b_col) {
            const std::uint32_t col = a_col ? n.a : n.b, k = a_col ? n.b : n.a;
            const std::string c = sql_operand(col, mode, false, names, params);
            const std::string v = sql_operand(k, mode, false, names, params);
            return "(" + c + " = " + v + " AND (" + c + collate_c + " = " + v + ")";
        }
        const bool collate = mode == text_sql::plain || mode == text_sql::cast;
        const std::string a = sql_operand(n.a, mode, collate, names, params);
        return "(" + a + " " + std::string(rules::to_string(n.cmp)) + " " +
               sql_operand(n.b, mode, collate, names, params) + ")";
    }
    case op::in_list: {
        const text_sql mode = text_mode({n.a});
        std::string list = "(";
        const auto& items = lists_[n.b];
        for (std::size_t k = 0; k < items.size(); ++k) {
            if (k) list += ", ";
            list += parameter(items[k], params, mode == text_sql::uuid ? "::uuid" : "::text");
        }
        list += ")";
        if (mode == text_sql::plain && !n.negated) {
            const std::string c = sql_operand(n.a, mode, false, names, params);
            return "(" + c + " IN " + list + " AND (" + c + collate_c + " IN " + list + ")";
        }
        const bool collate = mode == text_sql::plain || mode == text_sql::cast;
        return "(" + sql_operand(n.a, mode, collate, names, params) + " " + neg + "IN " + list +
               ")";
    }
    case op::is_null:
        return "(" + sql(n.a, names, params) + " IS " + neg + "NULL)";
    case op::like: {
        // LIKE in C collation, on the column's text; the pattern is text.
        const node& x = nodes_[n.a];
        const text_sql mode =
            x.kind == op::column && static_cast<input_type>(x.b) != input_type::text
                ? text_sql::cast
                : text_mode({n.a});
        return "(" + sql_operand(n.a, mode, true, names, params) + " " + neg + "LIKE " +
               sql_operand(n.b, text_sql::plain, true, names, params) + ")";
    }
    case op::between: {
        const text_sql mode = text_mode({n.a, n.b, n.c});
        const bool collate = mode == text_sql::plain || mode == text_sql::cast;
        const std::string a = sql_operand(n.a, mode, collate, names, params);
        const std::string lo = sql_operand(n.b, mode, collate, names, params);
        return "(" + a + " " + neg + "BETWEEN " + lo + " AND " +
               sql_operand(n.c, mode, collate, names, params) + ")";
    }
    }
    return "NULL";
}

} // namespace pgpush::rules
