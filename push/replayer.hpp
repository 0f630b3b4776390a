#pragma once

// Resuming from the change log: a subscription that asked for `after` reads the log in batches,
// one per turn of the hub's event loop, evaluating its plan on each logged change
// (`rules::decide`, the matcher's rule for one subscription). The log is appended on the hub's
// thread before a change is matched, so "everything logged so far" is exactly "everything the
// stream has handed over": when the replay reaches what was appended, the subscription is live
// from the very next change, with no hand-over window.

#include <cstddef>
#include <string>
#include <vector>

#include "push/event_json.hpp"
#include "push/log_source.hpp"
#include "push/metrics.hpp"
#include "push/outbox.hpp"
#include "push/schema_cache.hpp"
#include "push/subscription.hpp"

namespace pgpush::push {

class replayer {
public:
    replayer(event_json& events, metrics& m, batch_limits batch)
        : events_(events), metrics_(m), batch_(batch) {}

    enum class outcome {
        more,    // read a batch: go on at the next turn
        waiting, // the log has not written what it was handed yet: try again shortly
        reached, // read everything appended: the subscription may go live
        resync,  // the history it needs is gone or unusable: end it with resync_required
    };
    struct result {
        outcome what = outcome::more;
        std::string message;       // for resync: why, for the client
        bool opened_batch = false; // a transaction batch was opened (the hub lists it)
        std::size_t events = 0;    // events sent
    };

    // Reads up to `max_changes` changes of `s`'s table after its position, up to `until`.
    result step(subscription& s, const table_state& table, cdc::position until,
                std::size_t max_changes, outbox& out);

private:
    void replay_one(subscription& s, const table_state& table, const cdc::change& c, outbox& out,
                    result& r, bool& shape_changed);

    event_json& events_;
    metrics& metrics_;
    batch_limits batch_;
    std::vector<std::size_t> all_columns_;
    std::vector<rules::value> row_, old_;
};

} // namespace pgpush::push
