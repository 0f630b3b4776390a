#pragma once

#include <string_view>

namespace pgpush::rules {

// SQL LIKE, as Postgres does it in a UTF-8 database: '%' matches any run of characters, '_'
// exactly one character (not byte), '\' makes the next pattern character literal. Case-sensitive.
// A pattern ending in a lone '\' matches nothing (Postgres raises an error there).
bool like_match(std::string_view text, std::string_view pattern) noexcept;

} // namespace pgpush::rules
