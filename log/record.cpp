#include "log/record.hpp"

#include <boost/crc.hpp>

#include "cdc/byte_reader.hpp"

namespace pgpush::log {

namespace {

void put8(std::string& out, std::uint8_t v) {
    out.push_back(static_cast<char>(v));
}
void put32(std::string& out, std::uint32_t v) {
    for (int shift = 24; shift >= 0; shift -= 8)
        out.push_back(static_cast<char>((v >> shift) & 0xff));
}
void put64(std::string& out, std::uint64_t v) {
    put32(out, static_cast<std::uint32_t>(v >> 32));
    put32(out, static_cast<std::uint32_t>(v));
}
void put_string(std::string& out, std::string_view s) {
    put32(out, static_cast<std::uint32_t>(s.size()));
    out.append(s);
}
void put_position(std::string& out, cdc::position p) {
    put64(out, p.commit_lsn.value);
    put32(out, p.index);
}

void put_tuple(std::string& out, const pgoutput::tuple& t) {
    put32(out, static_cast<std::uint32_t>(t.size()));
    for (const auto& d : t) {
        put8(out, static_cast<std::uint8_t>(d.kind));
        if (d.kind == pgoutput::datum_kind::text || d.kind == pgoutput::datum_kind::binary) {
            put_string(out, d.data);
        }
    }
}

// Starts a frame: reserves the length and CRC, returns where the frame begins.
std::size_t open_frame(std::string& out, record_kind kind) {
    const std::size_t at = out.size();
    out.append(frame_overhead, '\0');
    put8(out, static_cast<std::uint8_t>(kind));
    return at;
}

void close_frame(std::string& out, std::size_t at) {
    const std::size_t payload = out.size() - at - frame_overhead;
    auto* p = reinterpret_cast<const std::byte*>(out.data() + at + frame_overhead);
    const std::uint32_t crc = crc32({p, payload});
    std::string head;
    put32(head, static_cast<std::uint32_t>(payload));
    put32(head, crc);
    out.replace(at, frame_overhead, head);
}

std::string_view get_string(cdc::byte_reader& r, const char* field) {
    const auto n = r.u32(field);
    return r.chars(n, field);
}

cdc::position get_position(cdc::byte_reader& r) {
    cdc::position p;
    p.commit_lsn.value = r.u64("position lsn");
    p.index = r.u32("position index");
    return p;
}

pgoutput::tuple get_tuple(cdc::byte_reader& r) {
    const auto n = r.u32("tuple width");
    // Every datum takes at least one byte: a larger count is damage, not a reason to allocate.
    if (n > r.remaining()) throw cdc::protocol_error("tuple width " + std::to_string(n));
    pgoutput::tuple t(n);
    for (auto& d : t) {
        const auto kind = r.u8("datum kind");
        if (kind > static_cast<std::uint8_t>(pgoutput::datum_kind::missing)) {
            throw cdc::protocol_error("unknown datum kind " + std::to_string(kind));
        }
        d.kind = static_cast<pgoutput::datum_kind>(kind);
        if (d.kind == pgoutput::datum_kind::text || d.kind == pgoutput::datum_kind::binary) {
            d.data = get_string(r, "datum");
        }
    }
    return t;
}

record decode(cdc::byte_reader& r) {
    const auto kind = static_cast<record_kind>(r.u8("record kind"));
    switch (kind) {
    case record_kind::header: {
        header_record h;
        h.epoch = r.u64("epoch");
        h.sequence = r.u64("sequence");
        h.previous = get_position(r);
        return h;
    }
    case record_kind::relation: {
        auto s = std::make_shared<cdc::relation_schema>();
        s->id = r.u32("relation oid");
        s->schema = std::string(get_string(r, "schema"));
        s->name = std::string(get_string(r, "name"));
        s->qualified_name = s->schema + "." + s->name;
        s->replica_identity = static_cast<char>(r.u8("replica identity"));
        const auto n = r.u32("column count");
        if (n > r.remaining()) throw cdc::protocol_error("column count " + std::to_string(n));
        s->columns.resize(n);
        for (auto& c : s->columns) {
            c.name = std::string(get_string(r, "column name"));
            c.type = r.u32("column type");
            c.type_modifier = r.i32("column type modifier");
            c.key = r.u8("column key") != 0;
        }
        return relation_record{std::move(s)};
    }
    case record_kind::begin: {
        begin_record b;
        b.txn.xid = r.u32("xid");
        b.txn.commit_lsn.value = r.u64("commit lsn");
        b.txn.commit_time = r.i64("commit time");
        return b;
    }
    case record_kind::change: {
        change_record c;
        const auto op = r.u8("op");
        if (op > static_cast<std::uint8_t>(cdc::change_op::truncate)) {
            throw cdc::protocol_error("unknown op " + std::to_string(op));
        }
        c.op = static_cast<cdc::change_op>(op);
        c.relation = r.u32("relation oid");
        c.pos = get_position(r);
        c.old_kind = static_cast<pgoutput::old_kind>(r.u8("old kind"));
        const auto flags = r.u8("flags");
        c.has_row = (flags & 1) != 0;
        c.has_old = (flags & 2) != 0;
        c.truncate_cascade = (flags & 4) != 0;
        c.truncate_restart_identity = (flags & 8) != 0;
        if (c.has_row) c.row = get_tuple(r);
        if (c.has_old) c.old = get_tuple(r);
        return c;
    }
    case record_kind::commit: {
        commit_record c;
        c.commit_lsn.value = r.u64("commit lsn");
        c.end_lsn.value = r.u64("end lsn");
        return c;
    }
    case record_kind::mark:
        return mark_record{cdc::lsn{r.u64("mark lsn")}};
    case record_kind::gap: {
        gap_record g;
        g.table = std::string(get_string(r, "gap table"));
        g.at.value = r.u64("gap lsn");
        return g;
    }
    }
    throw cdc::protocol_error("unknown record kind " + std::to_string(static_cast<int>(kind)));
}

} // namespace

std::uint32_t crc32(std::span<const std::byte> bytes) {
    boost::crc_32_type crc;
    crc.process_bytes(bytes.data(), bytes.size());
    return crc.checksum();
}

void append_header(std::string& out, const header_record& h) {
    const auto at = open_frame(out, record_kind::header);
    put64(out, h.epoch);
    put64(out, h.sequence);
    put_position(out, h.previous);
    close_frame(out, at);
}

void append_relation(std::string& out, const cdc::relation_schema& s) {
    const auto at = open_frame(out, record_kind::relation);
    put32(out, s.id);
    put_string(out, s.schema);
    put_string(out, s.name);
    put8(out, static_cast<std::uint8_t>(s.replica_identity));
    put32(out, static_cast<std::uint32_t>(s.columns.size()));
    for (const auto& c : s.columns) {
        put_string(out, c.name);
        put32(out, c.type);
        put32(out, static_cast<std::uint32_t>(c.type_modifier));
        put8(out, c.key ? 1 : 0);
    }
    close_frame(out, at);
}

void append_begin(std::string& out, const cdc::transaction_info& t) {
    const auto at = open_frame(out, record_kind::begin);
    put32(out, t.xid);
    put64(out, t.commit_lsn.value);
    put64(out, static_cast<std::uint64_t>(t.commit_time));
    close_frame(out, at);
}

void append_change(std::string& out, const cdc::change& c) {
    const auto at = open_frame(out, record_kind::change);
    put8(out, static_cast<std::uint8_t>(c.op));
    put32(out, c.relation ? c.relation->id : 0);
    put_position(out, c.pos);
    put8(out, static_cast<std::uint8_t>(c.old_kind));
    put8(out, static_cast<std::uint8_t>((c.row ? 1 : 0) | (c.old ? 2 : 0) |
                                        (c.truncate_cascade ? 4 : 0) |
                                        (c.truncate_restart_identity ? 8 : 0)));
    if (c.row) put_tuple(out, *c.row);
    if (c.old) put_tuple(out, *c.old);
    close_frame(out, at);
}

void append_commit(std::string& out, cdc::lsn commit_lsn, cdc::lsn end_lsn) {
    const auto at = open_frame(out, record_kind::commit);
    put64(out, commit_lsn.value);
    put64(out, end_lsn.value);
    close_frame(out, at);
}

void append_mark(std::string& out, cdc::lsn lsn) {
    const auto at = open_frame(out, record_kind::mark);
    put64(out, lsn.value);
    close_frame(out, at);
}

void append_gap(std::string& out, std::string_view table, cdc::lsn at) {
    const auto at_frame = open_frame(out, record_kind::gap);
    put_string(out, table);
    put64(out, at.value);
    close_frame(out, at_frame);
}

read_result read_record(std::span<const std::byte> bytes) {
    read_result out;
    if (bytes.size() < frame_overhead) {
        out.status = read_status::incomplete;
        return out;
    }
    cdc::byte_reader head(bytes.first(frame_overhead));
    const std::uint32_t length = head.u32("length");
    const std::uint32_t crc = head.u32("crc");
    if (length == 0 || length > max_payload) {
        out.status = read_status::corrupt;
        return out;
    }
    if (bytes.size() - frame_overhead < length) {
        out.status = read_status::incomplete;
        return out;
    }
    const auto payload = bytes.subspan(frame_overhead, length);
    if (crc32(payload) != crc) {
        out.status = read_status::corrupt;
        return out;
    }
    try {
        cdc::byte_reader r(payload);
        out.value = decode(r);
        r.expect_end("record");
    } catch (const cdc::protocol_error&) {
        out.status = read_status::corrupt;
        return out;
    }
    out.size = frame_overhead + length;
    return out;
}

cdc::change to_change(const change_record& r, std::shared_ptr<const cdc::relation_schema> relation,
                      const cdc::transaction_info* txn) {
    cdc::change c;
    c.op = r.op;
    c.relation = std::move(relation);
    c.row = r.has_row ? &r.row : nullptr;
    c.old = r.has_old ? &r.old : nullptr;
    c.old_kind = r.old_kind;
    c.truncate_cascade = r.truncate_cascade;
    c.truncate_restart_identity = r.truncate_restart_identity;
    c.pos = r.pos;
    c.txn = txn;
    return c;
}

} // namespace pgpush::log
