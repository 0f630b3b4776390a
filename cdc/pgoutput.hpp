#pragma once

// The messages of PostgreSQL's logical replication protocol as sent by the pgoutput plugin
// (PostgreSQL docs, "Logical Replication Message Formats", protocol versions 1 and 2).
//
// These are plain data. Strings and byte ranges borrow from the buffer the message was decoded
// from: a decoded message is valid only as long as that buffer.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <variant>
#include <vector>

#include "cdc/lsn.hpp"

namespace pgpush::cdc {

using oid = std::uint32_t;
using transaction_id = std::uint32_t;
// Microseconds since 2000-01-01 00:00:00 UTC (Postgres' TimestampTz on the wire).
using pg_timestamp = std::int64_t;

namespace pgoutput {

// 'B': a transaction starts. final_lsn is the LSN of its commit record, known up front.
struct begin {
    lsn final_lsn;
    pg_timestamp commit_time = 0;
    transaction_id xid = 0;
};

// 'C': the transaction ending at end_lsn committed.
struct commit {
    std::uint8_t flags = 0;
    lsn commit_lsn;
    lsn end_lsn;
    pg_timestamp commit_time = 0;
};

// 'O': the transaction was replicated from another node.
struct origin {
    lsn origin_lsn;
    std::string_view name;
};

struct column {
    std::uint8_t flags = 0; // bit 0: part of the replica identity key
    std::string_view name;
    oid type = 0;
    std::int32_t type_modifier = -1;

    bool is_key() const { return (flags & 1) != 0; }
};

// 'R': the schema of a table, sent before its first change on a connection and again after it
// changes (ALTER TABLE).
struct relation {
    std::optional<transaction_id> stream_xid;
    oid id = 0;
    std::string_view nspname; // empty for pg_catalog
    std::string_view relname;
    char replica_identity = 'd'; // d(efault), n(othing), f(ull), i(ndex)
    std::vector<column> columns;
};

// 'Y': a non-built-in type used by a relation (its OID, schema and name).
struct type {
    std::optional<transaction_id> stream_xid;
    oid id = 0;
    std::string_view nspname;
    std::string_view name;
};

// One column's value in a tuple: null ('n'), an unchanged TOASTed value that was not sent
// ('u'), text output ('t') or binary ('b'); `missing` is pgpush's own mark, see change.hpp.
enum class datum_kind : std::uint8_t {
    null,
    unchanged_toast,
    text,
    binary,
    missing, // never on the wire: change_assembler marks columns an old key tuple did not send
};

struct datum {
    datum_kind kind = datum_kind::null;
    std::string_view data;
};

using tuple = std::vector<datum>;

// What the old tuple of an update or delete holds: nothing, the replica identity key columns
// ('K'; other columns arrive as null and mean "not sent"), or the full row ('O', REPLICA
// IDENTITY FULL).
enum class old_kind : char { none = 0, key = 'K', full = 'O' };

struct insert {
    std::optional<transaction_id> stream_xid;
    oid relation = 0;
    tuple new_tuple;
};

struct update {
    std::optional<transaction_id> stream_xid;
    oid relation = 0;
    old_kind old = old_kind::none;
    tuple old_tuple;
    tuple new_tuple;
};

struct delete_ { // "delete" is a keyword
    std::optional<transaction_id> stream_xid;
    oid relation = 0;
    old_kind old = old_kind::key;
    tuple old_tuple;
};

struct truncate {
    std::optional<transaction_id> stream_xid;
    std::uint8_t options = 0; // bit 0: CASCADE, bit 1: RESTART IDENTITY
    std::vector<oid> relations;

    bool cascade() const { return (options & 1) != 0; }
    bool restart_identity() const { return (options & 2) != 0; }
};

// 'M': pg_logical_emit_message() output (needs the "messages" option).
struct message {
    std::optional<transaction_id> stream_xid;
    bool transactional = false;
    lsn message_lsn;
    std::string_view prefix;
    std::span<const std::byte> content;
};

// Protocol version 2 streams large in-progress transactions in blocks between 'S' and 'E'.
struct stream_start {
    transaction_id xid = 0;
    bool first_segment = false;
};
struct stream_stop {};
struct stream_commit {
    transaction_id xid = 0;
    std::uint8_t flags = 0;
    lsn commit_lsn;
    lsn end_lsn;
    pg_timestamp commit_time = 0;
};
struct stream_abort {
    transaction_id xid = 0;
    transaction_id subxid = 0;
};

using message_variant =
    std::variant<begin, commit, origin, relation, type, insert, update, delete_, truncate, message,
                 stream_start, stream_stop, stream_commit, stream_abort>;

} // namespace pgoutput
} // namespace pgpush::cdc
