#include "cdc/byte_reader.hpp"

#include <functional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace pgpush::cdc {
namespace {

std::vector<std::byte> bytes_of(std::initializer_list<int> values) {
    std::vector<std::byte> out;
    for (int v : values)
        out.push_back(static_cast<std::byte>(v));
    return out;
}

// Runs `read` and returns the protocol_error message it threw ("" if it threw nothing).
std::string error_of(const std::function<void()>& read) {
    try {
        read();
    } catch (const protocol_error& e) {
        return e.what();
    }
    return "";
}

TEST(byte_reader, reads_unsigned_integers_big_endian) {
    auto b = bytes_of(
        {0xAB, 0x01, 0x02, 0x01, 0x02, 0x03, 0x04, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08});
    byte_reader r(b);
    EXPECT_EQ(r.u8("a"), 0xABu);
    EXPECT_EQ(r.u16("b"), 0x0102u);
    EXPECT_EQ(r.u32("c"), 0x01020304u);
    EXPECT_EQ(r.u64("d"), 0x0102030405060708ull);
    EXPECT_TRUE(r.empty());
}

TEST(byte_reader, reads_all_ones_as_maximum_unsigned_and_minus_one_signed) {
    std::vector<std::byte> b(2 + 4 + 8 + 2 + 4 + 8, std::byte{0xFF});
    byte_reader r(b);
    EXPECT_EQ(r.u16("a"), 0xFFFFu);
    EXPECT_EQ(r.u32("b"), 0xFFFFFFFFu);
    EXPECT_EQ(r.u64("c"), ~0ull);
    EXPECT_EQ(r.i16("d"), -1);
    EXPECT_EQ(r.i32("e"), -1);
    EXPECT_EQ(r.i64("f"), -1);
}

TEST(byte_reader, reads_signed_integers_in_twos_complement) {
    auto b = bytes_of({0x80, 0x00, 0x80, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
                       0xFE, 0x7F, 0xFF});
    byte_reader r(b);
    EXPECT_EQ(r.i16("a"), -32768);
    EXPECT_EQ(r.i32("b"), std::int32_t{-2147483647 - 1});
    EXPECT_EQ(r.i64("c"), -2);
    EXPECT_EQ(r.i16("d"), 32767);
}

TEST(byte_reader, tracks_offset_and_remaining) {
    auto b = bytes_of({1, 2, 3, 4, 5, 6, 7});
    byte_reader r(b);
    EXPECT_EQ(r.offset(), 0u);
    EXPECT_EQ(r.remaining(), 7u);
    r.u16("x");
    EXPECT_EQ(r.offset(), 2u);
    EXPECT_EQ(r.remaining(), 5u);
    r.u32("y");
    EXPECT_EQ(r.offset(), 6u);
    EXPECT_EQ(r.remaining(), 1u);
    EXPECT_FALSE(r.empty());
    r.u8("z");
    EXPECT_TRUE(r.empty());
}

TEST(byte_reader, bytes_and_chars_borrow_from_the_input) {
    std::string text = "abcdef";
    byte_reader r(as_bytes(text));
    auto b = r.bytes(2, "b");
    ASSERT_EQ(b.size(), 2u);
    EXPECT_EQ(static_cast<const void*>(b.data()), static_cast<const void*>(text.data()));
    auto c = r.chars(3, "c");
    EXPECT_EQ(c, "cde");
    EXPECT_EQ(static_cast<const void*>(c.data()), static_cast<const void*>(text.data() + 2));
    EXPECT_EQ(r.chars(0, "empty"), "");
    EXPECT_EQ(r.remaining(), 1u);
}

TEST(byte_reader, cstring_stops_at_nul_and_consumes_it) {
    std::string text("public\0t\0\0x", 11);
    byte_reader r(as_bytes(text));
    EXPECT_EQ(r.cstring("a"), "public");
    EXPECT_EQ(r.offset(), 7u);
    EXPECT_EQ(r.cstring("b"), "t");
    EXPECT_EQ(r.cstring("c"), "");
    EXPECT_EQ(r.offset(), 10u);
    EXPECT_EQ(r.u8("d"), 'x');
    EXPECT_TRUE(r.empty());
}

TEST(byte_reader, cstring_without_nul_throws_and_names_the_field) {
    std::string text = "no terminator";
    byte_reader r(as_bytes(text));
    auto msg = error_of([&] { r.cstring("relation name"); });
    EXPECT_NE(msg.find("relation name"), std::string::npos) << msg;
    EXPECT_NE(msg.find("unterminated"), std::string::npos) << msg;
    EXPECT_EQ(r.offset(), 0u);
}

TEST(byte_reader, cstring_at_end_of_input_throws) {
    std::string text("a\0", 2);
    byte_reader r(as_bytes(text));
    r.cstring("first");
    EXPECT_THROW(r.cstring("second"), protocol_error);
}

// A default-constructed (empty) view has a null data pointer; cstring() must throw without
// handing that pointer to memchr (undefined behaviour, reported by UBSan in PGPUSH_SANITIZE
// builds).
TEST(byte_reader, cstring_on_an_empty_view_throws) {
    byte_reader r(std::span<const std::byte>{});
    EXPECT_THROW(r.cstring("name"), protocol_error);
}

TEST(byte_reader, expect_end_passes_only_when_everything_was_consumed) {
    auto b = bytes_of({1, 2});
    byte_reader r(b);
    r.u8("a");
    auto msg = error_of([&] { r.expect_end("message end"); });
    EXPECT_NE(msg.find("message end"), std::string::npos) << msg;
    EXPECT_NE(msg.find("1 unexpected trailing byte"), std::string::npos) << msg;
    r.u8("b");
    EXPECT_NO_THROW(r.expect_end("message end"));
}

TEST(byte_reader, expect_end_on_empty_input_passes) {
    byte_reader r(std::span<const std::byte>{});
    EXPECT_TRUE(r.empty());
    EXPECT_NO_THROW(r.expect_end("end"));
}

// Every read, from every starting point that leaves too few bytes, throws protocol_error naming
// its field, and leaves the cursor where it was: nothing is read out of bounds.
TEST(byte_reader, every_read_past_the_end_throws_naming_the_field) {
    struct read_case {
        const char* name;
        std::size_t width;
        std::function<void(byte_reader&, const char*)> read;
    };
    const read_case reads[] = {
        {"u8", 1, [](byte_reader& r, const char* f) { r.u8(f); }},
        {"u16", 2, [](byte_reader& r, const char* f) { r.u16(f); }},
        {"u32", 4, [](byte_reader& r, const char* f) { r.u32(f); }},
        {"u64", 8, [](byte_reader& r, const char* f) { r.u64(f); }},
        {"i16", 2, [](byte_reader& r, const char* f) { r.i16(f); }},
        {"i32", 4, [](byte_reader& r, const char* f) { r.i32(f); }},
        {"i64", 8, [](byte_reader& r, const char* f) { r.i64(f); }},
        {"bytes(5)", 5, [](byte_reader& r, const char* f) { r.bytes(5, f); }},
        {"chars(3)", 3, [](byte_reader& r, const char* f) { r.chars(3, f); }},
    };
    for (const auto& c : reads) {
        for (std::size_t available = 0; available < c.width; ++available) {
            std::vector<std::byte> b(available, std::byte{0x41});
            byte_reader r(b);
            auto msg = error_of([&] { c.read(r, "the field"); });
            EXPECT_NE(msg.find("the field"), std::string::npos)
                << c.name << " with " << available << " byte(s): '" << msg << "'";
            EXPECT_EQ(r.offset(), 0u) << c.name << " with " << available << " byte(s)";
        }
        // And exactly enough bytes is fine.
        std::vector<std::byte> b(c.width, std::byte{0x41});
        byte_reader r(b);
        EXPECT_NO_THROW(c.read(r, "the field")) << c.name;
        EXPECT_TRUE(r.empty()) << c.name;
    }
}

TEST(byte_reader, error_message_says_offset_and_shortfall) {
    auto b = bytes_of({1, 2, 3});
    byte_reader r(b);
    r.u16("head");
    auto msg = error_of([&] { r.u32("column type"); });
    EXPECT_EQ(msg, "column type at offset 2: needs 4 byte(s), 1 left");
}

TEST(byte_reader, huge_length_request_throws_instead_of_overflowing) {
    auto b = bytes_of({1, 2, 3});
    byte_reader r(b);
    r.u8("a");
    EXPECT_THROW(r.bytes(static_cast<std::size_t>(-1), "huge"), protocol_error);
    EXPECT_THROW(r.chars(static_cast<std::size_t>(-1) - 1, "huge"), protocol_error);
    EXPECT_EQ(r.remaining(), 2u);
}

TEST(byte_reader, fail_throws_protocol_error_with_field_and_reason) {
    byte_reader r(std::span<const std::byte>{});
    auto msg = error_of([&] { r.fail("replica identity", "unknown setting 120"); });
    EXPECT_EQ(msg, "replica identity at offset 0: unknown setting 120");
}

TEST(byte_reader, as_bytes_views_the_same_characters) {
    std::string_view s = "hi";
    auto b = as_bytes(s);
    ASSERT_EQ(b.size(), 2u);
    EXPECT_EQ(b[0], std::byte{'h'});
    EXPECT_EQ(b[1], std::byte{'i'});
}

} // namespace
} // namespace pgpush::cdc
