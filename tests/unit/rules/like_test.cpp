#include "rules/like.hpp"

#include <string>

#include <gtest/gtest.h>

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

} // namespace
} // namespace pgpush::rules
