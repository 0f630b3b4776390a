#include "push/subscription.hpp"

#include "push/protocol.hpp"

namespace pgpush::push {

std::string subscription::shape() const {
    std::string s = plan.filter->to_string();
    for (auto c : plan.columns)
        s += "|" + std::to_string(c);
    if (plan.updates) s += "|" + plan.updates->to_string();
    return s;
}

bool subscription::emit(outbox& out, const batch_limits& limits, std::string_view type,
                        std::shared_ptr<const std::string> body, cdc::position pos,
                        const position_format& positions) {
    if (!transactions) {
        out.send(to, frame{protocol::event_head(type), id, std::move(body)});
        return false;
    }
    // A batch holds shared bodies (made once per projection, as for single events), never more
    // than limits.max_changes of them or about limits.max_bytes: memory stays bounded however
    // large a transaction is, and the client applies a transaction when `last` is true.
    if (!batch.empty()) {
        if (batch.front().pos.commit_lsn != pos.commit_lsn) {
            send_batch(out, true, positions);
        } else if (batch.size() >= limits.max_changes ||
                   batch_bytes + body->size() > limits.max_bytes) {
            send_batch(out, false, positions);
        }
    }
    bool opened = false;
    if (!batch_listed) {
        batch_listed = true;
        opened = true;
    }
    batch_bytes += body->size();
    batch.push_back({type, std::move(body), pos});
    return opened;
}

void subscription::send_batch(outbox& out, bool last, const position_format& positions) {
    if (batch.empty()) return;
    std::vector<protocol::batch_change> changes;
    changes.reserve(batch.size());
    for (const auto& e : batch)
        changes.push_back({e.type, *e.body});
    const cdc::position end = batch.back().pos;
    out.send(to, frame::of(protocol::transaction(*id, changes, last)));
    batch.clear();
    batch_bytes = 0;
    if (!last) {
        // Out at once: the part of a large transaction already made must not pile up here.
        out.flush();
        return;
    }
    if (ready_after_batch) {
        send_ready(out, std::max(*ready_after_batch, end), positions);
        ready_after_batch.reset();
    }
}

void subscription::send_ready(outbox& out, cdc::position at, const position_format& positions) {
    out.send(to, frame::of(protocol::ready(*id, positions.text(at))));
}

bool subscription::buffer_change(frame f, const cdc::transaction_info& txn, std::string_view type,
                                 cdc::position pos, std::size_t limit) {
    buffer_bytes += f.bytes();
    buffer.push_back({std::move(f), txn.xid, txn.commit_lsn, type, pos});
    return buffer_bytes <= limit;
}

std::pair<std::size_t, bool>
subscription::go_live_after_snapshot(outbox& out, const batch_limits& limits,
                                     const cdc::transaction_info* streaming,
                                     const position_format& positions) {
    const std::size_t sent = buffer.size();
    bool opened = false;
    state = phase::live;
    if (transactions) {
        // The buffer is in commit order, so batching it groups it by transaction.
        for (auto& b : buffer)
            opened = emit(out, limits, b.type, std::move(b.f.body), b.pos, positions) || opened;
        buffer.clear();
        buffer_bytes = 0;
        go_live(out, sync_position, streaming, positions);
        return {sent, opened};
    }
    // `ready` stands at the sync message: buffered changes from before it come first, those the
    // stream handed over after it (while the snapshot was still finishing) come after it, so a
    // client resuming after any position it received never gets one twice.
    bool ready_sent = false;
    for (auto& b : buffer) {
        if (!ready_sent && sync_position < b.pos) {
            send_ready(out, sync_position, positions);
            ready_sent = true;
        }
        out.send(to, std::move(b.f));
    }
    if (!ready_sent) send_ready(out, sync_position, positions);
    buffer.clear();
    buffer_bytes = 0;
    return {sent, false};
}

std::pair<std::size_t, bool>
subscription::go_live_after_replay(outbox& out, const batch_limits& limits, cdc::position ready_at,
                                   const cdc::transaction_info* streaming,
                                   const position_format& positions) {
    go_live(out, ready_at, streaming, positions);
    // Everything buffered comes after ready_at (it was routed live after the replay's end was
    // fixed), in commit order.
    const std::size_t sent = buffer.size();
    bool opened = false;
    for (auto& b : buffer) {
        if (transactions) {
            opened = emit(out, limits, b.type, std::move(b.f.body), b.pos, positions) || opened;
        } else {
            out.send(to, std::move(b.f));
        }
    }
    buffer.clear();
    buffer_bytes = 0;
    tailing = false;
    return {sent, opened};
}

void subscription::go_live(outbox& out, cdc::position ready_at,
                           const cdc::transaction_info* streaming,
                           const position_format& positions) {
    state = phase::live;
    if (!transactions || batch.empty()) {
        send_ready(out, ready_at, positions);
        return;
    }
    // `ready` follows the batch, at its end when that is later: changes buffered during a
    // snapshot may have committed after the sync message, and a client resuming after `ready`
    // must not get them again.
    ready_after_batch = ready_at;
    if (streaming && batch.front().pos.commit_lsn == streaming->commit_lsn) return; // rest is live
    send_batch(out, true, positions);
}

} // namespace pgpush::push
