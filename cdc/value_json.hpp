#pragma once

// A column value, as Postgres' text output function prints it, to JSON.
//
// The replication connection pins the output settings this relies on (DateStyle=ISO,
// TimeZone=UTC, IntervalStyle=iso_8601, extra_float_digits=3, bytea_output=hex). Whatever does
// not parse as expected is emitted as a JSON string of the text, so the output is always valid
// JSON and never silently wrong.

#include <string>
#include <string_view>

#include "cdc/type_catalog.hpp"

namespace pgpush::cdc {

void append_value_json(std::string& out, const type_catalog& types, const type_info& type,
                       std::string_view text);

inline void append_value_json(std::string& out, const type_catalog& types, oid type,
                              std::string_view text) {
    append_value_json(out, types, types.resolve(type), text);
}

// A binary-format value ('b' datum): bytes as bytea's hex text, "\x0a0b".
void append_binary_json(std::string& out, std::string_view bytes);

// True when the decimal text `numeric` parses to a double that prints back to the same value,
// so a JSON reader using doubles (JavaScript) reads it exactly.
bool numeric_round_trips(std::string_view numeric);

} // namespace pgpush::cdc
