#include "cdc/lsn.hpp"

#include <gtest/gtest.h>

namespace pgpush::cdc {
namespace {

TEST(lsn, prints_like_postgres) {
    EXPECT_EQ(to_string(lsn{0}), "0/0");
    EXPECT_EQ(to_string(lsn{0x16B374D848}), "16/B374D848");
    EXPECT_EQ(to_string(lsn{~0ull}), "FFFFFFFF/FFFFFFFF");
}

TEST(lsn, parses_what_it_prints) {
    for (std::uint64_t v : {0ull, 1ull, 0x16B374D848ull, ~0ull}) {
        auto p = parse_lsn(to_string(lsn{v}));
        ASSERT_TRUE(p);
        EXPECT_EQ(p->value, v);
    }
    EXPECT_EQ(parse_lsn("16/b374d848")->value, 0x16B374D848ull);
}

TEST(lsn, rejects_malformed_text) {
    for (const char* bad : {"", "/", "1/", "/1", "1/2/3", "x/1", "123456789/0", "1 /2", "-1/0"}) {
        EXPECT_FALSE(parse_lsn(bad)) << bad;
    }
}

} // namespace
} // namespace pgpush::cdc
