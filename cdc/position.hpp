#pragma once

#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "cdc/lsn.hpp"

namespace pgpush::cdc {

// Where a change sits in the commit order: its transaction's commit LSN and its index inside the
// transaction. Unique, totally ordered, and the same each time the transaction is re-read.
// Written as 16 + 8 fixed-width hex digits, "00000000016B3748-00000003", so that text order is
// position order.
struct position {
    lsn commit_lsn;
    std::uint32_t index = 0;

    constexpr auto operator<=>(const position&) const = default;
};

std::string to_string(position p);
// Appends the same 25 characters to `out` without allocating.
void append_position(std::string& out, position p);
std::optional<position> parse_position(std::string_view text);

} // namespace pgpush::cdc
