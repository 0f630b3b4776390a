#include "rules/like.hpp"

#include <algorithm>
#include <cstring>

namespace pgpush::rules {

namespace {

// Bytes in the UTF-8 character starting with byte c (1 for anything that is no lead byte).
std::size_t char_len(unsigned char c) {
    if (c < 0x80) return 1;
    if ((c & 0xE0) == 0xC0) return 2;
    if ((c & 0xF0) == 0xE0) return 3;
    if ((c & 0xF8) == 0xF0) return 4;
    return 1;
}

// The character of `t` at byte `i` (a character boundary before the end): its length, cut at the
// end of the text.
std::size_t unit_len(std::string_view t, std::size_t i) {
    return std::min(char_len(static_cast<unsigned char>(t[i])), t.size() - i);
}

// Eight bytes at once: all ASCII, so eight one-byte characters.
bool ascii8(const char* p) {
    std::uint64_t w;
    std::memcpy(&w, p, 8);
    return (w & 0x8080808080808080u) == 0;
}

// From character boundary `at`, the first character boundary at or past `limit`.
std::size_t advance_to(std::string_view t, std::size_t at, std::size_t limit) {
    while (at < limit) {
        if (limit - at >= 8 && ascii8(t.data() + at)) {
            at += 8;
        } else {
            at += unit_len(t, at);
        }
    }
    return at;
}

// The characters from boundary `at` to the end.
std::size_t count_chars(std::string_view t, std::size_t at) {
    std::size_t n = 0;
    while (at < t.size()) {
        if (t.size() - at >= 8 && ascii8(t.data() + at)) {
            at += 8;
            n += 8;
        } else {
            at += unit_len(t, at);
            ++n;
        }
    }
    return n;
}

// From boundary `at`, `chars` characters on.
std::size_t skip_chars(std::string_view t, std::size_t at, std::size_t chars) {
    while (chars > 0) {
        if (chars >= 8 && t.size() - at >= 8 && ascii8(t.data() + at)) {
            at += 8;
            chars -= 8;
        } else {
            at += unit_len(t, at);
            --chars;
        }
    }
    return at;
}

// A character (1-4 bytes) as one number: its bytes and its length, so that a character cut by the
// end of the text never equals a whole one.
std::uint64_t unit_key(const char* p, std::size_t len) {
    std::uint64_t k = len;
    for (std::size_t i = 0; i < len; ++i)
        k = (k << 8) | static_cast<unsigned char>(p[i]);
    return k;
}

constexpr std::size_t max_words = 16; // a power of two >= like_max_pattern_chars / 64
static_assert(max_words * 64 >= like_max_pattern_chars);

// One character of a pattern: '%', '_', or a literal (its bytes, after a '\' when escaped).
struct pattern_char {
    enum kind_t : std::uint8_t { percent, any, literal, end, trailing_escape, malformed } kind;
    std::size_t at = 0, len = 0; // literal bytes in the pattern
    std::size_t next = 0;        // where the next pattern character starts
};

pattern_char next_char(std::string_view p, std::size_t i) {
    if (i >= p.size()) return {pattern_char::end};
    if (p[i] == '%') return {pattern_char::percent, i, 0, i + 1};
    if (p[i] == '_') return {pattern_char::any, i, 0, i + 1};
    std::size_t lit = i;
    if (p[i] == '\\') {
        if (i + 1 >= p.size()) return {pattern_char::trailing_escape};
        lit = i + 1;
    }
    const std::size_t n = char_len(static_cast<unsigned char>(p[lit]));
    if (lit + n > p.size()) return {pattern_char::malformed};
    return {pattern_char::literal, lit, n, lit + n};
}

} // namespace

like_pattern_error check_like_pattern(std::string_view p) noexcept {
    std::size_t chars = 0;
    for (std::size_t i = 0;;) {
        const pattern_char c = next_char(p, i);
        if (c.kind == pattern_char::end) break;
        if (c.kind == pattern_char::trailing_escape) return like_pattern_error::trailing_escape;
        if (c.kind == pattern_char::malformed) return like_pattern_error::malformed;
        chars += p[i] == '\\' ? 2 : 1; // Postgres counts the escape as a character
        i = c.next;
    }
    return chars > like_max_pattern_chars ? like_pattern_error::too_long : like_pattern_error::none;
}

like_pattern::like_pattern(std::string_view p) : error_(check_like_pattern(p)) {
    if (error_ != like_pattern_error::none) return;
    segments_.emplace_back();
    for (std::size_t i = 0;;) {
        const pattern_char c = next_char(p, i);
        if (c.kind == pattern_char::end) break;
        i = c.next;
        if (c.kind == pattern_char::percent) {
            // '%%' is '%': an empty segment between two is no segment.
            if (segments_.size() == 1 || segments_.back().count > 0) {
                segments_.emplace_back();
                segments_.back().first = static_cast<std::uint32_t>(tokens_.size());
            }
            continue;
        }
        segment& s = segments_.back();
        token t;
        if (c.kind == pattern_char::literal) {
            t.at = static_cast<std::uint32_t>(bytes_.size());
            t.len = static_cast<std::uint8_t>(c.len);
            bytes_.append(p.substr(c.at, c.len));
            s.bytes += t.len;
        } else {
            s.wild = true;
        }
        tokens_.push_back(t);
        ++s.count;
    }

    for (std::size_t si = 0; si < segments_.size(); ++si) {
        segment& s = segments_[si];
        const bool middle = si > 0 && si + 1 < segments_.size();
        if (!middle || s.count == 0) continue; // anchored segments are compared in place
        if (!s.wild) {
            // Knuth-Morris-Pratt links over the segment's characters.
            s.fail_at = static_cast<std::uint32_t>(fail_.size());
            fail_.resize(fail_.size() + s.count, 0);
            const token* tk = tokens_.data() + s.first;
            auto same = [&](std::uint32_t a, std::uint32_t b) {
                return tk[a].len == tk[b].len &&
                       bytes_.compare(tk[a].at, tk[a].len, bytes_, tk[b].at, tk[b].len) == 0;
            };
            std::uint32_t* f = fail_.data() + s.fail_at;
            for (std::uint32_t q = 1, k = 0; q < s.count; ++q) {
                while (k > 0 && !same(q, k))
                    k = f[k - 1];
                if (same(q, k)) ++k;
                f[q] = k;
            }
            continue;
        }
        // Shift-and: bit j of a character's mask is set when position j of the segment is '_'
        // or that character. Mask 0 is for characters the segment does not name.
        // A power of two, so that the step below runs a fixed number of words.
        s.words = 1;
        while (s.words * 64 < s.count)
            s.words *= 2;
        s.mask_at = static_cast<std::uint32_t>(masks_.size());
        s.ascii_at = static_cast<std::uint32_t>(ascii_.size());
        s.others_at = static_cast<std::uint32_t>(others_.size());
        ascii_.resize(ascii_.size() + 128, 0);
        masks_.resize(masks_.size() + s.words, 0);
        auto set_bit = [&](std::size_t mask, std::uint32_t j) {
            masks_[s.mask_at + mask * s.words + j / 64] |= std::uint64_t{1} << (j % 64);
        };
        for (std::uint32_t j = 0; j < s.count; ++j) {
            if (tokens_[s.first + j].len == 0) set_bit(0, j);
        }
        std::vector<std::pair<std::uint64_t, std::size_t>> seen; // non-ASCII character -> k
        std::size_t distinct = 1;
        for (std::uint32_t j = 0; j < s.count; ++j) {
            const token& t = tokens_[s.first + j];
            if (t.len == 0) continue;
            const auto byte = static_cast<unsigned char>(bytes_[t.at]);
            std::size_t k = 0;
            if (t.len == 1 && byte < 0x80) {
                k = ascii_[s.ascii_at + byte];
                if (k == 0) ascii_[s.ascii_at + byte] = static_cast<std::uint16_t>(k = distinct);
            } else {
                const std::uint64_t key = unit_key(bytes_.data() + t.at, t.len);
                auto it = std::find_if(seen.begin(), seen.end(),
                                       [&](const auto& e) { return e.first == key; });
                if (it != seen.end()) {
                    k = it->second;
                } else {
                    seen.emplace_back(key, k = distinct);
                    others_.push_back(key << 16 | k);
                }
            }
            if (k == distinct) {
                // A character met for the first time: its mask starts as the '_' positions.
                const std::size_t at = masks_.size();
                masks_.resize(at + s.words);
                std::copy_n(masks_.begin() + s.mask_at, s.words,
                            masks_.begin() + static_cast<long>(at));
                ++distinct;
            }
            set_bit(k, j);
        }
        s.others_count = static_cast<std::uint32_t>(others_.size() - s.others_at);
        std::sort(others_.begin() + s.others_at, others_.end());
    }
}

bool like_pattern::equal_at(const segment& s, std::string_view text, std::size_t at,
                            std::size_t& end) const noexcept {
    for (std::uint32_t j = 0; j < s.count; ++j) {
        const token& t = tokens_[s.first + j];
        if (t.len == 0) {
            if (at >= text.size()) return false;
            at += unit_len(text, at);
            continue;
        }
        // Equal bytes from a character boundary: the text's character has the same lead byte,
        // so the same length, and ends where the pattern's does.
        if (text.size() - at < t.len || std::memcmp(text.data() + at, bytes_.data() + t.at, t.len))
            return false;
        at += t.len;
    }
    end = at;
    return true;
}

std::size_t like_pattern::find_plain(const segment& s, std::string_view text, std::size_t from,
                                     std::size_t& end) const noexcept {
    if (text.size() - from < s.bytes) return std::string_view::npos; // (and no null to memmem)
    const char* needle = bytes_.data() + tokens_[s.first].at;
    const void* hit = ::memmem(text.data() + from, text.size() - from, needle, s.bytes);
    if (hit == nullptr) return std::string_view::npos;
    const auto pos = static_cast<std::size_t>(static_cast<const char*>(hit) - text.data());
    std::size_t at = advance_to(text, from, pos);
    if (at == pos) {
        end = pos + s.bytes;
        return pos;
    }
    // The bytes matched inside a character of malformed text: search again character by
    // character (KMP, linear) from the boundary past it.
    const token* tk = tokens_.data() + s.first;
    const std::uint32_t* f = fail_.data() + s.fail_at;
    std::uint32_t q = 0;
    while (at < text.size()) {
        const std::size_t len = unit_len(text, at);
        auto same = [&](std::uint32_t k) {
            return tk[k].len == len &&
                   std::memcmp(text.data() + at, bytes_.data() + tk[k].at, len) == 0;
        };
        while (q > 0 && !same(q))
            q = f[q - 1];
        if (same(q)) ++q;
        at += len;
        if (q == s.count) {
            end = at;
            return at; // any position but npos: callers use `end`
        }
    }
    return std::string_view::npos;
}

namespace {

// One shift-and step over `Words` words: d = ((d << 1) | 1) & mask, the carry running upwards
// from word to word. Two words a vector (SSE2, which every x86-64 has; elsewhere the compiler
// lowers it to scalar code): the hot loop of an adversarial '_' pattern.
using u64x2 = std::uint64_t __attribute__((vector_size(16)));

template <std::size_t Words>
void step(std::uint64_t* d, const std::uint64_t* mask) {
    if constexpr (Words == 1) {
        d[0] = ((d[0] << 1) | 1) & mask[0];
    } else {
        u64x2 carry_in = {0, 1}; // lane 1 feeds bit 0 of word 0 (see the shuffle)
        for (std::size_t w = 0; w < Words; w += 2) {
            u64x2 v, m;
            std::memcpy(&v, d + w, 16);
            std::memcpy(&m, mask + w, 16);
            const u64x2 out = v >> 63;
            // {carry from the previous pair's high word, carry from this pair's low word}
            const u64x2 in = __builtin_shufflevector(out, carry_in, 3, 0);
            v = ((v << 1) | in) & m;
            std::memcpy(d + w, &v, 16);
            carry_in = out;
        }
    }
}

} // namespace

template <std::size_t Words>
std::size_t like_pattern::find_wild_n(const segment& s, std::string_view text, std::size_t from,
                                      std::size_t& end) const noexcept {
    std::uint64_t d[Words] = {};
    const std::uint32_t top_word = (s.count - 1) / 64;
    const std::uint64_t top_bit = std::uint64_t{1} << ((s.count - 1) % 64);
    const std::uint64_t* others = others_.data() + s.others_at;
    const std::uint16_t* ascii = ascii_.data() + s.ascii_at;
    const std::uint64_t* masks = masks_.data() + s.mask_at;
    for (std::size_t at = from; at < text.size();) {
        const auto byte = static_cast<unsigned char>(text[at]);
        std::size_t k = 0, len = 1;
        if (byte < 0x80) {
            k = ascii[byte];
        } else {
            len = unit_len(text, at);
            if (s.others_count > 0) {
                const std::uint64_t key = unit_key(text.data() + at, len) << 16;
                const std::uint64_t* it = std::lower_bound(others, others + s.others_count, key);
                if (it != others + s.others_count && (*it & ~std::uint64_t{0xFFFF}) == key)
                    k = *it & 0xFFFF;
            }
        }
        step<Words>(d, masks + k * Words);
        at += len;
        if (d[top_word] & top_bit) {
            end = at;
            return at;
        }
    }
    return std::string_view::npos;
}

std::size_t like_pattern::find_wild(const segment& s, std::string_view text, std::size_t from,
                                    std::size_t& end) const noexcept {
    switch (s.words) {
    case 1:
        return find_wild_n<1>(s, text, from, end);
    case 2:
        return find_wild_n<2>(s, text, from, end);
    case 4:
        return find_wild_n<4>(s, text, from, end);
    case 8:
        return find_wild_n<8>(s, text, from, end);
    default:
        return find_wild_n<max_words>(s, text, from, end);
    }
}

bool like_pattern::match(std::string_view text) const noexcept {
    if (error_ != like_pattern_error::none) return false;
    const std::size_t n = text.size();
    std::size_t at = 0;
    if (!equal_at(segments_.front(), text, 0, at)) return false;
    if (segments_.size() == 1) return at == n;
    for (std::size_t i = 1; i + 1 < segments_.size(); ++i) {
        const segment& s = segments_[i];
        if (s.count == 0) continue;
        std::size_t end = 0;
        const std::size_t found =
            s.wild ? find_wild(s, text, at, end) : find_plain(s, text, at, end);
        if (found == std::string_view::npos) return false;
        at = end;
    }
    // The last segment takes the last characters of the text, after everything before it.
    const segment& last = segments_.back();
    if (last.count == 0) return true;
    std::size_t start = at;
    if (!last.wild) {
        if (n - at < last.bytes) return false;
        start = advance_to(text, at, n - last.bytes);
        if (start != n - last.bytes) return false; // not a character boundary
    } else {
        const std::size_t chars = count_chars(text, at);
        if (chars < last.count) return false;
        start = skip_chars(text, at, chars - last.count);
    }
    std::size_t end = 0;
    return equal_at(last, text, start, end) && end == n;
}

bool like_match(std::string_view text, std::string_view pattern) {
    return like_pattern(pattern).match(text);
}

} // namespace pgpush::rules
