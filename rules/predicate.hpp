#pragma once

// A predicate bound for one subscriber: claims and parameters substituted, columns resolved to
// positions, constants folded and coerced to their columns' types. Evaluation is noexcept and
// allocation-free, SQL three-valued, and never reads outside the row it is given.

#include <deque>
#include <functional>
#include <initializer_list>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "rules/ast.hpp"
#include "rules/like.hpp"
#include "rules/value.hpp"

namespace pgpush::rules {

struct column_info {
    std::string name;
    column_family family = column_family::other;
    std::string type_name; // for messages: "integer", "timestamp with time zone", ...
};

// A table's columns in relation order (the order rows arrive in).
struct table_schema {
    std::string schema;
    std::string name;
    std::vector<column_info> columns;

    std::string qualified() const { return schema + "." + name; }
    std::optional<std::size_t> find(std::string_view column) const;
};

// Stable codes; the push layer maps them to protocol errors.
enum class bind_error_code { unknown_column, type_mismatch, bad_param, bad_expression };

std::string_view to_string(bind_error_code c);

class bind_error : public std::runtime_error {
public:
    bind_error(bind_error_code why, source_offset at, const std::string& message)
        : std::runtime_error(message), code(why), offset(at) {}
    bind_error_code code;
    source_offset offset;
};

// A lookup's current result for one subscriber: a JSON array of the output column's values (as
// an array claim), or nullptr when it is not known (then lookup.x binds as a missing claim:
// unknown, which denies).
using lookup_resolver = std::function<const nlohmann::json*(const lookup_rule&)>;

struct bind_context {
    const table_schema* table = nullptr;    // row.x / old.x / bare columns; null: none allowed
    const nlohmann::json* claims = nullptr; // auth.x; null: auth refs are errors
    std::span<const nlohmann::json> params; // $1..$N
    bool allow_old = false;                 // old.x
    bool allow_payload = false;             // payload.x (channel filters)
    // lookup.x: the lookup's current result for this subscriber. Called once per reference (a
    // caller wanting one answer per lookup caches it: plan_subscription does). The result is
    // copied into the predicate, so it need only live until bind() returns. Null resolver:
    // lookup refs are errors; so is a ref the loader did not resolve (expr::lookup null).
    lookup_resolver lookups;
};

struct row_values {
    std::span<const value> row; // by column position; shorter or empty: missing columns are null
    std::span<const value> old;
    const nlohmann::json* payload = nullptr;
};

class predicate {
public:
    // Binds the conjunction of `conjuncts` (nullptr entries skipped; none is TRUE). Throws
    // bind_error. A constant meeting a column is read as Postgres reads an untyped literal of
    // the column's type (read_input). lookup.x binds exactly as an array claim with the
    // resolver's value. Claims that are missing, of a type their use cannot take,
    // or text Postgres would refuse for that type become NULL (so they deny); literals and $N
    // parameters Postgres would refuse are errors, and so are LIKE patterns it would refuse or
    // over like_max_pattern_chars (as claims, NULL). A LIKE pattern must be a value.
    static std::unique_ptr<predicate> bind(std::span<const expr* const> conjuncts,
                                           const bind_context& context);

    predicate(const predicate&) = delete;
    predicate& operator=(const predicate&) = delete;

    tri evaluate(const row_values& r) const noexcept;

    // Set when folding left a constant: the predicate is this whatever the row.
    std::optional<tri> constant() const;

    // An equality (column = c) or IN (column IN (c1, ...)) conjunct at the top: subscriptions
    // can be found by the column's value. `exact`: that conjunct is the whole predicate.
    struct index_hint {
        std::size_t column = 0;
        std::vector<value> values; // borrow from this predicate
        bool exact = false;
    };
    std::optional<index_hint> index() const;

    // Column positions the predicate reads (row or old).
    std::vector<std::size_t> columns() const;

    // For tests and logs, SQL-like.
    std::string to_string() const;

    // The predicate as a SQL condition for a snapshot query: columns quoted from `column_names`
    // (positions as in the schema it was bound with), every constant a parameter appended to
    // `params` in text format with an explicit cast to what it is compared with (::int8,
    // ::numeric, ::float8, ::timestamptz, ::text, ::uuid), and text ordered, compared and LIKEd
    // with COLLATE "C", so that Postgres selects exactly the rows evaluate() accepts whatever
    // the columns' collations. No text a client wrote ever becomes SQL. Only for predicates over
    // row.* (no payload/old).
    std::string to_sql(std::span<const std::string> column_names,
                       std::vector<std::string>& params) const;

    struct node;

private:
    predicate() = default;
    friend class binder;

    value operand(std::uint32_t i, const row_values& r) const noexcept;
    tri test(std::uint32_t i, const row_values& r) const noexcept;
    tri like(const value& subject, const value& pattern, std::uint32_t compiled) const noexcept;
    std::string render(std::uint32_t i) const;
    std::string sql(std::uint32_t i, std::span<const std::string> names,
                    std::vector<std::string>& params) const;
    enum class text_sql : std::uint8_t { none, plain, uuid, cast };
    text_sql text_mode(std::initializer_list<std::uint32_t> operands) const;
    std::string sql_operand(std::uint32_t i, text_sql mode, bool collate,
                            std::span<const std::string> names,
                            std::vector<std::string>& params) const;

    std::vector<node> nodes_;
    std::vector<std::uint32_t> children_;
    std::vector<value> constants_;
    std::deque<std::string> strings_;            // text of constants (stable addresses)
    std::deque<std::vector<value>> lists_;       // IN lists
    std::deque<std::vector<std::string>> paths_; // payload paths
    std::deque<like_pattern> patterns_;          // compiled LIKE patterns
    std::uint32_t root_ = 0;
};

struct predicate::node {
    enum class op : std::uint8_t {
        constant,   // a: constants_ index
        column,     // a: column position, b: its input_type (how SQL writes it)
        old_column, // a: column position
        payload,    // a: paths_ index
        and_,       // a: first in children_, b: count
        or_,        // a: first in children_, b: count
        not_,       // a: child
        compare,    // a, b: children; cmp
        in_list,    // a: child, b: lists_ index; negated
        is_null,    // a: child; negated
        like,       // a: subject, b: pattern (a constant), c: patterns_ index; negated
        between,    // a, b, c; negated
    };
    op kind = op::constant;
    compare_op cmp = compare_op::eq;
    bool negated = false;
    std::uint32_t a = 0, b = 0, c = 0;
};

} // namespace pgpush::rules
