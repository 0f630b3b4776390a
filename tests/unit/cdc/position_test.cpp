#include "cdc/position.hpp"

#include <utility>

#include <gtest/gtest.h>

namespace pgpush::cdc {
namespace {

TEST(position, text_is_25_fixed_width_uppercase_hex_characters) {
    EXPECT_EQ(to_string(position{lsn{0x16B3748}, 3}), "00000000016B3748-00000003");
    EXPECT_EQ(to_string(position{}), "0000000000000000-00000000");
    EXPECT_EQ(to_string(position{lsn{~0ull}, 0xFFFFFFFF}), "FFFFFFFFFFFFFFFF-FFFFFFFF");
    for (auto p : {position{}, position{lsn{1}, 1}, position{lsn{0xABCDEF0123456789}, 0x10}}) {
        EXPECT_EQ(to_string(p).size(), 25u);
    }
}

TEST(position, append_position_appends_the_same_text) {
    std::string out = "at ";
    append_position(out, position{lsn{0x16B3748}, 3});
    EXPECT_EQ(out, "at 00000000016B3748-00000003");
}

TEST(position, text_order_is_position_order) {
    const std::pair<position, position> pairs[] = {
        {{lsn{1}, 0}, {lsn{2}, 0}},
        {{lsn{1}, 0}, {lsn{1}, 1}},
        {{lsn{1}, 0xFFFFFFFF}, {lsn{2}, 0}}, // a bigger index never beats a bigger LSN
        {{lsn{0xF}, 0}, {lsn{0x10}, 0}},     // hex digit rollover
        {{lsn{0x9}, 0}, {lsn{0xA}, 0}},      // '9' < 'A' in ASCII too
        {{lsn{0x9}, 0x9}, {lsn{0x9}, 0xA}},
        {{lsn{0xFFFFFFFF}, 5}, {lsn{0x100000000}, 0}},
        {{lsn{0x16B3748}, 3}, {lsn{0x16B3748}, 3}}, // equal
        {{lsn{0}, 0}, {lsn{~0ull}, 0xFFFFFFFF}},
        {{lsn{0x7FFFFFFFFFFFFFFF}, 0}, {lsn{0x8000000000000000}, 0}},
    };
    for (const auto& [a, b] : pairs) {
        const auto ta = to_string(a), tb = to_string(b);
        EXPECT_EQ(a < b, ta < tb) << ta << " vs " << tb;
        EXPECT_EQ(b < a, tb < ta) << ta << " vs " << tb;
        EXPECT_EQ(a == b, ta == tb) << ta << " vs " << tb;
    }
}

TEST(position, parses_what_it_prints) {
    for (auto p : {position{}, position{lsn{0x16B3748}, 3}, position{lsn{~0ull}, 0xFFFFFFFF},
                   position{lsn{0xABCDEF0123456789}, 0x89ABCDEF}}) {
        auto parsed = parse_position(to_string(p));
        ASSERT_TRUE(parsed) << to_string(p);
        EXPECT_EQ(*parsed, p);
    }
}

TEST(position, parses_lowercase_hex) {
    auto p = parse_position("00000000016b3748-0000000a");
    ASSERT_TRUE(p);
    EXPECT_EQ(*p, (position{lsn{0x16B3748}, 10}));
}

TEST(position, rejects_malformed_text) {
    const char* bad[] = {
        "",
        "00000000016B3748-0000000",   // 24 characters
        "00000000016B3748-000000003", // 26 characters
        "0000000016B3748-000000003",  // dash one place early
        "00000000016B3748_00000003",  // wrong separator
        "00000000016B3748000000003",  // no separator
        "00000000016G3748-00000003",  // not hex
        "00000000016B3748-0000000x",
        "+0000000016B3748-00000003", // sign
        "00000000016B3748-+0000003",
        "00000000016B3748--0000003",
        " 0000000016B3748-00000003", // space
        "00000000016B3748-0000000 ",
        "0x000000016B3748-00000003",
        "16/B3748-00000003",
    };
    for (const char* s : bad)
        EXPECT_FALSE(parse_position(s)) << '"' << s << '"';
}

} // namespace
} // namespace pgpush::cdc
