#pragma once

// The LIKE matcher pgpush used before the linear one (backtracking to the last '%': O(text *
// pattern) at worst, so only for short inputs): the oracle the unit tests and the rules fuzzer
// hold rules::like_match to, malformed UTF-8 included.

#include <cstddef>
#include <string_view>

namespace pgpush::testing {

inline bool oracle_like(std::string_view t, std::string_view p) {
    auto char_len = [](unsigned char c) -> std::size_t {
        if (c < 0x80) return 1;
        if ((c & 0xE0) == 0xC0) return 2;
        if ((c & 0xF0) == 0xE0) return 3;
        if ((c & 0xF8) == 0xF0) return 4;
        return 1;
    };
    std::size_t ti = 0, pi = 0;
    std::size_t star_p = std::string_view::npos, star_t = 0;
    while (ti < t.size()) {
        if (pi < p.size()) {
            const char pc = p[pi];
            if (pc == '%') {
                star_p = ++pi;
                star_t = ti;
                continue;
            }
            if (pc == '_') {
                ti += char_len(static_cast<unsigned char>(t[ti]));
                ++pi;
                continue;
            }
            std::size_t lit = pi;
            if (pc == '\\') {
                if (pi + 1 >= p.size()) return false;
                lit = pi + 1;
            }
            const std::size_t n = char_len(static_cast<unsigned char>(p[lit]));
            if (t.compare(ti, n, p.substr(lit, n)) == 0 && lit + n <= p.size()) {
                ti += n;
                pi = lit + n;
                continue;
            }
        }
        if (star_p == std::string_view::npos) return false;
        star_t += char_len(static_cast<unsigned char>(t[star_t]));
        ti = star_t;
        pi = star_p;
    }
    while (pi < p.size() && p[pi] == '%')
        ++pi;
    return pi == p.size();
}

} // namespace pgpush::testing
