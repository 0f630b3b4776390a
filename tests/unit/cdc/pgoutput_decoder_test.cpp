#include "cdc/pgoutput_decoder.hpp"

#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

namespace pgpush::cdc::pgoutput {
namespace {

// Builds a wire frame, big-endian, as the walsender would send it (PostgreSQL docs, "Logical
// Replication Message Formats").
class frame {
public:
    frame() = default;
    explicit frame(char tag) { u8(static_cast<std::uint8_t>(tag)); }

    frame& u8(std::uint8_t v) {
        b_.push_back(static_cast<std::byte>(v));
        return *this;
    }
    frame& u16(std::uint16_t v) { return be(v, 2); }
    frame& u32(std::uint32_t v) { return be(v, 4); }
    frame& u64(std::uint64_t v) { return be(v, 8); }
    frame& i32(std::int32_t v) { return u32(static_cast<std::uint32_t>(v)); }
    frame& i64(std::int64_t v) { return u64(static_cast<std::uint64_t>(v)); }
    frame& bytes(std::string_view s) {
        for (char c : s)
            u8(static_cast<std::uint8_t>(c));
        return *this;
    }
    frame& cstring(std::string_view s) { return bytes(s).u8(0); }
    // The xid that data messages carry first inside a streamed block.
    frame& stream_xid(bool in_stream, std::uint32_t xid) { return in_stream ? u32(xid) : *this; }

    // TupleData pieces.
    frame& null_value() { return u8('n'); }
    frame& toast_value() { return u8('u'); }
    frame& text_value(std::string_view s) {
        return u8('t').i32(static_cast<std::int32_t>(s.size())).bytes(s);
    }
    frame& binary_value(std::string_view s) {
        return u8('b').i32(static_cast<std::int32_t>(s.size())).bytes(s);
    }

    std::span<const std::byte> span() const { return b_; }
    std::size_t size() const { return b_.size(); }
    std::vector<std::byte> prefix(std::size_t n) const { return {b_.begin(), b_.begin() + n}; }

private:
    frame& be(std::uint64_t v, int n) {
        for (int i = n - 1; i >= 0; --i)
            u8(static_cast<std::uint8_t>(v >> (8 * i)));
        return *this;
    }
    std::vector<std::byte> b_;
};

template <class T>
T decode_as(const frame& f, bool in_stream = false) {
    auto v = decode(f.span(), in_stream);
    if (auto* m = std::get_if<T>(&v)) return std::move(*m);
    ADD_FAILURE() << "decoded to variant alternative " << v.index();
    return T{};
}

std::string_view text_of(std::span<const std::byte> b) {
    return {reinterpret_cast<const char*>(b.data()), b.size()};
}

constexpr std::uint32_t stream_xid = 4242;
constexpr oid relid = 16385;
constexpr std::int32_t numeric_10_2 = (10 << 16 | 2) + 4;
constexpr std::uint64_t final_lsn = 0x16B3748;
constexpr std::uint64_t end_lsn = 0x16B3778;
constexpr std::int64_t commit_time = 785'000'000'123'456;
// A binary value with a NUL and a high byte in it.
const std::string binary_bytes("\x00\xFF\x7F", 3);

// ---- frames of every message type ----

frame begin_frame() {
    return std::move(frame('B').u64(final_lsn).i64(commit_time).u32(777));
}

frame commit_frame() {
    return std::move(frame('C').u8(0).u64(final_lsn).u64(end_lsn).i64(commit_time));
}

frame origin_frame() {
    return std::move(frame('O').u64(0xABCDEF).cstring("node_a"));
}

frame relation_frame(bool in_stream = false, char identity = 'd') {
    frame f('R');
    f.stream_xid(in_stream, stream_xid).u32(relid).cstring("public").cstring("orders");
    f.u8(static_cast<std::uint8_t>(identity)).u16(3);
    f.u8(1).cstring("id").u32(23).i32(-1);
    f.u8(0).cstring("note").u32(25).i32(-1);
    f.u8(0).cstring("amount").u32(1700).i32(numeric_10_2);
    return f;
}

frame type_frame(bool in_stream = false) {
    frame f('Y');
    f.stream_xid(in_stream, stream_xid).u32(16400).cstring("public").cstring("mood");
    return f;
}

// A tuple with one datum of each kind: n, u, t, b.
frame& four_kinds(frame& f) {
    return f.u16(4).null_value().toast_value().text_value("abc").binary_value(binary_bytes);
}

frame insert_frame(bool in_stream = false) {
    frame f('I');
    f.stream_xid(in_stream, stream_xid).u32(relid).u8('N');
    four_kinds(f);
    return f;
}

frame update_frame(bool in_stream = false, char old_tag = 0) {
    frame f('U');
    f.stream_xid(in_stream, stream_xid).u32(relid);
    if (old_tag != 0) {
        f.u8(static_cast<std::uint8_t>(old_tag)).u16(2).text_value("old1").null_value();
    }
    f.u8('N').u16(2).text_value("new1").toast_value();
    return f;
}

frame delete_frame(bool in_stream = false, char old_tag = 'K') {
    frame f('D');
    f.stream_xid(in_stream, stream_xid).u32(relid);
    f.u8(static_cast<std::uint8_t>(old_tag)).u16(2).text_value("7").null_value();
    return f;
}

frame truncate_frame(bool in_stream = false, std::uint8_t options = 3) {
    frame f('T');
    f.stream_xid(in_stream, stream_xid).u32(3).u8(options).u32(16385).u32(16386).u32(4000000000u);
    return f;
}

frame message_frame(bool in_stream = false, bool transactional = true) {
    frame f('M');
    f.stream_xid(in_stream, stream_xid).u8(transactional ? 1 : 0).u64(0x16B0000);
    f.cstring("pgpush").i32(11).bytes(std::string_view("hello\0world", 11));
    return f;
}

frame stream_start_frame(bool first = true) {
    return std::move(frame('S').u32(stream_xid).u8(first ? 1 : 0));
}

frame stream_stop_frame() {
    return frame('E');
}

frame stream_commit_frame() {
    return std::move(frame('c').u32(stream_xid).u8(0).u64(final_lsn).u64(end_lsn).i64(commit_time));
}

frame stream_abort_frame() {
    return std::move(frame('A').u32(stream_xid).u32(4243));
}

struct named_frame {
    std::string name;
    frame bytes;
    bool in_stream = false;
};

std::vector<named_frame> all_valid_frames() {
    return {
        {"begin", begin_frame()},
        {"commit", commit_frame()},
        {"origin", origin_frame()},
        {"relation", relation_frame()},
        {"relation (streamed)", relation_frame(true), true},
        {"type", type_frame()},
        {"type (streamed)", type_frame(true), true},
        {"insert", insert_frame()},
        {"insert (streamed)", insert_frame(true), true},
        {"update", update_frame()},
        {"update K", update_frame(false, 'K')},
        {"update O", update_frame(false, 'O')},
        {"update O (streamed)", update_frame(true, 'O'), true},
        {"delete K", delete_frame(false, 'K')},
        {"delete O", delete_frame(false, 'O')},
        {"delete K (streamed)", delete_frame(true, 'K'), true},
        {"truncate", truncate_frame()},
        {"truncate (streamed)", truncate_frame(true), true},
        {"message", message_frame()},
        {"message non-transactional", message_frame(false, false)},
        {"message (streamed)", message_frame(true), true},
        {"stream start", stream_start_frame()},
        {"stream stop", stream_stop_frame()},
        {"stream commit", stream_commit_frame()},
        {"stream abort", stream_abort_frame()},
    };
}

// ---- golden frames ----

TEST(pgoutput_decoder, decodes_begin) {
    auto m = decode_as<begin>(begin_frame());
    EXPECT_EQ(m.final_lsn.value, final_lsn);
    EXPECT_EQ(m.commit_time, commit_time);
    EXPECT_EQ(m.xid, 777u);
}

TEST(pgoutput_decoder, decodes_commit) {
    auto m = decode_as<commit>(commit_frame());
    EXPECT_EQ(m.flags, 0u);
    EXPECT_EQ(m.commit_lsn.value, final_lsn);
    EXPECT_EQ(m.end_lsn.value, end_lsn);
    EXPECT_EQ(m.commit_time, commit_time);
}

TEST(pgoutput_decoder, decodes_origin) {
    auto f = origin_frame();
    auto m = decode_as<origin>(f);
    EXPECT_EQ(m.origin_lsn.value, 0xABCDEFu);
    EXPECT_EQ(m.name, "node_a");
}

TEST(pgoutput_decoder, decodes_relation_with_columns_and_key_flags) {
    auto f = relation_frame();
    auto m = decode_as<relation>(f);
    EXPECT_FALSE(m.stream_xid);
    EXPECT_EQ(m.id, relid);
    EXPECT_EQ(m.nspname, "public");
    EXPECT_EQ(m.relname, "orders");
    EXPECT_EQ(m.replica_identity, 'd');
    ASSERT_EQ(m.columns.size(), 3u);
    EXPECT_EQ(m.columns[0].name, "id");
    EXPECT_TRUE(m.columns[0].is_key());
    EXPECT_EQ(m.columns[0].type, 23u);
    EXPECT_EQ(m.columns[0].type_modifier, -1);
    EXPECT_EQ(m.columns[1].name, "note");
    EXPECT_FALSE(m.columns[1].is_key());
    EXPECT_EQ(m.columns[1].type, 25u);
    EXPECT_EQ(m.columns[2].name, "amount");
    EXPECT_FALSE(m.columns[2].is_key());
    EXPECT_EQ(m.columns[2].type, 1700u);
    EXPECT_EQ(m.columns[2].type_modifier, numeric_10_2);
}

TEST(pgoutput_decoder, decodes_every_replica_identity_setting) {
    for (char identity : {'d', 'n', 'f', 'i'}) {
        auto f = relation_frame(false, identity);
        EXPECT_EQ(decode_as<relation>(f).replica_identity, identity) << identity;
    }
}

TEST(pgoutput_decoder, decodes_relation_in_pg_catalog_with_empty_namespace_and_no_columns) {
    frame f('R');
    f.u32(1259).cstring("").cstring("pg_class").u8('n').u16(0);
    auto m = decode_as<relation>(f);
    EXPECT_EQ(m.nspname, "");
    EXPECT_EQ(m.relname, "pg_class");
    EXPECT_TRUE(m.columns.empty());
}

TEST(pgoutput_decoder, decodes_type) {
    auto f = type_frame();
    auto m = decode_as<type>(f);
    EXPECT_FALSE(m.stream_xid);
    EXPECT_EQ(m.id, 16400u);
    EXPECT_EQ(m.nspname, "public");
    EXPECT_EQ(m.name, "mood");
}

TEST(pgoutput_decoder, decodes_insert_with_every_datum_kind) {
    auto f = insert_frame();
    auto m = decode_as<insert>(f);
    EXPECT_FALSE(m.stream_xid);
    EXPECT_EQ(m.relation, relid);
    ASSERT_EQ(m.new_tuple.size(), 4u);
    EXPECT_EQ(m.new_tuple[0].kind, datum_kind::null);
    EXPECT_EQ(m.new_tuple[1].kind, datum_kind::unchanged_toast);
    EXPECT_EQ(m.new_tuple[2].kind, datum_kind::text);
    EXPECT_EQ(m.new_tuple[2].data, "abc");
    EXPECT_EQ(m.new_tuple[3].kind, datum_kind::binary);
    EXPECT_EQ(m.new_tuple[3].data, binary_bytes);
}

TEST(pgoutput_decoder, decoded_values_borrow_from_the_frame) {
    auto f = insert_frame();
    auto m = decode_as<insert>(f);
    const auto* begin_ptr = reinterpret_cast<const char*>(f.span().data());
    const auto* end_ptr = begin_ptr + f.size();
    const char* value = m.new_tuple[2].data.data();
    EXPECT_TRUE(value >= begin_ptr && value < end_ptr);
}

TEST(pgoutput_decoder, decodes_empty_text_value_and_empty_tuple) {
    frame f('I');
    f.u32(relid).u8('N').u16(1).text_value("");
    auto m = decode_as<insert>(f);
    ASSERT_EQ(m.new_tuple.size(), 1u);
    EXPECT_EQ(m.new_tuple[0].kind, datum_kind::text);
    EXPECT_EQ(m.new_tuple[0].data, "");

    frame g('I');
    g.u32(relid).u8('N').u16(0);
    EXPECT_TRUE(decode_as<insert>(g).new_tuple.empty());
}

TEST(pgoutput_decoder, accepts_the_maximum_of_1600_columns) {
    frame f('I');
    f.u32(relid).u8('N').u16(1600);
    for (int i = 0; i < 1600; ++i)
        f.null_value();
    EXPECT_EQ(decode_as<insert>(f).new_tuple.size(), 1600u);
}

TEST(pgoutput_decoder, decodes_update_without_old_tuple) {
    auto f = update_frame();
    auto m = decode_as<update>(f);
    EXPECT_EQ(m.relation, relid);
    EXPECT_EQ(m.old, old_kind::none);
    EXPECT_TRUE(m.old_tuple.empty());
    ASSERT_EQ(m.new_tuple.size(), 2u);
    EXPECT_EQ(m.new_tuple[0].data, "new1");
    EXPECT_EQ(m.new_tuple[1].kind, datum_kind::unchanged_toast);
}

TEST(pgoutput_decoder, decodes_update_with_old_key_or_full_old_row) {
    struct {
        char tag;
        old_kind expected;
    } cases[] = {{'K', old_kind::key}, {'O', old_kind::full}};
    for (auto c : cases) {
        auto f = update_frame(false, c.tag);
        auto m = decode_as<update>(f);
        EXPECT_EQ(m.old, c.expected) << c.tag;
        ASSERT_EQ(m.old_tuple.size(), 2u) << c.tag;
        EXPECT_EQ(m.old_tuple[0].kind, datum_kind::text) << c.tag;
        EXPECT_EQ(m.old_tuple[0].data, "old1") << c.tag;
        EXPECT_EQ(m.old_tuple[1].kind, datum_kind::null) << c.tag;
        ASSERT_EQ(m.new_tuple.size(), 2u) << c.tag;
        EXPECT_EQ(m.new_tuple[0].data, "new1") << c.tag;
    }
}

TEST(pgoutput_decoder, decodes_delete_with_key_or_full_old_row) {
    struct {
        char tag;
        old_kind expected;
    } cases[] = {{'K', old_kind::key}, {'O', old_kind::full}};
    for (auto c : cases) {
        auto f = delete_frame(false, c.tag);
        auto m = decode_as<delete_>(f);
        EXPECT_EQ(m.relation, relid) << c.tag;
        EXPECT_EQ(m.old, c.expected) << c.tag;
        ASSERT_EQ(m.old_tuple.size(), 2u) << c.tag;
        EXPECT_EQ(m.old_tuple[0].data, "7") << c.tag;
        EXPECT_EQ(m.old_tuple[1].kind, datum_kind::null) << c.tag;
    }
}

TEST(pgoutput_decoder, decodes_truncate_with_several_relations) {
    auto m = decode_as<truncate>(truncate_frame());
    EXPECT_FALSE(m.stream_xid);
    EXPECT_EQ(m.relations, (std::vector<oid>{16385, 16386, 4000000000u}));
    EXPECT_EQ(m.options, 3u);
}

TEST(pgoutput_decoder, decodes_truncate_option_bits) {
    struct {
        std::uint8_t options;
        bool cascade;
        bool restart_identity;
    } cases[] = {{0, false, false}, {1, true, false}, {2, false, true}, {3, true, true}};
    for (auto c : cases) {
        auto m = decode_as<truncate>(truncate_frame(false, c.options));
        EXPECT_EQ(m.options, c.options);
        EXPECT_EQ(m.cascade(), c.cascade) << int(c.options);
        EXPECT_EQ(m.restart_identity(), c.restart_identity) << int(c.options);
    }
}

TEST(pgoutput_decoder, decodes_truncate_of_no_relations) {
    frame f('T');
    f.u32(0).u8(0);
    EXPECT_TRUE(decode_as<truncate>(f).relations.empty());
}

TEST(pgoutput_decoder, decodes_transactional_and_non_transactional_messages) {
    for (bool transactional : {true, false}) {
        auto f = message_frame(false, transactional);
        auto m = decode_as<message>(f);
        EXPECT_FALSE(m.stream_xid);
        EXPECT_EQ(m.transactional, transactional);
        EXPECT_EQ(m.message_lsn.value, 0x16B0000u);
        EXPECT_EQ(m.prefix, "pgpush");
        EXPECT_EQ(text_of(m.content), std::string_view("hello\0world", 11));
    }
}

TEST(pgoutput_decoder, decodes_message_with_empty_content) {
    frame f('M');
    f.u8(0).u64(1).cstring("p").i32(0);
    EXPECT_TRUE(decode_as<message>(f).content.empty());
}

TEST(pgoutput_decoder, decodes_stream_start_with_first_segment_flag) {
    for (bool first : {true, false}) {
        auto m = decode_as<stream_start>(stream_start_frame(first));
        EXPECT_EQ(m.xid, stream_xid);
        EXPECT_EQ(m.first_segment, first);
    }
}

TEST(pgoutput_decoder, decodes_stream_stop) {
    decode_as<stream_stop>(stream_stop_frame());
    EXPECT_TRUE(std::holds_alternative<stream_stop>(decode(stream_stop_frame().span())));
}

TEST(pgoutput_decoder, decodes_stream_commit) {
    auto m = decode_as<stream_commit>(stream_commit_frame());
    EXPECT_EQ(m.xid, stream_xid);
    EXPECT_EQ(m.flags, 0u);
    EXPECT_EQ(m.commit_lsn.value, final_lsn);
    EXPECT_EQ(m.end_lsn.value, end_lsn);
    EXPECT_EQ(m.commit_time, commit_time);
}

TEST(pgoutput_decoder, decodes_stream_abort) {
    auto m = decode_as<stream_abort>(stream_abort_frame());
    EXPECT_EQ(m.xid, stream_xid);
    EXPECT_EQ(m.subxid, 4243u);
}

// Inside a streamed block, data messages carry the transaction's xid before anything else.
TEST(pgoutput_decoder, streamed_data_messages_carry_the_xid_first) {
    {
        auto f = relation_frame(true);
        auto m = decode_as<relation>(f, true);
        EXPECT_EQ(m.stream_xid, stream_xid);
        EXPECT_EQ(m.id, relid);
        EXPECT_EQ(m.relname, "orders");
        EXPECT_EQ(m.columns.size(), 3u);
    }
    {
        auto f = type_frame(true);
        auto m = decode_as<type>(f, true);
        EXPECT_EQ(m.stream_xid, stream_xid);
        EXPECT_EQ(m.id, 16400u);
        EXPECT_EQ(m.name, "mood");
    }
    {
        auto f = insert_frame(true);
        auto m = decode_as<insert>(f, true);
        EXPECT_EQ(m.stream_xid, stream_xid);
        EXPECT_EQ(m.relation, relid);
        EXPECT_EQ(m.new_tuple.size(), 4u);
    }
    {
        auto f = update_frame(true, 'O');
        auto m = decode_as<update>(f, true);
        EXPECT_EQ(m.stream_xid, stream_xid);
        EXPECT_EQ(m.relation, relid);
        EXPECT_EQ(m.old, old_kind::full);
        EXPECT_EQ(m.old_tuple.size(), 2u);
        EXPECT_EQ(m.new_tuple.size(), 2u);
    }
    {
        auto f = delete_frame(true, 'K');
        auto m = decode_as<delete_>(f, true);
        EXPECT_EQ(m.stream_xid, stream_xid);
        EXPECT_EQ(m.relation, relid);
        EXPECT_EQ(m.old, old_kind::key);
    }
    {
        auto m = decode_as<truncate>(truncate_frame(true), true);
        EXPECT_EQ(m.stream_xid, stream_xid);
        EXPECT_EQ(m.relations.size(), 3u);
        EXPECT_EQ(m.options, 3u);
    }
    {
        auto f = message_frame(true);
        auto m = decode_as<message>(f, true);
        EXPECT_EQ(m.stream_xid, stream_xid);
        EXPECT_TRUE(m.transactional);
        EXPECT_EQ(m.prefix, "pgpush");
    }
}

// Transaction-control and stream-control messages have no xid prefix, even inside a block.
TEST(pgoutput_decoder, control_messages_are_the_same_inside_a_streamed_block) {
    EXPECT_EQ(decode_as<begin>(begin_frame(), true).xid, 777u);
    EXPECT_EQ(decode_as<commit>(commit_frame(), true).end_lsn.value, end_lsn);
    EXPECT_EQ(decode_as<stream_start>(stream_start_frame(), true).xid, stream_xid);
    decode_as<stream_stop>(stream_stop_frame(), true);
    EXPECT_EQ(decode_as<stream_commit>(stream_commit_frame(), true).xid, stream_xid);
    EXPECT_EQ(decode_as<stream_abort>(stream_abort_frame(), true).subxid, 4243u);
}

// ---- malformed frames ----

TEST(pgoutput_decoder, every_truncation_of_a_valid_frame_throws) {
    for (const auto& f : all_valid_frames()) {
        ASSERT_NO_THROW(decode(f.bytes.span(), f.in_stream)) << f.name;
        for (std::size_t n = 0; n < f.bytes.size(); ++n) {
            auto prefix = f.bytes.prefix(n);
            EXPECT_THROW(decode(prefix, f.in_stream), protocol_error)
                << f.name << " cut to " << n << " of " << f.bytes.size() << " bytes";
        }
    }
}

TEST(pgoutput_decoder, a_trailing_byte_after_a_valid_frame_throws) {
    for (auto f : all_valid_frames()) {
        f.bytes.u8(0);
        EXPECT_THROW(decode(f.bytes.span(), f.in_stream), protocol_error) << f.name;
    }
}

struct malformed_case {
    const char* name;
    frame bytes;
    const char* field; // what the error message must name
    bool in_stream = false;
};

std::vector<malformed_case> malformed_frames() {
    std::vector<malformed_case> cases;
    cases.push_back({"empty input", frame(), "message type"});
    cases.push_back({"unknown tag", std::move(frame('Z').u32(1)), "message type"});
    cases.push_back(
        {"lowercase begin tag", std::move(frame('b').u64(1).i64(0).u32(1)), "message type"});
    {
        frame f('I');
        f.u32(relid).u8('N').u16(1).u8('t').i32(-1);
        cases.push_back({"negative value length", std::move(f), "tuple value length"});
    }
    {
        frame f('I');
        f.u32(relid).u8('N').u16(1).u8('t').i32(std::numeric_limits<std::int32_t>::min());
        cases.push_back({"most negative value length", std::move(f), "tuple value length"});
    }
    {
        frame f('I');
        f.u32(relid).u8('N').u16(1).u8('t').i32(100).bytes("short");
        cases.push_back({"value length past the end", std::move(f), "tuple value"});
    }
    {
        frame f('I');
        f.u32(relid).u8('N').u16(2).null_value().u8('x');
        cases.push_back({"bad tuple kind byte", std::move(f), "tuple column kind"});
    }
    {
        frame f('I');
        f.u32(relid).u8('N').u16(1).u8(0);
        cases.push_back({"NUL tuple kind byte", std::move(f), "tuple column kind"});
    }
    {
        frame f('I');
        f.u32(relid).u8('K').u16(1).null_value();
        cases.push_back({"insert without N tag", std::move(f), "insert tuple tag"});
    }
    {
        frame f('U');
        f.u32(relid).u8('X').u16(1).null_value();
        cases.push_back({"bad update tuple tag", std::move(f), "update"});
    }
    {
        frame f('U');
        f.u32(relid).u8('K').u16(1).null_value().u8('O').u16(1).null_value();
        cases.push_back({"update old tuple followed by another old tuple", std::move(f),
                         "update new tuple tag"});
    }
    {
        frame f('D');
        f.u32(relid).u8('N').u16(1).null_value();
        cases.push_back({"delete with N tag", std::move(f), "delete tuple tag"});
    }
    {
        frame f('D');
        f.u32(relid).u8('k').u16(1).null_value();
        cases.push_back({"delete with lowercase k tag", std::move(f), "delete tuple tag"});
    }
    cases.push_back({"bad replica identity", relation_frame(false, 'x'), "replica identity"});
    cases.push_back(
        {"replica identity uppercase D", relation_frame(false, 'D'), "replica identity"});
    {
        frame f('R');
        f.u32(relid).cstring("public").cstring("t").u8('d').u16(1601);
        cases.push_back({"relation with 1601 columns", std::move(f), "relation column count"});
    }
    {
        frame f('R');
        f.u32(relid).cstring("public").cstring("t").u8('d').u16(0xFFFF);
        cases.push_back({"relation with 65535 columns", std::move(f), "relation column count"});
    }
    {
        frame f('I');
        f.u32(relid).u8('N').u16(1601);
        for (int i = 0; i < 1601; ++i)
            f.null_value();
        cases.push_back({"tuple with 1601 columns", std::move(f), "tuple column count"});
    }
    {
        frame f('R');
        f.u32(relid).cstring("public").cstring("t").u8('d').u16(1).u8(1).bytes("col");
        cases.push_back({"unterminated column name", std::move(f), "column name"});
    }
    {
        frame f('T');
        f.u32(3).u8(0).u32(1).u32(2);
        cases.push_back(
            {"truncate count larger than the bytes", std::move(f), "truncate relation count"});
    }
    {
        frame f('T');
        f.u32(0xFFFFFFFFu).u8(0).u32(1);
        cases.push_back({"truncate count of 2^32-1", std::move(f), "truncate relation count"});
    }
    {
        frame f('M');
        f.u8(2).u64(1).cstring("p").i32(0);
        cases.push_back({"message flags 2", std::move(f), "message flags"});
    }
    {
        frame f('M');
        f.u8(0xFF).u64(1).cstring("p").i32(0);
        cases.push_back({"message flags 255", std::move(f), "message flags"});
    }
    {
        frame f('M');
        f.u8(1).u64(1).cstring("p").i32(-5);
        cases.push_back({"negative message length", std::move(f), "message content length"});
    }
    {
        frame f('M');
        f.u8(1).u64(1).cstring("p").i32(10).bytes("abc");
        cases.push_back({"message content past the end", std::move(f), "message content"});
    }
    cases.push_back(
        {"stream start flag 2", std::move(frame('S').u32(1).u8(2)), "first segment flag"});
    cases.push_back({"stream stop with payload", std::move(frame('E').u8(0)), "message end"});
    {
        frame f('B');
        f.u64(final_lsn).i64(0).u32(1).u8(0);
        cases.push_back({"begin with trailing byte", std::move(f), "message end"});
    }
    {
        // A streamed insert decoded as if outside a block: the xid is taken for the relation
        // id, 'N' is then missing where the tuple tag should be.
        auto f = insert_frame(true);
        cases.push_back({"streamed frame outside a block", std::move(f), "insert tuple tag"});
    }
    {
        // A plain insert decoded as if inside a block lacks four bytes.
        auto f = insert_frame(false);
        cases.push_back({"plain frame inside a block", std::move(f), "insert tuple tag", true});
    }
    return cases;
}

TEST(pgoutput_decoder, malformed_frames_throw_protocol_error_naming_the_field) {
    for (const auto& c : malformed_frames()) {
        try {
            decode(c.bytes.span(), c.in_stream);
            ADD_FAILURE() << c.name << ": decoded without error";
        } catch (const protocol_error& e) {
            EXPECT_NE(std::string(e.what()).find(c.field), std::string::npos)
                << c.name << ": message was '" << e.what() << "'";
        } catch (const std::exception& e) {
            ADD_FAILURE() << c.name << ": threw something else: " << e.what();
        }
    }
}

} // namespace
} // namespace pgpush::cdc::pgoutput
