#include "log/record.hpp"

#include <filesystem>
#include <fstream>
#include <iterator>

#include <gtest/gtest.h>

namespace pgpush::log {
namespace {

std::span<const std::byte> bytes_of(const std::string& s) {
    return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

std::shared_ptr<cdc::relation_schema> messages_relation() {
    auto r = std::make_shared<cdc::relation_schema>();
    r->id = 16384;
    r->schema = "public";
    r->name = "messages";
    r->qualified_name = "public.messages";
    r->replica_identity = 'f';
    r->columns = {{"id", 20, -1, true}, {"body", 25, -1, false}, {"note", 25, -1, false}};
    return r;
}

TEST(log_record, every_kind_round_trips) {
    auto rel = messages_relation();
    cdc::transaction_info txn{735, cdc::lsn{0x16B3748}, 123456789};
    pgoutput::tuple row = {{pgoutput::datum_kind::text, "7"},
                           {pgoutput::datum_kind::text, std::string_view("h\0i", 3)},
                           {pgoutput::datum_kind::unchanged_toast, {}}};
    pgoutput::tuple old = {{pgoutput::datum_kind::text, "7"},
                           {pgoutput::datum_kind::null, {}},
                           {pgoutput::datum_kind::missing, {}}};
    cdc::change c;
    c.op = cdc::change_op::update;
    c.relation = rel;
    c.row = &row;
    c.old = &old;
    c.old_kind = pgoutput::old_kind::full;
    c.pos = {txn.commit_lsn, 3};
    c.txn = &txn;

    std::string out;
    append_header(out, {42, 7, {cdc::lsn{0x100}, 2}});
    append_relation(out, *rel);
    append_begin(out, txn);
    append_change(out, c);
    append_commit(out, txn.commit_lsn, cdc::lsn{0x16B3800});
    append_mark(out, cdc::lsn{0x16B3900});
    append_gap(out, "public.messages", cdc::lsn{0x16B3A00});

    auto bytes = bytes_of(out);
    std::vector<record> got;
    while (!bytes.empty()) {
        auto r = read_record(bytes);
        ASSERT_EQ(r.status, read_status::ok);
        got.push_back(r.value);
        bytes = bytes.subspan(r.size);
    }
    ASSERT_EQ(got.size(), 7u);
    auto h = std::get<header_record>(got[0]);
    EXPECT_EQ(h.epoch, 42u);
    EXPECT_EQ(h.sequence, 7u);
    EXPECT_EQ(h.previous, (cdc::position{cdc::lsn{0x100}, 2}));
    auto r = std::get<relation_record>(got[1]).schema;
    EXPECT_EQ(r->qualified_name, "public.messages");
    EXPECT_EQ(r->replica_identity, 'f');
    ASSERT_EQ(r->columns.size(), 3u);
    EXPECT_EQ(r->columns[1].name, "body");
    EXPECT_EQ(r->columns[0].type, 20u);
    EXPECT_TRUE(r->columns[0].key);
    EXPECT_EQ(r->columns[2].type_modifier, -1);
    auto b = std::get<begin_record>(got[2]);
    EXPECT_EQ(b.txn.xid, 735u);
    EXPECT_EQ(b.txn.commit_lsn, txn.commit_lsn);
    EXPECT_EQ(b.txn.commit_time, 123456789);
    auto ch = std::get<change_record>(got[3]);
    EXPECT_EQ(ch.op, cdc::change_op::update);
    EXPECT_EQ(ch.relation, 16384u);
    EXPECT_EQ(ch.pos, c.pos);
    EXPECT_EQ(ch.old_kind, pgoutput::old_kind::full);
    ASSERT_TRUE(ch.has_row && ch.has_old);
    ASSERT_EQ(ch.row.size(), 3u);
    EXPECT_EQ(ch.row[1].data, std::string_view("h\0i", 3));
    EXPECT_EQ(ch.row[2].kind, pgoutput::datum_kind::unchanged_toast);
    EXPECT_EQ(ch.old[1].kind, pgoutput::datum_kind::null);
    EXPECT_EQ(ch.old[2].kind, pgoutput::datum_kind::missing);
    auto e = std::get<commit_record>(got[4]);
    EXPECT_EQ(e.end_lsn, cdc::lsn{0x16B3800});
    EXPECT_EQ(std::get<mark_record>(got[5]).lsn, cdc::lsn{0x16B3900});
    auto g = std::get<gap_record>(got[6]);
    EXPECT_EQ(g.table, "public.messages");
    EXPECT_EQ(g.at, cdc::lsn{0x16B3A00});

    auto back = to_change(ch, r, &b.txn);
    EXPECT_EQ(back.op, c.op);
    EXPECT_EQ(back.row, &ch.row);
    EXPECT_EQ(back.txn->xid, 735u);
}

TEST(log_record, a_truncate_keeps_its_options) {
    auto rel = messages_relation();
    cdc::change c;
    c.op = cdc::change_op::truncate;
    c.relation = rel;
    c.truncate_cascade = true;
    std::string out;
    append_change(out, c);
    auto r = read_record(bytes_of(out));
    ASSERT_EQ(r.status, read_status::ok);
    auto ch = std::get<change_record>(r.value);
    EXPECT_TRUE(ch.truncate_cascade);
    EXPECT_FALSE(ch.truncate_restart_identity);
    EXPECT_FALSE(ch.has_row || ch.has_old);
}

// A crash can cut a frame anywhere: every prefix reads as incomplete, never as a record.
TEST(log_record, every_truncation_is_incomplete) {
    std::string out;
    append_relation(out, *messages_relation());
    for (std::size_t n = 0; n < out.size(); ++n) {
        auto r = read_record(bytes_of(out.substr(0, n)));
        EXPECT_EQ(r.status, read_status::incomplete) << n;
    }
}

// Damage anywhere in a frame is caught: by the CRC, or by the length check.
TEST(log_record, every_flipped_byte_is_caught) {
    std::string out;
    append_begin(out, {9, cdc::lsn{0x200}, 5});
    for (std::size_t i = 0; i < out.size(); ++i) {
        std::string bad = out;
        bad[i] = static_cast<char>(bad[i] ^ 0x40);
        auto r = read_record(bytes_of(bad));
        EXPECT_NE(r.status, read_status::ok) << i;
    }
}

TEST(log_record, a_gap_record_torn_or_damaged_is_never_read_as_one) {
    std::string out;
    append_gap(out, "public.rooms", cdc::lsn{0x300});
    for (std::size_t n = 0; n < out.size(); ++n)
        EXPECT_EQ(read_record(bytes_of(out.substr(0, n))).status, read_status::incomplete) << n;
    for (std::size_t i = 0; i < out.size(); ++i) {
        std::string bad = out;
        bad[i] = static_cast<char>(bad[i] ^ 0x40);
        EXPECT_NE(read_record(bytes_of(bad)).status, read_status::ok) << i;
    }
}

TEST(log_record, a_gap_whose_table_runs_past_the_payload_is_corrupt) {
    // Kind 'G', a table length of 100 with 2 bytes of name, then nothing: the CRC matches.
    std::string payload = std::string("G") + std::string("\0\0\0\x64", 4) + "ab";
    auto crc = crc32(bytes_of(payload));
    std::string frame = {0, 0, 0, static_cast<char>(payload.size())};
    for (int shift = 24; shift >= 0; shift -= 8)
        frame.push_back(static_cast<char>((crc >> shift) & 0xff));
    frame += payload;
    EXPECT_EQ(read_record(bytes_of(frame)).status, read_status::corrupt);
}

TEST(log_record, a_valid_crc_over_nonsense_is_corrupt) {
    // Length 2, kind 'C' and one byte: the CRC matches but the payload does not decode.
    std::string payload = "C\x01";
    auto crc = crc32(bytes_of(payload));
    std::string frame = {0, 0, 0, 2};
    for (int shift = 24; shift >= 0; shift -= 8)
        frame.push_back(static_cast<char>((crc >> shift) & 0xff));
    frame += payload;
    EXPECT_EQ(read_record(bytes_of(frame)).status, read_status::corrupt);
}

// The fuzzer starts from these: each must be whole, valid records, so that it explores from
// real segments rather than from the first byte it cannot read.
TEST(log_record, the_fuzz_seeds_are_valid_segments) {
    const std::filesystem::path dir = PGPUSH_SOURCE_DIR "/tests/fuzz/corpus/log_record";
    std::size_t files = 0;
    for (const auto& entry : std::filesystem::directory_iterator(dir)) {
        std::ifstream in(entry.path(), std::ios::binary);
        const std::string data{std::istreambuf_iterator<char>(in), {}};
        auto bytes = bytes_of(data);
        std::size_t records = 0;
        while (!bytes.empty()) {
            auto r = read_record(bytes);
            ASSERT_EQ(r.status, read_status::ok) << entry.path() << " record " << records;
            bytes = bytes.subspan(r.size);
            ++records;
        }
        EXPECT_GT(records, 1u) << entry.path();
        ++files;
    }
    EXPECT_GE(files, 2u);
}

} // namespace
} // namespace pgpush::log
