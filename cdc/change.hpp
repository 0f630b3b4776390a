#pragma once

// The typed change: what cdc/ hands to the rest of pgpush for every row a transaction touched.

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "cdc/pgoutput.hpp"
#include "cdc/position.hpp"

namespace pgpush::cdc {

struct column_schema {
    std::string name;
    oid type = 0;
    std::int32_t type_modifier = -1;
    bool key = false; // part of the replica identity
};

// A table's shape as the last Relation message described it. Immutable once built: a schema
// change brings a new one, and changes in flight keep the one they were decoded with.
struct relation_schema {
    oid id = 0;
    std::string schema;
    std::string name;
    std::string qualified_name; // "schema.name"
    char replica_identity = 'd';
    std::vector<column_schema> columns;
};

enum class change_op : std::uint8_t { insert, update, delete_, truncate };

std::string_view to_string(change_op op);

struct transaction_info {
    transaction_id xid = 0;
    lsn commit_lsn;
    pg_timestamp commit_time = 0;
};

// One row change (or one table's truncate) inside a committed transaction.
//
// Rows are tuples of datums in the relation's column order. A datum is null, text, binary,
// unchanged_toast (a TOASTed value the update did not touch and Postgres did not send; filled in
// from the old row whenever that row has it) or missing (not sent: a column outside the replica
// identity in an old key tuple). The tuples borrow from the message buffer: copy what you keep.
struct change {
    change_op op = change_op::insert;
    std::shared_ptr<const relation_schema> relation;
    const pgoutput::tuple* row = nullptr; // new row: insert and update
    const pgoutput::tuple* old = nullptr; // old row or key: update (when sent) and delete
    pgoutput::old_kind old_kind = pgoutput::old_kind::none;
    bool truncate_cascade = false;
    bool truncate_restart_identity = false;
    position pos;
    const transaction_info* txn = nullptr;
};

// A pg_logical_emit_message() message. Transactional ones belong to a transaction and sit at a
// position inside it; others are delivered as they are written, at their own LSN.
struct logical_message {
    bool transactional = false;
    std::string_view prefix;
    std::span<const std::byte> content;
    position pos;
    const transaction_info* txn = nullptr; // nullptr when not transactional
};

// Receives the changes of committed transactions in commit order, as they stream.
class change_sink {
public:
    virtual ~change_sink() = default;
    virtual void on_begin(const transaction_info&) {}
    virtual void on_change(const change& c) = 0;
    virtual void on_message(const logical_message&) {}
    // end_lsn: the position to confirm once this transaction is durable on the consumer's side.
    virtual void on_commit(const transaction_info&, lsn /*end_lsn*/) {}
    virtual void on_relation(const relation_schema&) {}
    // Everything the server has sent so far has been handed over: a good moment to flush output
    // and confirm. Not called while data keeps arriving; sinks that buffer also flush by size.
    virtual void on_idle() {}
    // The stream is stopping on purpose: make durable and confirm what you can, now (the final
    // status update follows).
    virtual void on_stop() { on_idle(); }
};

} // namespace pgpush::cdc
