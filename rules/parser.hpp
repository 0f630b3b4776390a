#pragma once

// Parsers for the two spellings of the predicate language, and for subscription queries.
//
// rules.yaml expressions:  row.room_id in auth.rooms and not row.deleted
//                          row.sender_id == auth.sub or 'admin' in auth.roles
// subscription queries:    SELECT id, body FROM messages WHERE room_id = 7 AND sent_at > $1
//
// Both accept: = == != <> < <= > >=, and/or/not, [NOT] IN (list or array claim), IS [NOT] NULL,
// [NOT] LIKE, [NOT] BETWEEN .. AND .., literals (numbers, 'strings', true/false/null, lists),
// parentheses. Keywords are case-insensitive. Everything else is rejected with a message that
// names what is not supported. Pure: no I/O.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "rules/ast.hpp"

namespace pgpush::rules {

enum class dialect : std::uint8_t {
    rules,  // namespaced refs (row.x, auth.x, ...), "double" or 'single' quoted strings, [lists]
    sql,    // bare (or "quoted") column names, 'strings', (lists), $N parameters
    lookup, // rules.yaml lookups: SQL as above without $N, plus namespaced names (auth.x, with
            // nested paths as in rules; row.x, old.x, payload.x and lookup.x are parsed so that
            // the loader can refuse them by name)
};

// Parses a whole expression; throws parse_error.
expr_ptr parse_expression(std::string_view text, dialect d);

struct select_query {
    std::string schema; // empty when not written
    std::string table;
    source_offset table_offset = 0;
    bool star = false;
    source_offset star_offset = 0;
    std::vector<std::string> columns; // in the order written; empty with *
    std::vector<source_offset> column_offsets;
    expr_ptr where; // null when there is no WHERE
    int max_param = 0;
};

// Parses `SELECT <*|col, ...> FROM [schema.]table [WHERE <predicate>]`; throws parse_error
// naming what is unsupported (joins, functions, subqueries, ORDER BY, LIMIT, ...).
select_query parse_select(std::string_view sql);

// Parses a rules.yaml lookup, `SELECT <column> FROM [schema.]table WHERE <predicate>`, in the
// lookup dialect; what makes a lookup usable (one column, one `column = auth.claim`) is the
// loader's to check. Throws parse_error.
select_query parse_lookup_query(std::string_view text);

} // namespace pgpush::rules
