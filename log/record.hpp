#pragma once

// The records of the change log, and their bytes. Pure: a function from values to bytes and back.
//
// A record on disk is framed as
//
//     u32 payload length | u32 CRC-32 of the payload | payload (first byte: the record kind)
//
// all big-endian, as in Postgres' own protocols. A reader that finds a length running past the end
// of the data, or a CRC that does not match, has found the torn tail of a crash (or damage):
// `read_record` says which, and never reads outside the bytes it is given.
//
// The kinds follow pgoutput's own message sequence, so a segment replays like a stream:
// `header` opens every segment; `relation` describes a table before its first change in the
// segment (and again after ALTER TABLE); `begin` opens a transaction (repeated at the top of a
// segment that starts inside one); `change`; `commit`; `mark` says "nothing before this LSN
// remains to be logged" (heartbeats, so the slot can be confirmed while the tables are idle);
// `gap` says "changes of this table committed before this LSN may be missing from the log" (the
// table was not published for a while), between transactions.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <variant>

#include "cdc/change.hpp"

namespace pgpush::log {

namespace pgoutput = cdc::pgoutput;

inline constexpr std::size_t frame_overhead = 8;     // length + CRC
inline constexpr std::size_t max_payload = 1u << 30; // a longer length is damage, not data

enum class record_kind : std::uint8_t {
    header = 'H',
    relation = 'R',
    begin = 'B',
    change = 'C',
    commit = 'E',
    mark = 'K',
    gap = 'G',
};

// Opens every segment. `previous` is the position of the last change logged before this segment
// (or the log's starting point): a resume from any position at or after it finds no gap.
struct header_record {
    std::uint64_t epoch = 0;
    std::uint64_t sequence = 0;
    cdc::position previous;
};

struct relation_record {
    std::shared_ptr<const cdc::relation_schema> schema;
};

struct begin_record {
    cdc::transaction_info txn;
};

// One change. Its tuples borrow from the bytes it was read from.
struct change_record {
    cdc::change_op op = cdc::change_op::insert;
    cdc::oid relation = 0;
    cdc::position pos;
    pgoutput::old_kind old_kind = pgoutput::old_kind::none;
    bool has_row = false;
    bool has_old = false;
    bool truncate_cascade = false;
    bool truncate_restart_identity = false;
    pgoutput::tuple row;
    pgoutput::tuple old;
};

struct commit_record {
    cdc::lsn commit_lsn;
    cdc::lsn end_lsn; // what the slot may be confirmed to once this is durable
};

struct mark_record {
    cdc::lsn lsn;
};

// Changes of `table` ("schema.name") committed before `at` may be missing: a client resuming
// from a position whose commit LSN is below `at` cannot be served without a possible hole.
struct gap_record {
    std::string table;
    cdc::lsn at;
};

using record = std::variant<header_record, relation_record, begin_record, change_record,
                            commit_record, mark_record, gap_record>;

// Appends one framed record to `out`.
void append_header(std::string& out, const header_record& h);
void append_relation(std::string& out, const cdc::relation_schema& r);
void append_begin(std::string& out, const cdc::transaction_info& t);
void append_change(std::string& out, const cdc::change& c);
void append_commit(std::string& out, cdc::lsn commit_lsn, cdc::lsn end_lsn);
void append_mark(std::string& out, cdc::lsn lsn);
void append_gap(std::string& out, std::string_view table, cdc::lsn at);

enum class read_status {
    ok,
    incomplete, // the data ends inside the frame: a torn tail
    corrupt,    // the CRC does not match, or the payload does not decode
};

struct read_result {
    read_status status = read_status::ok;
    std::size_t size = 0; // bytes the frame takes, when ok
    record value;
};

// Reads the record at the start of `bytes`. The tuples of a change record borrow from `bytes`.
read_result read_record(std::span<const std::byte> bytes);

// Rebuilds the change a change record stands for; `txn` and `relation` must outlive it.
cdc::change to_change(const change_record& r, std::shared_ptr<const cdc::relation_schema> relation,
                      const cdc::transaction_info* txn);

std::uint32_t crc32(std::span<const std::byte> bytes);

} // namespace pgpush::log
