#include "rules/like.hpp"

namespace pgpush::rules {

namespace {

// Bytes in the UTF-8 character starting with byte c (1 for anything malformed, so the matcher
// still advances).
std::size_t char_len(unsigned char c) {
    if (c < 0x80) return 1;
    if ((c & 0xE0) == 0xC0) return 2;
    if ((c & 0xF0) == 0xE0) return 3;
    if ((c & 0xF8) == 0xF0) return 4;
    return 1;
}

} // namespace

bool like_match(std::string_view t, std::string_view p) noexcept {
    // Iterative wildcard matching with one backtrack point (the last '%'): linear in practice,
    // O(n*m) at worst, no recursion.
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
        // Let the last '%' swallow one more character and retry from there.
        star_t += char_len(static_cast<unsigned char>(t[star_t]));
        ti = star_t;
        pi = star_p;
    }
    while (pi < p.size() && p[pi] == '%')
        ++pi;
    return pi == p.size();
}

} // namespace pgpush::rules
