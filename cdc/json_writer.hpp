#pragma once

// Appending JSON to a std::string without building a DOM: the hot path of every change we print
// or push. The functions only append; the caller places commas and brackets.

#include <cstdint>
#include <string>
#include <string_view>

namespace pgpush::cdc::json {

// Appends `s` as a quoted JSON string. Control characters, quotes and backslashes are escaped;
// invalid UTF-8 sequences become U+FFFD so the output is always valid JSON.
void append_string(std::string& out, std::string_view s);

// Appends `"key":`.
inline void append_key(std::string& out, std::string_view key) {
    append_string(out, key);
    out.push_back(':');
}

void append_int(std::string& out, std::int64_t v);
void append_uint(std::string& out, std::uint64_t v);

// True when `s` is a JSON number exactly as RFC 8259 spells one ("-0.5e+3" yes, "+1", ".5",
// "01", "NaN" no).
bool is_number(std::string_view s);

// Appends the JSON document `text` with insignificant whitespace removed. Returns false, having
// appended nothing, if `text` is not valid JSON.
bool append_minified(std::string& out, std::string_view text);

} // namespace pgpush::cdc::json
