#include "cdc/walsender_protocol.hpp"

#include <algorithm>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace pgpush::cdc::walsender {
namespace {

// Big-endian frame builder for CopyData payloads.
class frame {
public:
    frame() = default;
    explicit frame(char tag) { u8(static_cast<std::uint8_t>(tag)); }

    frame& u8(std::uint8_t v) {
        b_.push_back(static_cast<std::byte>(v));
        return *this;
    }
    frame& u64(std::uint64_t v) {
        for (int i = 7; i >= 0; --i)
            u8(static_cast<std::uint8_t>(v >> (8 * i)));
        return *this;
    }
    frame& i64(std::int64_t v) { return u64(static_cast<std::uint64_t>(v)); }
    frame& bytes(std::string_view s) {
        for (char c : s)
            u8(static_cast<std::uint8_t>(c));
        return *this;
    }

    std::span<const std::byte> span() const { return b_; }
    std::size_t size() const { return b_.size(); }
    std::vector<std::byte> prefix(std::size_t n) const { return {b_.begin(), b_.begin() + n}; }

private:
    std::vector<std::byte> b_;
};

std::uint64_t read_be64(const std::byte* p) {
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i)
        v = (v << 8) | static_cast<std::uint8_t>(p[i]);
    return v;
}

frame xlog_frame(std::string_view payload) {
    frame f('w');
    f.u64(0x16B3748).u64(0x16B3790).i64(785'000'000'000'001).bytes(payload);
    return f;
}

frame keepalive_frame(std::uint8_t reply) {
    frame f('k');
    f.u64(0x1234ABCD5678).i64(-42).u8(reply);
    return f;
}

TEST(walsender_protocol, decodes_xlog_data_with_its_payload) {
    auto f = xlog_frame("B\x01payload");
    auto m = decode(f.span());
    auto* x = std::get_if<xlog_data>(&m);
    ASSERT_NE(x, nullptr);
    EXPECT_EQ(x->wal_start.value, 0x16B3748u);
    EXPECT_EQ(x->wal_end.value, 0x16B3790u);
    EXPECT_EQ(x->send_time, 785'000'000'000'001);
    ASSERT_EQ(x->payload.size(), 9u);
    EXPECT_EQ(std::string_view(reinterpret_cast<const char*>(x->payload.data()), 9),
              "B\x01payload");
    // The payload borrows from the frame, right after the 25-byte header.
    EXPECT_EQ(x->payload.data(), f.span().data() + 25);
}

TEST(walsender_protocol, decodes_xlog_data_with_empty_payload) {
    auto f = xlog_frame("");
    auto m = decode(f.span());
    auto* x = std::get_if<xlog_data>(&m);
    ASSERT_NE(x, nullptr);
    EXPECT_TRUE(x->payload.empty());
}

TEST(walsender_protocol, decodes_keepalive_with_and_without_reply_request) {
    for (std::uint8_t reply : {0, 1}) {
        auto f = keepalive_frame(reply);
        auto m = decode(f.span());
        auto* k = std::get_if<keepalive>(&m);
        ASSERT_NE(k, nullptr) << int(reply);
        EXPECT_EQ(k->wal_end.value, 0x1234ABCD5678u);
        EXPECT_EQ(k->send_time, -42);
        EXPECT_EQ(k->reply_requested, reply == 1);
    }
}

TEST(walsender_protocol, every_truncation_of_a_valid_message_throws) {
    struct {
        const char* name;
        frame f;
    } cases[] = {{"xlog data", xlog_frame("")}, {"keepalive", keepalive_frame(1)}};
    for (const auto& c : cases) {
        for (std::size_t n = 0; n < c.f.size(); ++n) {
            auto prefix = c.f.prefix(n);
            EXPECT_THROW(decode(prefix), protocol_error) << c.name << " cut to " << n << " bytes";
        }
    }
}

TEST(walsender_protocol, malformed_messages_throw_protocol_error) {
    struct {
        const char* name;
        frame f;
        const char* field;
    } cases[] = {
        {"empty", frame(), "copy message type"},
        {"unknown tag", std::move(frame('x').u64(1).u64(1).i64(0)), "copy message type"},
        {"status update is ours, not the server's",
         std::move(frame('r').u64(1).u64(1).u64(1).i64(0).u8(0)), "copy message type"},
        {"keepalive reply flag 2", keepalive_frame(2), "reply requested"},
        {"keepalive reply flag 255", keepalive_frame(255), "reply requested"},
        {"keepalive with trailing byte", std::move(keepalive_frame(0).u8(0)), "keepalive end"},
    };
    for (const auto& c : cases) {
        try {
            decode(c.f.span());
            ADD_FAILURE() << c.name << ": decoded without error";
        } catch (const protocol_error& e) {
            EXPECT_NE(std::string(e.what()).find(c.field), std::string::npos)
                << c.name << ": '" << e.what() << "'";
        }
    }
}

TEST(walsender_protocol, status_update_has_the_exact_34_byte_layout) {
    auto out = encode_status_update(lsn{0x0102030405060708}, lsn{0x1112131415161718},
                                    lsn{0x2122232425262728}, 0x3132333435363738, true);
    static_assert(std::tuple_size_v<decltype(out)> == 34);
    std::vector<std::uint8_t> expected = {
        'r',  0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x11, 0x12, 0x13,
        0x14, 0x15, 0x16, 0x17, 0x18, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27,
        0x28, 0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37, 0x38, 0x01,
    };
    ASSERT_EQ(expected.size(), out.size());
    for (std::size_t i = 0; i < out.size(); ++i) {
        EXPECT_EQ(static_cast<std::uint8_t>(out[i]), expected[i]) << "byte " << i;
    }
}

TEST(walsender_protocol, status_update_reply_flag_is_the_last_byte) {
    auto no = encode_status_update(lsn{1}, lsn{2}, lsn{3}, 4, false);
    auto yes = encode_status_update(lsn{1}, lsn{2}, lsn{3}, 4, true);
    EXPECT_EQ(no[33], std::byte{0});
    EXPECT_EQ(yes[33], std::byte{1});
    EXPECT_TRUE(std::equal(no.begin(), no.begin() + 33, yes.begin()));
}

TEST(walsender_protocol, status_update_encodes_negative_time_as_twos_complement) {
    auto out = encode_status_update(lsn{0}, lsn{0}, lsn{0}, -1, false);
    EXPECT_EQ(out[0], std::byte{'r'});
    EXPECT_EQ(read_be64(&out[1]), 0u);
    EXPECT_EQ(read_be64(&out[25]), ~0ull);
}

TEST(walsender_protocol, status_update_fields_round_trip) {
    const lsn w{0x16B374D848}, f{0x16B3740000}, a{0x10};
    const pg_timestamp now = 785'123'456'789'012;
    auto out = encode_status_update(w, f, a, now, false);
    EXPECT_EQ(read_be64(&out[1]), w.value);
    EXPECT_EQ(read_be64(&out[9]), f.value);
    EXPECT_EQ(read_be64(&out[17]), a.value);
    EXPECT_EQ(static_cast<pg_timestamp>(read_be64(&out[25])), now);
}

} // namespace
} // namespace pgpush::cdc::walsender
