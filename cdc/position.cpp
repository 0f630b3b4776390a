#include "cdc/position.hpp"

#include <charconv>

namespace pgpush::cdc {

void append_position(std::string& out, position p) {
    static constexpr char hex[] = "0123456789ABCDEF";
    char buf[25];
    for (int i = 0; i < 16; ++i)
        buf[i] = hex[(p.commit_lsn.value >> (60 - 4 * i)) & 0xF];
    buf[16] = '-';
    for (int i = 0; i < 8; ++i)
        buf[17 + i] = hex[(p.index >> (28 - 4 * i)) & 0xF];
    out.append(buf, sizeof buf);
}

std::string to_string(position p) {
    std::string out;
    append_position(out, p);
    return out;
}

std::optional<position> parse_position(std::string_view text) {
    if (text.size() != 25 || text[16] != '-') return std::nullopt;
    auto hex = [](std::string_view s, auto& v) {
        for (char c : s) {
            bool ok = (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F') || (c >= 'a' && c <= 'f');
            if (!ok) return false;
        }
        auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v, 16);
        return ec == std::errc{} && end == s.data() + s.size();
    };
    position p;
    if (!hex(text.substr(0, 16), p.commit_lsn.value) || !hex(text.substr(17), p.index)) {
        return std::nullopt;
    }
    return p;
}

} // namespace pgpush::cdc
