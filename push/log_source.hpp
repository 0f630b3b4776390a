#pragma once

// What the hub needs of the change log: append what the stream hands over (its own thread), and
// read it back for resumes. An interface so the hub's hard paths (replay failures, gaps, a log
// that is behind) can be unit-tested without files; `change_log_source` is the real one.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "cdc/change.hpp"
#include "log/change_log.hpp"

namespace pgpush::push {

class log_cursor {
public:
    virtual ~log_cursor() = default;
    // Calls `on_change` for each change after the last one read (at first: after the start
    // position), up to and including `until`, at most `max_changes` of them, and `on_gap` for
    // each gap in a table's history that lies after the start position. Never blocks: `waiting`
    // when more is appended than written. Throws log::log_error on damage.
    virtual log::replay_status read(cdc::position until, std::size_t max_changes,
                                    const std::function<void(const cdc::change&)>& on_change,
                                    const std::function<void(std::string_view)>& on_gap) = 0;
};

class log_source {
public:
    virtual ~log_source() = default;

    // ---- the appending thread (the hub's) ----
    virtual void begin(const cdc::transaction_info& txn) = 0;
    virtual void change(const cdc::change& c) = 0;
    virtual void commit(const cdc::transaction_info& txn, cdc::lsn end_lsn) = 0;
    virtual void mark(cdc::lsn lsn) = 0;
    // `table`'s changes may be missing from the log before here: resumes from before it that
    // read the table must resync. Between transactions only.
    virtual void gap(const std::string& table, cdc::lsn at) = 0;
    virtual void submit() = 0;

    // ---- reading ----
    virtual std::uint64_t epoch() const = 0;
    virtual log::resume_check check(std::uint64_t epoch, cdc::position after) const = 0;
    virtual std::unique_ptr<log_cursor> open(cdc::position after) = 0;
    // The last position handed to the log: a cursor opened now reaches it.
    virtual cdc::position appended() const = 0;
};

// The real change log.
class change_log_source final : public log_source {
public:
    explicit change_log_source(log::change_log& log) : log_(log) {}

    void begin(const cdc::transaction_info& txn) override { log_.begin(txn); }
    void change(const cdc::change& c) override { log_.change(c); }
    void commit(const cdc::transaction_info& txn, cdc::lsn end_lsn) override {
        log_.commit(txn, end_lsn);
    }
    void mark(cdc::lsn lsn) override { log_.mark(lsn); }
    void gap(const std::string& table, cdc::lsn at) override;
    void submit() override { log_.submit(); }

    std::uint64_t epoch() const override { return log_.epoch(); }
    log::resume_check check(std::uint64_t epoch, cdc::position after) const override {
        return log_.check(epoch, after);
    }
    std::unique_ptr<log_cursor> open(cdc::position after) override;
    cdc::position appended() const override { return log_.last_position(); }

private:
    log::change_log& log_;
};

} // namespace pgpush::push
