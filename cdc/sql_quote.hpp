#pragma once

// Quoting names and strings for SQL text, as Postgres reads them. Header-only and pure, so both
// the I/O side (cdc/, push/) and the pure rules/ (snapshot SQL) use the same one.

#include <string>
#include <string_view>

namespace pgpush::cdc::sql {

// "a""b": an identifier, also as START_REPLICATION's publication_names want it.
inline std::string quote_identifier(std::string_view id) {
    std::string out = "\"";
    for (char c : id) {
        if (c == '"') out += '"';
        out += c;
    }
    out += '"';
    return out;
}

// 'it''s': a string literal (standard_conforming_strings, Postgres' default since 9.1).
inline std::string quote_literal(std::string_view s) {
    std::string out = "'";
    for (char c : s) {
        if (c == '\'') out += '\'';
        out += c;
    }
    out += '\'';
    return out;
}

} // namespace pgpush::cdc::sql
