#pragma once

// The predicate language shared by rules.yaml expressions and subscription queries' WHERE
// clauses, as parsed: before claims are bound and columns resolved (see predicate.hpp).

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace pgpush::rules {

struct lookup_rule;

// Where in the source text something is (0-based byte offset), for error messages.
using source_offset = std::size_t;

// A syntax error at an offset of the text being parsed.
class parse_error : public std::runtime_error {
public:
    parse_error(source_offset at, const std::string& message)
        : std::runtime_error(message), offset(at) {}
    source_offset offset;
};

enum class ref_space : std::uint8_t {
    column,  // a bare column in SQL: `room_id`
    row,     // row.x: the row being matched
    old,     // old.x: the row before an update
    auth,    // auth.x: a JWT claim (nested paths allowed)
    payload, // payload.x: a NOTIFY payload's JSON field (nested paths allowed)
    lookup,  // lookup.x: a named lookup's result for the subscriber (rules.yaml lookups:)
};

std::string_view to_string(ref_space s);

enum class compare_op : std::uint8_t { eq, ne, lt, le, gt, ge };

std::string_view to_string(compare_op op);

// A literal as written. Numbers keep their text: "7" is an integer, "7.5" and "1e3" are exact
// decimals (as in Postgres, where both are numeric constants).
struct literal {
    enum class kind : std::uint8_t { null, boolean, integer, decimal, text } type = kind::null;
    bool boolean = false;
    std::int64_t integer = 0;
    std::string text; // decimal digits (canonical) or the string
};

struct expr {
    enum class kind : std::uint8_t {
        literal, // lit
        ref,     // space + path
        param,   // $N (SQL): param
        list,    // [a, b] / (a, b): args
        not_,    // args[0]
        and_,    // args (2 or more)
        or_,     // args (2 or more)
        compare, // args[0] op args[1]
        in,      // args[0] [NOT] IN args[1] (a list, or a ref to an array claim)
        is_null, // args[0] IS [NOT] NULL
        like,    // args[0] [NOT] LIKE args[1]
        between, // args[0] [NOT] BETWEEN args[1] AND args[2]
    };

    kind type = kind::literal;
    source_offset offset = 0;
    struct literal lit;
    ref_space space = ref_space::column;
    std::vector<std::string> path; // ref: column name, claim/payload path, or lookup name
    // lookup refs: the lookup named, set by the loader once every lookup is known (it lives in
    // the same rule_set as the expression); null in an expression parsed on its own.
    const lookup_rule* lookup = nullptr;
    int param = 0; // 1-based
    compare_op op = compare_op::eq;
    bool negated = false; // NOT IN, IS NOT NULL, NOT LIKE, NOT BETWEEN
    std::vector<std::unique_ptr<expr>> args;
};

using expr_ptr = std::unique_ptr<expr>;

// Renders an expression back as text (for messages and tests); SQL-like spelling.
std::string to_string(const expr& e);

// A deep copy.
expr_ptr clone(const expr& e);

} // namespace pgpush::rules
