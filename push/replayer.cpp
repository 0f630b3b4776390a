#include "push/replayer.hpp"

#include <numeric>

#include <spdlog/spdlog.h>

#include "push/schema.hpp"

namespace pgpush::push {

namespace {

rules::change_kind kind_of(cdc::change_op op) {
    return op == cdc::change_op::insert   ? rules::change_kind::insert
           : op == cdc::change_op::update ? rules::change_kind::update
                                          : rules::change_kind::delete_;
}

} // namespace

replayer::result replayer::step(subscription& s, const table_state& table, cdc::position until,
                                std::size_t max_changes, outbox& out) {
    result r;
    bool shape_changed = false;
    bool gap = false;
    log::replay_status status = log::replay_status::gone;
    try {
        status = s.cursor->read(
            until, max_changes,
            [&](const cdc::change& c) {
                if (!shape_changed && !gap) replay_one(s, table, c, out, r, shape_changed);
            },
            [&](std::string_view gap_table) {
                if (gap_table == s.plan.table) gap = true;
            });
    } catch (const std::exception& e) {
        spdlog::error("replaying the change log for subscription {}: {}", *s.id, e.what());
        r.what = outcome::resync;
        r.message = "the change log could not be read back to that position: subscribe again "
                    "without \"after\"";
        return r;
    }
    if (gap) {
        r.what = outcome::resync;
        r.message = "changes of " + s.plan.table +
                    " after that position were not published for a while: subscribe again "
                    "without \"after\"";
        return r;
    }
    if (shape_changed) {
        r.what = outcome::resync;
        r.message = "the table changed shape since that position: subscribe again without "
                    "\"after\"";
        return r;
    }
    switch (status) {
    case log::replay_status::gone:
        r.what = outcome::resync;
        r.message = "the change log dropped the history this resume needed: subscribe again "
                    "without \"after\"";
        break;
    case log::replay_status::more:
        r.what = outcome::more;
        break;
    case log::replay_status::waiting:
        r.what = outcome::waiting;
        break;
    case log::replay_status::reached:
        r.what = outcome::reached;
        break;
    }
    return r;
}

void replayer::replay_one(subscription& s, const table_state& table, const cdc::change& c,
                          outbox& out, result& r, bool& shape_changed) {
    if (c.relation->qualified_name != s.plan.table) return;
    if (c.op == cdc::change_op::truncate) {
        r.opened_batch =
            s.emit(out, batch_, "truncate", events_.truncate_body(c), c.pos, events_.positions()) ||
            r.opened_batch;
        ++r.events;
        ++metrics_.events_replayed;
        return;
    }
    // The plan's column positions are today's; a change logged before the table changed shape
    // cannot be read with them.
    const auto& cols = c.relation->columns;
    bool same = cols.size() == table.schema.columns.size();
    for (std::size_t i = 0; same && i < cols.size(); ++i)
        same = cols[i].name == table.schema.columns[i].name;
    if (!same) {
        shape_changed = true;
        return;
    }
    // A single subscription's filter may read any column: load them all.
    if (all_columns_.size() != cols.size()) {
        all_columns_.resize(cols.size());
        std::iota(all_columns_.begin(), all_columns_.end(), std::size_t{0});
    }
    load_values(c, table.schema, all_columns_, row_, old_);
    const auto event =
        rules::decide(kind_of(c.op), *s.plan.filter, s.plan.updates.get(), row_, old_);
    if (!event) return;
    r.opened_batch = s.emit(out, batch_, event_name(*event),
                            events_.body(c, s.plan.columns, *event), c.pos, events_.positions()) ||
                     r.opened_batch;
    ++r.events;
    ++metrics_.events_replayed;
}

} // namespace pgpush::push
