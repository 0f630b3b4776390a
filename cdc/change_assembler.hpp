#pragma once

#include <functional>
#include <memory>
#include <span>
#include <unordered_map>

#include "cdc/change.hpp"
#include "cdc/pgoutput.hpp"
#include "cdc/type_catalog.hpp"

namespace pgpush::cdc {

// Turns the pgoutput message sequence into changes: keeps the relation cache (a Relation message
// after ALTER TABLE replaces the entry, so later changes use the new columns), numbers the changes
// inside each transaction, fills unchanged TOAST values from a full old tuple, marks the columns
// an old key tuple did not send, and calls the sink. Pure: no I/O except through `need_types`.
class change_assembler {
public:
    // Called with type OIDs a Relation message uses that `types` does not know yet, before the
    // relation is used; production code loads them from pg_type, tests may leave it empty.
    using type_loader = std::function<void(std::span<const oid>)>;

    change_assembler(type_catalog& types, change_sink& sink, type_loader need_types = {});

    // Consumes one decoded message (and may rewrite its tuples in place). Throws protocol_error
    // when the sequence is impossible: a change outside a transaction, an unknown relation, a
    // tuple whose width does not match its relation, a streamed transaction (streaming is off).
    void feed(pgoutput::message_variant& message);

    bool in_transaction() const { return in_txn_; }

    // The connection was lost. An open transaction is abandoned (the server will send it again,
    // from its Begin); everything already handed to the sink is remembered and not handed over
    // twice: whole transactions, the first changes of one cut off mid-way (its Begin is not
    // repeated either; the rest of its changes and its Commit follow), and non-transactional
    // messages.
    void restart();

    // Also drop transactions committing at or before `commit_lsn`, and non-transactional
    // messages at or before it: what the consumer already has from an earlier run.
    void skip_through(lsn commit_lsn);

    const relation_schema* find_relation(oid id) const;

private:
    void on(pgoutput::begin& m);
    void on(pgoutput::commit& m);
    void on(pgoutput::origin&) {}
    void on(pgoutput::relation& m);
    void on(pgoutput::type& m);
    void on(pgoutput::insert& m);
    void on(pgoutput::update& m);
    void on(pgoutput::delete_& m);
    void on(pgoutput::truncate& m);
    void on(pgoutput::message& m);
    [[noreturn]] void on(pgoutput::stream_start&);
    [[noreturn]] void on(pgoutput::stream_stop&);
    [[noreturn]] void on(pgoutput::stream_commit&);
    [[noreturn]] void on(pgoutput::stream_abort&);

    const std::shared_ptr<const relation_schema>& relation_for(oid id, const char* what) const;
    void check_width(const relation_schema& r, const pgoutput::tuple& t, const char* what) const;
    change start_change(change_op op, const std::shared_ptr<const relation_schema>& r,
                        const char* what);
    void deliver(const change& c);

    type_catalog& types_;
    change_sink& sink_;
    type_loader need_types_;
    std::unordered_map<oid, std::shared_ptr<const relation_schema>> relations_;
    // Whether the change at next_index_ of the open transaction goes to the sink.
    bool handing_over() const { return !skip_all_ && next_index_ >= resume_from_index_; }

    transaction_info txn_;
    bool in_txn_ = false;
    std::uint32_t next_index_ = 0;

    // What was handed over already (see restart()).
    lsn done_through_; // whole transactions committing at or before
    lsn partial_lsn_;  // a transaction cut off after partial_next_ changes
    std::uint32_t partial_next_ = 0;
    lsn messages_through_;                // non-transactional messages at or before
    bool skip_all_ = false;               // the open transaction was handed over whole before
    std::uint32_t resume_from_index_ = 0; // the open transaction's first change to hand over
};

} // namespace pgpush::cdc
