#include "cdc/change_assembler.hpp"

#include <limits>
#include <string>
#include <variant>

#include "cdc/byte_reader.hpp"

namespace pgpush::cdc {

std::string_view to_string(change_op op) {
    switch (op) {
    case change_op::insert:
        return "insert";
    case change_op::update:
        return "update";
    case change_op::delete_:
        return "delete";
    case change_op::truncate:
        return "truncate";
    }
    return "unknown";
}

change_assembler::change_assembler(type_catalog& types, change_sink& sink, type_loader need_types)
    : types_(types), sink_(sink), need_types_(std::move(need_types)) {}

void change_assembler::feed(pgoutput::message_variant& message) {
    std::visit([this](auto& m) { on(m); }, message);
}

const relation_schema* change_assembler::find_relation(oid id) const {
    auto it = relations_.find(id);
    return it == relations_.end() ? nullptr : it->second.get();
}

void change_assembler::restart() {
    if (in_txn_ && !skip_all_) {
        partial_lsn_ = txn_.commit_lsn;
        partial_next_ = next_index_;
    }
    in_txn_ = false;
}

void change_assembler::skip_through(lsn commit_lsn) {
    if (commit_lsn > done_through_) done_through_ = commit_lsn;
    if (commit_lsn > messages_through_) messages_through_ = commit_lsn;
}

void change_assembler::on(pgoutput::begin& m) {
    if (in_txn_) {
        throw protocol_error("Begin for xid " + std::to_string(m.xid) + " inside transaction " +
                             std::to_string(txn_.xid));
    }
    txn_ = transaction_info{m.xid, m.final_lsn, m.commit_time};
    in_txn_ = true;
    next_index_ = 0;
    skip_all_ = done_through_.valid() && m.final_lsn <= done_through_;
    const bool resuming = !skip_all_ && partial_lsn_.valid() && m.final_lsn == partial_lsn_;
    resume_from_index_ = resuming ? partial_next_ : 0;
    if (!skip_all_ && !resuming) sink_.on_begin(txn_);
}

void change_assembler::on(pgoutput::commit& m) {
    if (!in_txn_) throw protocol_error("Commit outside a transaction");
    if (m.commit_lsn != txn_.commit_lsn) {
        throw protocol_error("Commit at " + to_string(m.commit_lsn) +
                             " for a transaction begun at " + to_string(txn_.commit_lsn));
    }
    in_txn_ = false;
    if (skip_all_) return;
    sink_.on_commit(txn_, m.end_lsn);
    done_through_ = txn_.commit_lsn;
    partial_lsn_ = {};
    partial_next_ = 0;
}

void change_assembler::on(pgoutput::relation& m) {
    auto r = std::make_shared<relation_schema>();
    r->id = m.id;
    // pgoutput leaves the namespace empty for pg_catalog.
    r->schema = m.nspname.empty() ? "pg_catalog" : std::string(m.nspname);
    r->name = std::string(m.relname);
    r->qualified_name = r->schema + "." + r->name;
    r->replica_identity = m.replica_identity;
    r->columns.reserve(m.columns.size());
    std::vector<oid> missing;
    for (const auto& c : m.columns) {
        r->columns.push_back({std::string(c.name), c.type, c.type_modifier, c.is_key()});
        for (oid t : types_.missing(c.type))
            missing.push_back(t);
    }
    if (!missing.empty() && need_types_) need_types_(missing);
    relations_[m.id] = r;
    sink_.on_relation(*r);
}

void change_assembler::on(pgoutput::type& m) {
    // A Type message means the type is (re)described on this connection: it may have changed
    // (ALTER TYPE ... ADD VALUE / ADD ATTRIBUTE), so fetch it afresh.
    types_.forget(m.id);
    if (need_types_) {
        oid id = m.id;
        auto missing = types_.missing(id);
        if (!missing.empty()) need_types_(missing);
    }
}

const std::shared_ptr<const relation_schema>&
change_assembler::relation_for(oid id, const char* what) const {
    auto it = relations_.find(id);
    if (it == relations_.end()) {
        throw protocol_error(std::string(what) + " for relation " + std::to_string(id) +
                             " before its Relation message");
    }
    return it->second;
}

void change_assembler::check_width(const relation_schema& r, const pgoutput::tuple& t,
                                   const char* what) const {
    if (t.size() != r.columns.size()) {
        throw protocol_error(std::string(what) + " for " + r.qualified_name + " has " +
                             std::to_string(t.size()) + " columns, its relation has " +
                             std::to_string(r.columns.size()));
    }
}

void change_assembler::deliver(const change& c) {
    // start_change() already took the index; compare with the one this change got.
    if (!skip_all_ && c.pos.index >= resume_from_index_) sink_.on_change(c);
}

change change_assembler::start_change(change_op op, const std::shared_ptr<const relation_schema>& r,
                                      const char* what) {
    if (!in_txn_) throw protocol_error(std::string(what) + " outside a transaction");
    change c;
    c.op = op;
    c.relation = r;
    c.pos = position{txn_.commit_lsn, next_index_++};
    c.txn = &txn_;
    return c;
}

namespace {

// In a 'K' old tuple Postgres sends the key columns and nulls for the rest; those nulls mean
// "not sent", not NULL.
void mark_unsent_columns(const relation_schema& r, pgoutput::tuple& old) {
    for (std::size_t i = 0; i < old.size(); ++i) {
        if (!r.columns[i].key) old[i] = {pgoutput::datum_kind::missing, {}};
    }
}

} // namespace

void change_assembler::on(pgoutput::insert& m) {
    const auto& r = relation_for(m.relation, "Insert");
    check_width(*r, m.new_tuple, "Insert");
    change c = start_change(change_op::insert, r, "Insert");
    c.row = &m.new_tuple;
    deliver(c);
}

void change_assembler::on(pgoutput::update& m) {
    const auto& r = relation_for(m.relation, "Update");
    check_width(*r, m.new_tuple, "Update");
    if (m.old != pgoutput::old_kind::none) check_width(*r, m.old_tuple, "Update old tuple");
    if (m.old == pgoutput::old_kind::key) mark_unsent_columns(*r, m.old_tuple);
    if (m.old == pgoutput::old_kind::full) {
        // REPLICA IDENTITY FULL logs the old row with TOASTed values flattened, so an unchanged
        // TOASTed column's value is right there.
        for (std::size_t i = 0; i < m.new_tuple.size(); ++i) {
            auto& d = m.new_tuple[i];
            const auto& o = m.old_tuple[i];
            if (d.kind == pgoutput::datum_kind::unchanged_toast &&
                (o.kind == pgoutput::datum_kind::text || o.kind == pgoutput::datum_kind::binary)) {
                d = o;
            }
        }
    }
    change c = start_change(change_op::update, r, "Update");
    c.row = &m.new_tuple;
    if (m.old != pgoutput::old_kind::none) {
        c.old = &m.old_tuple;
        c.old_kind = m.old;
    }
    deliver(c);
}

void change_assembler::on(pgoutput::delete_& m) {
    const auto& r = relation_for(m.relation, "Delete");
    check_width(*r, m.old_tuple, "Delete");
    if (m.old == pgoutput::old_kind::key) mark_unsent_columns(*r, m.old_tuple);
    change c = start_change(change_op::delete_, r, "Delete");
    c.old = &m.old_tuple;
    c.old_kind = m.old;
    deliver(c);
}

void change_assembler::on(pgoutput::truncate& m) {
    // Resolve every relation first: a Truncate naming an unknown one is rejected whole, not
    // after part of it was handed over.
    std::vector<const std::shared_ptr<const relation_schema>*> targets;
    targets.reserve(m.relations.size());
    for (oid id : m.relations)
        targets.push_back(&relation_for(id, "Truncate"));
    for (const auto* r : targets) {
        change c = start_change(change_op::truncate, *r, "Truncate");
        c.truncate_cascade = m.cascade();
        c.truncate_restart_identity = m.restart_identity();
        deliver(c);
    }
}

void change_assembler::on(pgoutput::message& m) {
    logical_message lm;
    lm.transactional = m.transactional;
    lm.prefix = m.prefix;
    lm.content = m.content;
    if (m.transactional) {
        if (!in_txn_) throw protocol_error("transactional Message outside a transaction");
        const bool hand_over = handing_over();
        lm.pos = position{txn_.commit_lsn, next_index_++};
        lm.txn = &txn_;
        if (hand_over) sink_.on_message(lm);
        return;
    }
    // pgoutput gives a non-transactional message the LSN where its record ends, which is where
    // the next record (possibly the next transaction's commit) begins: a position of
    // (message_lsn, 0) would equal that transaction's first change. Just below it, the message
    // sorts after every transaction committed before it and before every one committed after.
    lm.pos = m.message_lsn.valid()
                 ? position{lsn{m.message_lsn.value - 1}, std::numeric_limits<std::uint32_t>::max()}
                 : position{};
    if (messages_through_.valid() && m.message_lsn <= messages_through_) return;
    messages_through_ = m.message_lsn;
    sink_.on_message(lm);
}

void change_assembler::on(pgoutput::stream_start&) {
    throw protocol_error(
        "Stream Start received, but pgpush does not ask for streamed transactions");
}
void change_assembler::on(pgoutput::stream_stop&) {
    throw protocol_error("Stream Stop received, but pgpush does not ask for streamed transactions");
}
void change_assembler::on(pgoutput::stream_commit&) {
    throw protocol_error(
        "Stream Commit received, but pgpush does not ask for streamed transactions");
}
void change_assembler::on(pgoutput::stream_abort&) {
    throw protocol_error(
        "Stream Abort received, but pgpush does not ask for streamed transactions");
}

} // namespace pgpush::cdc
