#pragma once

#include "cdc/lsn.hpp"

namespace pgpush::cdc {

// The positions a replication client reports back (pg_recvlogical keeps the same apart):
//  - received: how far the server has sent us WAL; reported as "written".
//  - flushed: how far the consumer has made the stream durable; reported as "flushed", which for
//    a logical slot becomes confirmed_flush_lsn, the point Postgres is free to forget.
// flushed moves only by confirm(), or (when `follow_keepalives`) while nothing is outstanding,
// with the server's send position from keepalives, so an idle slot does not pin WAL. A consumer
// that must record every point it confirms (a durable log) turns that off and confirms the
// positions of heartbeat messages instead.
class feedback {
public:
    // Restart point: what the slot (or the consumer) already has.
    explicit feedback(lsn start = {}, bool follow_keepalives = true)
        : received_(start), flushed_(start), handed_over_(start),
          follow_keepalives_(follow_keepalives) {}

    lsn received() const { return received_; }
    lsn flushed() const { return flushed_; }

    void on_data(lsn wal_end) {
        if (wal_end > received_) received_ = wal_end;
    }

    // A committed transaction ending at end_lsn was handed to the consumer.
    void on_commit_handed_over(lsn end_lsn) {
        if (end_lsn > handed_over_) handed_over_ = end_lsn;
        on_data(end_lsn);
    }

    // The consumer has made everything up to `l` durable. Never moves backwards, and never past
    // what was handed over: confirming what we never delivered would lose it.
    void confirm(lsn l) {
        if (l > handed_over_) l = handed_over_;
        if (l > flushed_) flushed_ = l;
    }

    // The server has sent everything up to wal_end. If no transaction is open and the consumer
    // has confirmed all it was handed, nothing before wal_end can still reach it: follow.
    void on_keepalive(lsn wal_end, bool in_transaction) {
        on_data(wal_end);
        if (follow_keepalives_ && !in_transaction && flushed_ >= handed_over_ &&
            wal_end > flushed_) {
            flushed_ = wal_end;
            handed_over_ = wal_end;
        }
    }

private:
    lsn received_;
    lsn flushed_;
    lsn handed_over_;
    bool follow_keepalives_;
};

} // namespace pgpush::cdc
