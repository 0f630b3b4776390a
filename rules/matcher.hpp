#pragma once

// Which subscriptions does a change hit, and as what event?
//
// Subscriptions whose filter has an equality or IN conjunct on a column (room_id = 7, room_id IN
// auth.rooms, after binding) are indexed by that column's value: a change costs one hash lookup
// per indexed column plus the filters of the subscriptions it actually hits. The rest are scanned.
//
// UPDATE follows pgoutput's row-filter rule: old and new rows both match -> update; only the new
// one -> insert; only the old one -> delete; neither -> nothing. Without the old row (no REPLICA
// IDENTITY FULL), a matching new row gives an update (clients treat it as an upsert) and a
// non-matching one gives nothing: never a delete the subscriber might not be entitled to.

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "rules/predicate.hpp"
#include "rules/value.hpp"

namespace pgpush::rules {

using subscription_id = std::uint64_t;

enum class event_kind : std::uint8_t { insert, update, delete_ };
enum class change_kind : std::uint8_t { insert, update, delete_ };

struct hit {
    subscription_id id;
    event_kind event;
};

// What one subscription makes of one change, by pgoutput's rule for UPDATE (old and new match:
// update, if `updates` allows; only new: insert; only old: delete; neither: nothing). The
// matcher decides the same for many subscriptions at once; this is the one-at-a-time form
// (replays from the change log).
std::optional<event_kind> decide(change_kind kind, const predicate& filter,
                                 const predicate* updates, std::span<const value> row,
                                 std::span<const value> old);

class matcher {
public:
    matcher();
    ~matcher();
    matcher(const matcher&) = delete;
    matcher& operator=(const matcher&) = delete;

    // Registers a subscription. `filter` (and `updates`, optional) are borrowed and must outlive
    // the registration; `schema` gives the column families index keys are made with.
    void add(subscription_id id, const table_schema& schema, const predicate* filter,
             const predicate* updates = nullptr);
    void remove(subscription_id id);
    std::size_t size() const;

    // Appends the hits of one change to `out`. Rows are values by column position (only the
    // columns_needed() need be filled); `old` is empty when the old row is unknown. Not
    // thread-safe: one matcher per thread.
    void match(std::string_view table, change_kind kind, std::span<const value> row,
               std::span<const value> old, std::vector<hit>& out) const;

    // Every subscription on `table` (TRUNCATE empties all their results).
    void all(std::string_view table, std::vector<subscription_id>& out) const;

    // Column positions some filter on `table` reads; a change's other columns need not be
    // converted to values.
    std::span<const std::size_t> columns_needed(std::string_view table) const;

    struct stats {
        std::size_t indexed = 0; // subscriptions found by an index
        std::size_t scanned = 0; // subscriptions every change of their table evaluates
        std::size_t never = 0;   // filters folded to false/unknown: never hit
    };
    stats statistics() const;

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

} // namespace pgpush::rules
