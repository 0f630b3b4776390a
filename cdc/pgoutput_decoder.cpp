#include "cdc/pgoutput_decoder.hpp"

#include <string>

namespace pgpush::cdc::pgoutput {

namespace {

// Postgres caps a relation at 1600 columns (MaxHeapAttributeNumber); more is a corrupt frame, and
// refusing it bounds what one message can make us allocate.
constexpr std::uint16_t max_columns = 1600;

std::optional<transaction_id> read_stream_xid(byte_reader& r, bool in_stream_block) {
    if (!in_stream_block) return std::nullopt;
    return r.u32("xid");
}

lsn read_lsn(byte_reader& r, const char* field) {
    return lsn{r.u64(field)};
}

// TupleData: Int16 column count, then per column a kind byte and, for 't' and 'b', Int32 length
// and the bytes.
tuple read_tuple(byte_reader& r) {
    auto n = r.u16("tuple column count");
    if (n > max_columns) r.fail("tuple column count", std::to_string(n) + " columns");
    tuple t;
    t.reserve(n);
    for (std::uint16_t i = 0; i < n; ++i) {
        auto kind = r.u8("tuple column kind");
        switch (kind) {
        case 'n':
            t.push_back({datum_kind::null, {}});
            break;
        case 'u':
            t.push_back({datum_kind::unchanged_toast, {}});
            break;
        case 't':
        case 'b': {
            auto len = r.i32("tuple value length");
            if (len < 0) r.fail("tuple value length", "negative length " + std::to_string(len));
            auto value = r.chars(static_cast<std::size_t>(len), "tuple value");
            t.push_back({kind == 't' ? datum_kind::text : datum_kind::binary, value});
            break;
        }
        default:
            r.fail("tuple column kind", "unknown kind byte " + std::to_string(kind));
        }
    }
    return t;
}

relation read_relation(byte_reader& r, bool in_stream_block) {
    relation m;
    m.stream_xid = read_stream_xid(r, in_stream_block);
    m.id = r.u32("relation id");
    m.nspname = r.cstring("relation namespace");
    m.relname = r.cstring("relation name");
    m.replica_identity = static_cast<char>(r.u8("replica identity"));
    switch (m.replica_identity) {
    case 'd':
    case 'n':
    case 'f':
    case 'i':
        break;
    default:
        r.fail("replica identity", "unknown setting " + std::to_string(m.replica_identity));
    }
    auto n = r.u16("relation column count");
    if (n > max_columns) r.fail("relation column count", std::to_string(n) + " columns");
    m.columns.reserve(n);
    for (std::uint16_t i = 0; i < n; ++i) {
        column c;
        c.flags = r.u8("column flags");
        c.name = r.cstring("column name");
        c.type = r.u32("column type");
        c.type_modifier = r.i32("column type modifier");
        m.columns.push_back(c);
    }
    return m;
}

old_kind read_old_kind(byte_reader& r, std::uint8_t tag, const char* field) {
    if (tag == 'K') return old_kind::key;
    if (tag == 'O') return old_kind::full;
    r.fail(field, "expected 'K' or 'O', got byte " + std::to_string(tag));
}

update read_update(byte_reader& r, bool in_stream_block) {
    update m;
    m.stream_xid = read_stream_xid(r, in_stream_block);
    m.relation = r.u32("relation id");
    auto tag = r.u8("update tuple tag");
    if (tag == 'K' || tag == 'O') {
        m.old = read_old_kind(r, tag, "update old tuple tag");
        m.old_tuple = read_tuple(r);
        tag = r.u8("update new tuple tag");
    }
    if (tag != 'N') r.fail("update new tuple tag", "expected 'N', got byte " + std::to_string(tag));
    m.new_tuple = read_tuple(r);
    return m;
}

} // namespace

message_variant decode(std::span<const std::byte> bytes, bool in_stream_block) {
    byte_reader r(bytes);
    const auto tag = r.u8("message type");
    message_variant out;
    switch (tag) {
    case 'B': {
        begin m;
        m.final_lsn = read_lsn(r, "final lsn");
        m.commit_time = r.i64("commit time");
        m.xid = r.u32("xid");
        out = m;
        break;
    }
    case 'C': {
        commit m;
        m.flags = r.u8("commit flags");
        m.commit_lsn = read_lsn(r, "commit lsn");
        m.end_lsn = read_lsn(r, "end lsn");
        m.commit_time = r.i64("commit time");
        out = m;
        break;
    }
    case 'O': {
        origin m;
        m.origin_lsn = read_lsn(r, "origin lsn");
        m.name = r.cstring("origin name");
        out = m;
        break;
    }
    case 'R':
        out = read_relation(r, in_stream_block);
        break;
    case 'Y': {
        type m;
        m.stream_xid = read_stream_xid(r, in_stream_block);
        m.id = r.u32("type id");
        m.nspname = r.cstring("type namespace");
        m.name = r.cstring("type name");
        out = m;
        break;
    }
    case 'I': {
        insert m;
        m.stream_xid = read_stream_xid(r, in_stream_block);
        m.relation = r.u32("relation id");
        auto t = r.u8("insert tuple tag");
        if (t != 'N') r.fail("insert tuple tag", "expected 'N', got byte " + std::to_string(t));
        m.new_tuple = read_tuple(r);
        out = std::move(m);
        break;
    }
    case 'U':
        out = read_update(r, in_stream_block);
        break;
    case 'D': {
        delete_ m;
        m.stream_xid = read_stream_xid(r, in_stream_block);
        m.relation = r.u32("relation id");
        m.old = read_old_kind(r, r.u8("delete tuple tag"), "delete tuple tag");
        m.old_tuple = read_tuple(r);
        out = std::move(m);
        break;
    }
    case 'T': {
        truncate m;
        m.stream_xid = read_stream_xid(r, in_stream_block);
        auto n = r.u32("truncate relation count");
        m.options = r.u8("truncate options");
        // Each OID takes 4 bytes: check before reserving so a forged count cannot allocate.
        if (n > r.remaining() / 4) {
            r.fail("truncate relation count",
                   std::to_string(n) + " relations in " + std::to_string(r.remaining()) + " bytes");
        }
        m.relations.reserve(n);
        for (std::uint32_t i = 0; i < n; ++i)
            m.relations.push_back(r.u32("truncate relation id"));
        out = std::move(m);
        break;
    }
    case 'M': {
        message m;
        m.stream_xid = read_stream_xid(r, in_stream_block);
        auto flags = r.u8("message flags");
        if (flags > 1) r.fail("message flags", "unknown flags " + std::to_string(flags));
        m.transactional = flags == 1;
        m.message_lsn = read_lsn(r, "message lsn");
        m.prefix = r.cstring("message prefix");
        auto len = r.i32("message content length");
        if (len < 0) r.fail("message content length", "negative length " + std::to_string(len));
        m.content = r.bytes(static_cast<std::size_t>(len), "message content");
        out = m;
        break;
    }
    case 'S': {
        stream_start m;
        m.xid = r.u32("xid");
        auto first = r.u8("first segment flag");
        if (first > 1)
            r.fail("first segment flag", "expected 0 or 1, got " + std::to_string(first));
        m.first_segment = first == 1;
        out = m;
        break;
    }
    case 'E':
        out = stream_stop{};
        break;
    case 'c': {
        stream_commit m;
        m.xid = r.u32("xid");
        m.flags = r.u8("commit flags");
        m.commit_lsn = read_lsn(r, "commit lsn");
        m.end_lsn = read_lsn(r, "end lsn");
        m.commit_time = r.i64("commit time");
        out = m;
        break;
    }
    case 'A': {
        stream_abort m;
        m.xid = r.u32("xid");
        m.subxid = r.u32("subtransaction xid");
        out = m;
        break;
    }
    default:
        r.fail("message type", "unknown pgoutput message type " + std::to_string(tag));
    }
    r.expect_end("message end");
    return out;
}

} // namespace pgpush::cdc::pgoutput
