#include "cdc/lsn.hpp"

#include <charconv>

#include <fmt/format.h>

namespace pgpush::cdc {

std::string to_string(lsn l) {
    return fmt::format("{:X}/{:X}", static_cast<std::uint32_t>(l.value >> 32),
                       static_cast<std::uint32_t>(l.value));
}

namespace {

std::optional<std::uint32_t> parse_half(std::string_view text) {
    if (text.empty() || text.size() > 8) return std::nullopt;
    std::uint32_t v = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v, 16);
    if (ec != std::errc{} || end != text.data() + text.size()) return std::nullopt;
    return v;
}

} // namespace

std::optional<lsn> parse_lsn(std::string_view text) {
    auto slash = text.find('/');
    if (slash == std::string_view::npos) return std::nullopt;
    auto hi = parse_half(text.substr(0, slash));
    auto lo = parse_half(text.substr(slash + 1));
    if (!hi || !lo) return std::nullopt;
    return lsn{(std::uint64_t{*hi} << 32) | *lo};
}

} // namespace pgpush::cdc
