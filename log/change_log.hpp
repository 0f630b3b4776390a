#pragma once

// The durable change log: every change pgpush streams, on local disk, so that a client can resume
// after a position and an engine restart loses nothing.
//
// Files: `<dir>/<sequence>.seg`, append-only segments of records (log/record.hpp). One thread
// appends (the CDC thread, through `append_*`); a writer thread owned by the log writes the bytes
// and fdatasyncs them in groups (everything that arrived during one sync goes into the next), then
// reports the LSN that is now durable: the replication slot is confirmed to that and no further.
// Readers (`open_reader`) replay from any position the log still holds, from other threads.
//
// Opening a log recovers it: a torn tail (a crash mid-write) is cut off, and so is a transaction
// whose commit never reached the disk; the slot still has both and sends them again. Damage
// anywhere else, or a log that no longer reaches the slot's confirmed position, means history is
// lost: the caller starts a new epoch (`reset`), and clients holding positions of the old one are
// told to resync.

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "cdc/change.hpp"
#include "log/record.hpp"

namespace pgpush::log {

class log_error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

struct log_options {
    std::filesystem::path dir;
    std::size_t segment_bytes = 64u << 20;
    std::uint64_t retain_bytes = 1ull << 30;
    std::chrono::seconds retain_age{24 * 3600};
    bool fsync = true; // off only in tests and benchmarks of the cost of durability
    // Fault injection for tests: each sync takes at least this long, which widens the window in
    // which a bug that confirms before durability would show.
    std::chrono::milliseconds sync_delay{0};
};

// What opening found.
struct recovery {
    std::uint64_t epoch = 0;
    bool fresh = false; // a new epoch: the directory was empty (or reset)
    std::string damage; // non-empty: why the old log could not be trusted
    std::size_t truncated_bytes = 0;
    cdc::position last;   // the last change logged (zero when none)
    cdc::lsn covered;     // every commit below this LSN is in the log
    cdc::lsn last_commit; // commit LSN of the last transaction logged
};

// Where a resume stands against what the log holds.
enum class resume_check { ok, other_epoch, too_old };

class log_reader;

class change_log {
public:
    // Opens or creates the log in `options.dir` and recovers it. Throws log_error when the
    // directory cannot be used at all. Damaged history is not an error here: see recovery.damage.
    explicit change_log(log_options options);
    ~change_log();
    change_log(const change_log&) = delete;
    change_log& operator=(const change_log&) = delete;

    const recovery& recovered() const { return recovery_; }
    std::uint64_t epoch() const { return epoch_; }

    // Throws the old log away (moved aside to `<dir>.damaged-<time>`) and starts a new epoch
    // whose history begins after `start`. Only before the first append.
    void reset(const std::string& why, cdc::lsn start);

    // ---- The appending thread ----
    void begin(const cdc::transaction_info& txn);
    void change(const cdc::change& c);
    void commit(const cdc::transaction_info& txn, cdc::lsn end_lsn);
    // Nothing below `lsn` remains to be logged (an idle slot may be confirmed to it).
    void mark(cdc::lsn lsn);
    // Hands what is buffered to the writer thread (done by commit/mark and by size anyway).
    void submit();

    // Submits and waits until everything is written, synced and retention applied.
    void drain();
    // The highest LSN reported durable so far.
    cdc::lsn durable() const;

    // Called on the writer thread with each LSN that becomes durable (a commit's end, a mark).
    void on_durable(std::function<void(cdc::lsn)> f);

    // ---- Any thread ----
    // Whether a client holding `after` (of `epoch`) can be resumed without a gap.
    resume_check check(std::uint64_t epoch, cdc::position after) const;
    // A reader of the changes after `after` (which check() accepted).
    std::unique_ptr<log_reader> open_reader(cdc::position after);
    // The last position handed to the writer (what a reader opened now will reach).
    cdc::position last_position() const;

    struct stats {
        std::uint64_t bytes_appended = 0;
        std::uint64_t syncs = 0;
        std::uint64_t segments = 0;
        std::uint64_t bytes_on_disk = 0;
        cdc::position oldest; // resumes from before this are too old
    };
    stats statistics() const;

private:
    friend class log_reader;
    // Where to start reading a segment for a position: a Begin record at `offset` whose
    // transaction commits at `commit_lsn`. One entry per index_interval bytes or so.
    struct index_entry {
        cdc::lsn commit_lsn;
        std::size_t offset;
    };
    struct segment;

    void recover();
    void start_segment();
    void write_loop();
    void apply_retention();
    std::filesystem::path path_of(std::uint64_t sequence) const;
    // The readable extent of a segment: bytes written so far (0 when gone).
    std::size_t readable(std::uint64_t sequence) const;

    log_options options_;
    recovery recovery_;
    std::uint64_t epoch_ = 0;

    // Appending thread only.
    std::string buffer_;
    std::size_t segment_size_ = 0; // bytes in the current segment, including buffer_
    std::uint64_t sequence_ = 0;   // current segment
    std::unordered_map<cdc::oid, std::shared_ptr<const cdc::relation_schema>> written_relations_;
    std::optional<cdc::transaction_info> open_txn_;
    cdc::lsn pending_durable_;
    // What the buffer holds, published to readers by submit().
    std::vector<index_entry> pending_index_;
    std::vector<std::pair<std::size_t, std::shared_ptr<const cdc::relation_schema>>>
        pending_relations_;
    std::optional<cdc::position> pending_last_;
    std::optional<std::size_t> last_index_offset_; // in the current segment

    // Shared with the writer thread and readers.
    mutable std::mutex mu_;
    std::condition_variable work_;
    std::condition_variable written_;
    struct chunk {
        std::uint64_t sequence;
        bool opens_segment;
        std::string bytes;
        cdc::lsn durable; // reported once this chunk is synced (0: nothing to report)
    };
    std::vector<chunk> queue_;
    std::map<std::uint64_t, std::unique_ptr<segment>> segments_;
    cdc::position last_;
    cdc::position oldest_;
    bool stopping_ = false;
    std::function<void(cdc::lsn)> on_durable_;
    std::uint64_t bytes_appended_ = 0;
    std::uint64_t syncs_ = 0;
    std::uint64_t chunks_submitted_ = 0;
    std::uint64_t chunks_done_ = 0;
    cdc::lsn durable_;
    std::thread writer_;
};

enum class replay_status {
    reached, // every change up to `until` has been read
    more,    // stopped at `max_changes`: call again
    gone,    // the history it needed was removed meanwhile (retention): the client must resync
};

// Replays the log's changes after a position, in order, with the relation each was logged with.
class log_reader {
public:
    // Calls `f` for each change after the last one read (at first: after the start position),
    // up to and including `until`, at most `max_changes` of them. Changes up to `until` must
    // have been handed to the log (change_log::submit). Throws log_error on a damaged record.
    replay_status read(cdc::position until, std::size_t max_changes,
                       const std::function<void(const cdc::change&)>& f);

    // All of them: false when gone.
    bool read_until(cdc::position until, const std::function<void(const cdc::change&)>& f) {
        return read(until, SIZE_MAX, f) != replay_status::gone;
    }

    cdc::position position() const { return after_; }

private:
    friend class change_log;
    log_reader(change_log& log, cdc::position after) : log_(log), after_(after) {}
    change_log& log_;
    cdc::position after_;
};

} // namespace pgpush::log
