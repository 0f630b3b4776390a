#pragma once

#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace pgpush::cdc {

// A WAL location (Postgres' XLogRecPtr). Written as Postgres writes it: two hex halves,
// "16/B374D848".
struct lsn {
    std::uint64_t value = 0;

    constexpr bool valid() const { return value != 0; }
    constexpr auto operator<=>(const lsn&) const = default;
};

std::string to_string(lsn l);

// Parses "X/Y" (each half 1-8 hex digits). Anything else gives nullopt.
std::optional<lsn> parse_lsn(std::string_view text);

} // namespace pgpush::cdc
