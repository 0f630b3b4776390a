#pragma once

// SQL LIKE, as Postgres does it in a UTF-8 database, in time linear in the text.
//
// A pattern is split at its unescaped '%' into segments; each segment matches a fixed number of
// characters ('_' is any one, the rest are themselves). The first segment is anchored at the
// start, the last at the end, and the ones between are found left to right, each at its leftmost
// place after the previous one: with fixed-length segments the leftmost place is never worse, so
// no backtracking is needed. A segment of plain characters is found with memmem (linear, glibc's
// two-way search); one with '_' by a bit-parallel shift-and over characters, ceil(m/64) words a
// character. A match costs O(text * ceil(longest segment / 64)), whatever the pattern.
//
// Characters are UTF-8 sequences as the lead byte announces them (a byte that is no lead byte is
// one character; a sequence cut by the end of the text is one character), so malformed text costs
// no more and never reads past its end. Patterns from clients (literals, $N, claims) are valid
// UTF-8 and Postgres' text is, so this only decides what malformed input means.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace pgpush::rules {

// The longest pattern, in characters, the engine matches. Longer ones are refused where they are
// written (bad_query for a query literal or $N, a check error in rules.yaml) and a longer claim
// used as a pattern is NULL. It bounds a compiled pattern's size and a match's cost.
inline constexpr std::size_t like_max_pattern_chars = 1000;

enum class like_pattern_error : std::uint8_t {
    none,
    trailing_escape, // ends in a lone '\': Postgres raises "LIKE pattern must not end with escape
                     // character"
    too_long,        // over like_max_pattern_chars characters
    malformed,       // a UTF-8 sequence cut short by the end of the pattern (never from JSON)
};

// Why Postgres (or the engine's cap) would refuse `pattern`; none when it is usable.
like_pattern_error check_like_pattern(std::string_view pattern) noexcept;

// A compiled pattern. Matching is noexcept and allocation-free; a pattern with an error matches
// nothing.
class like_pattern {
public:
    like_pattern() = default; // matches nothing
    explicit like_pattern(std::string_view pattern);

    like_pattern_error error() const { return error_; }
    bool match(std::string_view text) const noexcept;

private:
    struct token {
        std::uint32_t at = 0; // byte offset in bytes_
        std::uint8_t len = 0; // bytes; 0 for '_'
    };
    struct segment {
        std::uint32_t first = 0, count = 0; // tokens_
        std::uint32_t bytes = 0;            // literal bytes (no '_')
        bool wild = false;                  // has '_'
        // wild: shift-and masks of `words` words (a power of two) each; masks_[mask_at +
        // k * words] is character k's (k = 0: any character the segment does not name, so the
        // '_' positions only); ascii_ and others_ map characters to k.
        std::uint32_t words = 0, mask_at = 0, ascii_at = 0, others_at = 0, others_count = 0;
        // plain, searched in the middle: KMP failure links (for malformed text, see match).
        std::uint32_t fail_at = 0;
    };

    bool equal_at(const segment& s, std::string_view text, std::size_t at,
                  std::size_t& end) const noexcept;
    std::size_t find_plain(const segment& s, std::string_view text, std::size_t from,
                           std::size_t& end) const noexcept;
    std::size_t find_wild(const segment& s, std::string_view text, std::size_t from,
                          std::size_t& end) const noexcept;
    template <std::size_t Words>
    std::size_t find_wild_n(const segment& s, std::string_view text, std::size_t from,
                            std::size_t& end) const noexcept;

    like_pattern_error error_ = like_pattern_error::too_long;
    std::string bytes_;                 // literal characters, unescaped, in order
    std::vector<token> tokens_;         // every segment's characters
    std::vector<segment> segments_;     // at least one; first anchored at the start, last at
                                        // the end (the same one when there is no '%')
    std::vector<std::uint64_t> masks_;  // wild segments' masks
    std::vector<std::uint16_t> ascii_;  // wild segments' ASCII character -> k, 128 each
    std::vector<std::uint64_t> others_; // (key << 16 | k) of non-ASCII characters, sorted
    std::vector<std::uint32_t> fail_;   // KMP links of plain middle segments
};

// `text` LIKE `pattern`: '%' matches any run of characters, '_' exactly one character (not byte),
// '\' makes the next pattern character literal. Case-sensitive. A pattern with an error (see
// check_like_pattern) matches nothing.
bool like_match(std::string_view text, std::string_view pattern);

} // namespace pgpush::rules
