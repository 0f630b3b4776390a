#include "rules/like.hpp"

#include <random>
#include <string>

#include <gtest/gtest.h>

#include "tests/support/like_oracle.hpp"

namespace pgpush::rules {
namespace {

struct like_case {
    std::string text;
    std::string pattern;
    bool expected;
};

void run(const like_case* begin, const like_case* end) {
    for (const like_case* c = begin; c != end; ++c) {
        EXPECT_EQ(like_match(c->text, c->pattern), c->expected)
            << "'" << c->text << "' LIKE '" << c->pattern << "'";
    }
}

TEST(like_match, plain_characters_percent_and_underscore) {
    const like_case cases[] = {
        {"", "", true},
        {"", "%", true},
        {"", "%%", true},
        {"", "_", false},
        {"", "a", false},
        {"a", "", false},
        {"abc", "abc", true},
        {"abc", "ab", false},
        {"ab", "abc", false},
        {"abc", "a%", true},
        {"abc", "%c", true},
        {"abc", "%b%", true},
        {"abc", "%abc%", true},
        {"abc", "%x%", false},
        {"abc", "a_c", true},
        {"abc", "a__", true},
        {"abc", "a___", false},
        {"abc", "___", true},
        {"abc", "__", false},
        {"abc", "%%%", true},
        {"abc", "a%%c", true},
        {"abc", "%_%", true},
        {"abc", "_%_%_", true},
        {"ab", "_%_%_", false},
        {"a", "%_", true},
        {"a", "_%", true},
        {"%", "a", false},
        {"_", "_", true},
        {"%", "%", true},
        {"a b", "a_b", true},
        {"line1\nline2", "line1%", true},
        {"line1\nline2", "line1_line2", true},
    };
    run(std::begin(cases), std::end(cases));
}

TEST(like_match, is_case_sensitive) {
    const like_case cases[] = {
        {"ABC", "abc", false},
        {"abc", "A%", false},
        {"Abc", "A%", true},
        {"abc", "%C", false},
    };
    run(std::begin(cases), std::end(cases));
}

TEST(like_match, underscore_is_one_utf8_character_not_one_byte) {
    const like_case cases[] = {
        {"\xC3\xA9", "_", true},                               // é: 2 bytes
        {"\xC3\xA9", "__", false},                             //
        {"\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E", "___", true}, // 日本語: 3 x 3 bytes
        {"\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E", "__", false},
        {"\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E", "____", false},
        {"\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E", "\xE6\x97\xA5%", true},
        {"\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E", "%\xE8\xAA\x9E", true},
        {"\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E", "_\xE6\x9C\xAC_", true},
        {"a\xF0\x9F\x98\x80"
         "b",
         "a_b", true}, // 😀: 4 bytes
        {"\xF0\x9F\x98\x80", "_", true},
        {"\xF0\x9F\x98\x80", "____", false},
        {"\xC3\xA9", "e", false},
        {"na\xC3\xAFve", "na_ve", true},
        {"na\xC3\xAFve", "na__ve", false},
        {"\xC3\xA9t\xC3\xA9", "%_t_", true},
        {"\xC3\xA9t\xC3\xA9", "_t", false},
    };
    run(std::begin(cases), std::end(cases));
}

TEST(like_match, backslash_makes_the_next_character_literal) {
    const like_case cases[] = {
        {"a%b", "a\\%b", true},
        {"axb", "a\\%b", false},
        {"ab", "a\\%b", false},
        {"a_b", "a\\_b", true},
        {"axb", "a\\_b", false},
        {"a\\b", "a\\\\b", true},
        {"ab", "a\\\\b", false},
        {"ab", "a\\b", true}, // an escaped ordinary character is itself
        {"100%", "%\\%", true},
        {"100", "%\\%", false},
        {"50% off", "%\\%%", true},
        {"50 off", "%\\%%", false},
        {"\xC3\xA9", "\\\xC3\xA9", true},
        {"x\\", "%\\\\", true},
        {"%", "\\%", true},
        {"_", "\\_", true},
        {"a", "\\_", false},
    };
    run(std::begin(cases), std::end(cases));
}

TEST(like_match, pattern_ending_in_a_lone_backslash_matches_nothing) {
    const like_case cases[] =
        {
            {"a\\", "a\\", false},  {"a", "a\\", false}, {"abc\\", "%\\", false},
            {"abc", "%\\", false},  {"", "\\", false},   {"\\", "\\", false},
            {"a\\", "a\\\\", true}, // an escaped backslash at the end is fine
        };
    run(std::begin(cases), std::end(cases));
}

TEST(like_match, percent_backtracks_to_find_a_later_match) {
    const like_case cases[] = {
        {"aaab", "%ab", true},
        {"abab", "%ab", true},
        {"ababc", "%abc", true},
        {"abcabd", "%abd", true},
        {"abcabc", "%abd", false},
        {"mississippi", "%iss%ipp%", true},
        {"mississippi", "m%ss%ss%ss%", false},
        {"mississippi", "m%ss%ss%", true},
        {"mississippi", "%s_s%", true},
        {"mississippi", "%pi", true},
        {"mississippi", "%pip", false},
        {"abcde", "%b_d%", true},
        {"abxd", "%b_d", true},
        {"abxxd", "%b_d", false},
        {"xaybxaybz", "%a_b%z", true},
        {"xaybxaybx", "%a_b%z", false},
        {"\xE6\x97\xA5\xE6\x97\xA5\xE6\x9C\xAC", "%\xE6\x97\xA5\xE6\x9C\xAC", true},
        {"aXbXc", "a%b%c", true},
        {"aXbXc", "a%c%b", false},
        {std::string(64, 'a') + "b", "%a%a%a%a%a%a%a%a%c", false}, // many dead ends
        {std::string(64, 'a') + "b", "%a%a%a%a%a%a%a%a%b", true},
    };
    run(std::begin(cases), std::end(cases));
}

TEST(like_match, malformed_utf8_advances_byte_by_byte_without_reading_past_the_end) {
    const like_case cases[] = {
        {"\xFF\xFE", "__", true}, {"\xFF\xFE", "_", false},
        {"\xFF", "%", true},      {"a\xC3", "a%", true}, // truncated sequence at the end
        {"a\xC3", "a", false},
    };
    run(std::begin(cases), std::end(cases));
}

TEST(like_match, percent_segments_are_found_left_to_right_without_backtracking) {
    const like_case cases[] = {
        {"abcabd", "%ab_%", true},
        {"xab", "%ab_", false},
        {"xabc", "%ab_", true},
        {"ab", "a%b", true},
        {"ab", "ab%b", false},   // the last segment cannot overlap the first
        {"aba", "ab%ba", false}, //
        {"abba", "ab%ba", true}, //
        {"aaa", "a%a%a", true},  //
        {"aa", "a%a%a", false},  // nor the middle ones
        {"a_b_c", "%\\_b\\_%", true},
        {"aXb_c", "%\\_b%", false},
        {"\\_", "%\\\\_", true},
        {"abc", "%%%b%%%", true},
        {"abc", "%_b_%", true},
        {"abc", "%__b%", false},
        {"\xE6\x97\xA5"
         "a\xE6\x97\xA5",
         "%_a_", true},
        {"\xE6\x97\xA5"
         "a\xE6\x97\xA5",
         "%_a__", false},
        {std::string(200, 'a') + "b", "%" + std::string(70, 'a') + "_" + std::string(70, 'a') + "b",
         true},
        {std::string(200, 'a'), "%" + std::string(70, 'a') + "_" + std::string(70, 'a') + "b%",
         false},
        {std::string(100, 'a') + "b" + std::string(100, 'a'),
         "%" + std::string(65, '_') + "b" + std::string(65, '_') + "%", true},
        {std::string(100, 'a') + "b" + std::string(50, 'a'),
         "%" + std::string(40, '_') + "b" + std::string(65, '_') + "%", false},
    };
    run(std::begin(cases), std::end(cases));
}

TEST(like_match, multibyte_bytes_inside_a_character_do_not_match) {
    // '\xA5' is the last byte of 日 (E6 97 A5): as a pattern character it is a malformed one-byte
    // character and must not match inside 日.
    const like_case cases[] = {
        {"\xE6\x97\xA5", "%\xA5", false},
        {"\xE6\x97\xA5", "%\xA5%", false},
        {"\xE6\x97\xA5\xA5", "%\xA5", true},
        {"\xE6\x97\xA5x", "%\x97\xA5%", false},
        {"\xE0"
         "ab\xE0"
         "ab",
         "%ab%", false}, // "\xE0" "ab" is one (malformed) character
        {"\xE0"
         "ab\xE0"
         "abab",
         "%ab%", true},
        {"\xE0"
         "ab\xE0"
         "ab",
         "%\xE0"
         "ab%",
         true},
        {"\xE0"
         "ab\xE0"
         "ab",
         "%_\xE0%", false},
    };
    run(std::begin(cases), std::end(cases));
}

TEST(like_pattern, errors_postgres_would_raise_and_the_length_cap) {
    EXPECT_EQ(check_like_pattern("a%b_c\\%"), like_pattern_error::none);
    EXPECT_EQ(check_like_pattern("abc\\"), like_pattern_error::trailing_escape);
    EXPECT_EQ(check_like_pattern("\\"), like_pattern_error::trailing_escape);
    EXPECT_EQ(check_like_pattern("a\\\\"), like_pattern_error::none);
    EXPECT_EQ(check_like_pattern("a\xE6\x97"), like_pattern_error::malformed);
    EXPECT_EQ(check_like_pattern(std::string(like_max_pattern_chars, 'a')),
              like_pattern_error::none);
    EXPECT_EQ(check_like_pattern(std::string(like_max_pattern_chars + 1, 'a')),
              like_pattern_error::too_long);
    // Characters, not bytes: 1,000 three-byte characters are within the cap.
    std::string wide;
    for (std::size_t i = 0; i < like_max_pattern_chars; ++i)
        wide += "\xE6\x97\xA5";
    EXPECT_EQ(check_like_pattern(wide), like_pattern_error::none);
    EXPECT_EQ(check_like_pattern(wide + "%"), like_pattern_error::too_long);
    // An escape counts as a character, as in char_length().
    EXPECT_EQ(check_like_pattern(std::string(like_max_pattern_chars / 2, '\\') +
                                 std::string(like_max_pattern_chars / 2, '\\')),
              like_pattern_error::none);
    EXPECT_EQ(check_like_pattern(std::string(like_max_pattern_chars, '\\') + "\\a"),
              like_pattern_error::too_long);

    EXPECT_FALSE(like_pattern("%\\").match("a\\"));
    EXPECT_FALSE(like_pattern(std::string(like_max_pattern_chars + 1, '%')).match(""));
    EXPECT_FALSE(like_pattern().match(""));
    EXPECT_TRUE(like_pattern(std::string(like_max_pattern_chars, '%')).match("anything"));
}

// Patterns built against a backtracking matcher, at the cap, on a 30,000-character text. The
// answers are checked here; the time is bench/match_bench's (like_*) to report.
TEST(like_match, adversarial_patterns_at_the_cap) {
    const std::string as(30'000, 'a');
    const std::size_t n = like_max_pattern_chars;
    std::string under = "%";
    while (under.size() + 4 <= n)
        under += "a_";
    EXPECT_TRUE(like_match(as, "%" + std::string(n - 1, 'a')));
    EXPECT_FALSE(like_match(as, "%" + std::string(n - 2, 'a') + "b"));
    EXPECT_FALSE(like_match(as, "%" + std::string(n - 3, 'a') + "b%"));
    EXPECT_FALSE(like_match(as, under + "b%"));
    EXPECT_TRUE(like_match(as, under + "a%"));
    std::string many = "";
    while (many.size() + 3 <= n)
        many += "%a_";
    EXPECT_TRUE(like_match(as, many + "%"));
    EXPECT_FALSE(like_match(as, many + "%b"));
    EXPECT_FALSE(like_match(as + "c", std::string(n / 2, '%') + "b" + std::string(n / 2 - 1, '%')));
    std::string gaps = "%";
    while (gaps.size() + 2 < n)
        gaps += "_";
    EXPECT_TRUE(like_match(as, gaps + "a"));
    EXPECT_FALSE(like_match(as, gaps + "b"));
}

TEST(like_match, agrees_with_the_backtracking_matcher_on_random_patterns_and_texts) {
    const unsigned seed = std::random_device{}();
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937 rng(seed);
    auto pick = [&](std::size_t n) {
        return std::uniform_int_distribution<std::size_t>(0, n - 1)(rng);
    };
    // Few letters, so that matches are common; multibyte characters, and bytes that make
    // malformed UTF-8 (a lone continuation byte, a cut sequence, a lead followed by ASCII).
    static const char* text_parts[] = {"a",
                                       "a",
                                       "b",
                                       "a",
                                       "b",
                                       "c",
                                       "%",
                                       "_",
                                       "\\",
                                       "\xC3\xA9",
                                       "\xE6\x97\xA5",
                                       "\xF0\x9F\x98\x80",
                                       "\xA9",
                                       "\xE6",
                                       "\xC3"};
    static const char* pattern_parts[] = {
        "a",    "b",    "a",    "%",   "%", "_",        "_",
        "\\%",  "\\_",  "\\\\", "\\a", "c", "\xC3\xA9", "\xE6\x97\xA5",
        "\xA9", "\xE6", "ab",   "ba",  "\\"};
    const int rounds = 200'000;
    int mismatches = 0;
    for (int r = 0; r < rounds && mismatches < 10; ++r) {
        std::string t, p;
        for (std::size_t k = pick(12); k > 0; --k)
            t += text_parts[pick(std::size(text_parts))];
        for (std::size_t k = pick(8); k > 0; --k)
            p += pattern_parts[pick(std::size(pattern_parts))];
        const bool expected = pgpush::testing::oracle_like(t, p);
        if (like_match(t, p) != expected) {
            ADD_FAILURE() << "'" << t << "' LIKE '" << p << "': expected " << expected;
            ++mismatches;
        }
    }
}

// Long segments (several 64-bit words of shift-and state) on longer texts of two letters, where
// near-matches abound.
TEST(like_match, agrees_with_the_backtracking_matcher_on_long_segments) {
    const unsigned seed = std::random_device{}();
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937 rng(seed);
    auto pick = [&](std::size_t n) {
        return std::uniform_int_distribution<std::size_t>(0, n - 1)(rng);
    };
    int mismatches = 0, matched = 0;
    for (int r = 0; r < 2'000 && mismatches < 10; ++r) {
        // A text of runs of 'a' with a few 'b' and an 'é', and a pattern cut from it, so that
        // it matches often, with some characters turned into '_' or changed.
        std::string t;
        for (std::size_t k = 100 + pick(700); k > 0; --k) {
            const std::size_t c = pick(40);
            t += c == 0 ? "b" : c == 1 ? "\xC3\xA9" : "a";
        }
        const std::size_t from = pick(t.size() / 2),
                          len = 1 + pick(std::min<std::size_t>(300, t.size() - from));
        std::string p = pick(4) ? "%" : "";
        for (std::size_t i = from; i < from + len && i < t.size(); ++i) {
            const std::size_t c = pick(400);
            if (static_cast<unsigned char>(t[i]) >= 0x80) {
                p += c < 80 ? std::string("_") : std::string(t, i, 2);
                ++i;
            } else {
                p += c < 80 ? '_' : c == 80 ? 'b' : c == 81 ? '%' : t[i];
            }
        }
        if (pick(4)) p += "%";
        const bool expected = pgpush::testing::oracle_like(t, p);
        matched += expected;
        if (like_match(t, p) != expected) {
            ADD_FAILURE() << "'" << t << "' LIKE '" << p << "': expected " << expected;
            ++mismatches;
        }
    }
    EXPECT_GT(matched, 400) << "too few matches to test anything";
}

} // namespace
} // namespace pgpush::rules
