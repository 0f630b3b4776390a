#pragma once

// The durable change log: every change pgpush streams, on local disk, so that a client can resume
// after a position and an engine restart loses nothing.
//
// Files: `<dir>/<sequence>.seg`, append-only segments of records (log/record.hpp). One thread
// appends (the CDC thread, through `begin`/`change`/`commit`/`mark`/`gap`); a writer thread owned
// by the log writes the bytes and fdatasyncs them in groups (everything that arrived during one
// sync goes into the next), then reports the LSN that is now durable: the replication slot is
// confirmed to that and no further. Readers (`open_reader`) replay from any position the log still
// holds, from other threads, and never wait for the writer.
//
// Opening a log recovers it: a torn tail (a crash mid-write) is cut off, and so is a transaction
// whose commit never reached the disk; the slot still has both and sends them again. Damage
// anywhere else — a damaged record, a missing or emptied segment, a segment whose header does not
// continue the one before — or a log that no longer reaches the slot's confirmed position, means
// history is lost: the caller starts a new epoch (`reset`), and clients holding positions of the
// old one are told to resync.
//
// Faults. The writer never throws and never reports durability it does not have:
// - a failed open or write (a full disk, no file descriptors, an I/O error) keeps the bytes
//   queued, in order, and retries with backoff from exactly where it stopped; meanwhile the log
//   is `stalled` and the durable LSN does not move. It is `ok` again once a retry succeeds.
// - a failed fdatasync/fsync is permanent, as in PostgreSQL: the kernel may have dropped the
//   dirty pages and a later sync would report success over data that is not on disk. The log is
//   `failed`, the durable LSN never moves again, and the writer stops. The engine stops; on the
//   next start `cut_back_to(slot confirmed LSN)` removes what was never confirmed, and the slot
//   sends it again.

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
#include <string_view>
#include <sys/types.h>
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

// The system calls the log makes on its files. Each returns what the POSIX call returns and sets
// errno as it does. The default makes the real calls; tests derive from it to make calls fail.
class log_io {
public:
    virtual ~log_io() = default;
    virtual int open(const char* path, int flags, mode_t mode);
    virtual ssize_t pread(int fd, void* buf, std::size_t n, off_t offset);
    virtual ssize_t pwrite(int fd, const void* buf, std::size_t n, off_t offset);
    virtual int fdatasync(int fd);
    virtual int fsync(int fd);
    virtual int ftruncate(int fd, off_t size);
    virtual int close(int fd);
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
    // After a failed open or write, the writer retries after retry_min, doubling up to retry_max.
    std::chrono::milliseconds retry_min{100};
    std::chrono::milliseconds retry_max{5000};
    // Every file operation of the writer, recovery and readers goes through this (null: the real
    // system calls).
    std::shared_ptr<log_io> io;
    // A new log's history begins after this LSN: the slot's confirmed position when the log is
    // created. What the slot confirmed before is not expected of it (see cut_back_to, and the
    // caller's check of recovered().covered against the slot).
    cdc::lsn start;
};

// What opening found.
struct recovery {
    std::uint64_t epoch = 0;
    bool fresh = false; // a new epoch: the directory was empty (or reset)
    std::string damage; // non-empty: why the old log could not be trusted
    std::size_t truncated_bytes = 0;
    cdc::position last;   // the last change logged (zero when none)
    cdc::lsn covered;     // every commit below this LSN is in the log (or was, before retention)
    cdc::lsn last_commit; // commit LSN of the last transaction logged
};

// Where a resume stands against what the log holds.
enum class resume_check { ok, other_epoch, too_old };

// The writer's state.
enum class log_state {
    ok,
    stalled, // an open or write failed; retrying (bytes stay queued, nothing more is durable)
    failed,  // a sync failed: nothing more will ever be durable; the engine must stop
};

std::string_view to_string(log_state s);

struct log_health {
    log_state state = log_state::ok;
    std::string reason; // why it is stalled or failed ("cannot write <path>: No space left ...")
    std::chrono::system_clock::time_point since; // when it entered this state
    std::uint64_t stalls = 0;                    // times it has entered `stalled`
};

class log_reader;

class change_log {
public:
    // Opens or creates the log in `options.dir` and recovers it. Throws log_error when the
    // directory cannot be used at all. Damaged history is not an error here: see recovery.damage.
    explicit change_log(log_options options);
    // Writes and syncs what is queued. A writer that is stalled gets one more try, then gives up:
    // what it could not write was never reported durable, so the slot still has it.
    ~change_log();
    change_log(const change_log&) = delete;
    change_log& operator=(const change_log&) = delete;

    const recovery& recovered() const { return recovery_; }
    std::uint64_t epoch() const { return epoch_; }

    // Throws the old log away (moved aside to `<dir>.damaged-<time>`) and starts a new epoch
    // whose history begins after `start`. Only before the first append.
    void reset(const std::string& why, cdc::lsn start);

    // Removes what the slot will send again: everything after the last commit whose commit LSN is
    // below `confirmed` (Postgres resends a transaction whose commit LSN is at or after the
    // confirmed LSN) or mark at or below it. Later segments are deleted, the one holding that
    // point is truncated there, and the directory is synced; recovered() then describes the log
    // as cut (last, covered, last_commit; truncated_bytes counts the bytes removed). Call it at
    // start with the slot's confirmed_flush_lsn, before the first append and before checking
    // recovered().covered against the slot: after a failed sync, data written since the last
    // good one may have lived only in a page cache that can no longer be trusted.
    //
    // The log's own beginning (the header of its first segment, sequence 1) also counts as such a
    // point, so a log that never got anything confirmed is emptied. If the log holds no such
    // point (retention dropped its beginning and everything left is at or after `confirmed`), it
    // is left alone: the slot will send again only what the log already has. If the cut removed
    // a commit or mark at or after `confirmed`, the log provably reached past it, so `covered`
    // becomes at least `confirmed`. Throws log_error when the files cannot be changed, and
    // std::logic_error after an append.
    void cut_back_to(cdc::lsn confirmed);

    // ---- The appending thread ----
    void begin(const cdc::transaction_info& txn);
    void change(const cdc::change& c);
    void commit(const cdc::transaction_info& txn, cdc::lsn end_lsn);
    // Nothing below `lsn` remains to be logged (an idle slot may be confirmed to it).
    void mark(cdc::lsn lsn);
    // Changes of `table` committed before `at` may be missing (it was not published for a while):
    // readers starting before `at` are told (log_reader::read's on_gap). Recorded between
    // transactions: inside one, right after its commit.
    void gap(std::string table, cdc::lsn at);
    // Hands what is buffered to the writer thread (done by commit/mark and by size anyway).
    void submit();

    // Submits and waits until everything is written, synced and retention applied (true), or
    // until the log is stalled or failed (false: see health()). Never waits for a disk to free up.
    bool drain();
    // The highest LSN reported durable so far.
    cdc::lsn durable() const;

    // Called on the writer thread with each LSN that becomes durable (a commit's end, a mark).
    void on_durable(std::function<void(cdc::lsn)> f);

    // ---- Any thread ----
    log_health health() const;
    // Called on the writer thread at each change of state.
    void on_health(std::function<void(const log_health&)> f);
    // Bytes handed to the writer and not yet written: the engine pauses its stream above a
    // threshold rather than let a stalled disk grow memory without bound.
    std::uint64_t unwritten_bytes() const;

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
        std::uint64_t unwritten_bytes = 0;
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
    struct gap_entry {
        std::uint64_t id; // order of arrival, for readers to report each once
        std::uint64_t sequence;
        std::size_t offset;
        std::string table;
        cdc::lsn at;
    };
    // Bytes for the writer: `bytes` go at `offset` of segment `sequence`.
    struct chunk {
        std::uint64_t sequence;
        std::size_t offset;
        bool opens_segment;
        std::string bytes;
        cdc::lsn durable; // reported once this chunk is synced (0: nothing to report)
    };
    void recover();
    void start_segment();
    void append_gap_now(std::string_view table, cdc::lsn at);
    void write_loop();
    void set_health(log_state state, std::string reason);
    void apply_retention();
    std::filesystem::path path_of(std::uint64_t sequence) const;
    void sync_dir_or_throw() const;

    log_options options_;
    log_io& io_;
    recovery recovery_;
    std::uint64_t epoch_ = 0;

    // Appending thread only.
    std::string buffer_;
    std::size_t segment_size_ = 0; // bytes in the current segment, including buffer_
    std::uint64_t sequence_ = 0;   // current segment
    std::unordered_map<cdc::oid, std::shared_ptr<const cdc::relation_schema>> written_relations_;
    std::optional<cdc::transaction_info> open_txn_;
    cdc::lsn pending_durable_;
    bool appended_ = false; // anything appended since opening (cut_back_to comes before)
    // What the buffer holds, published to readers by submit().
    std::vector<index_entry> pending_index_;
    std::vector<std::pair<std::size_t, std::shared_ptr<const cdc::relation_schema>>>
        pending_relations_;
    std::vector<gap_entry> pending_gaps_;
    std::vector<gap_record> gaps_after_commit_; // gap() inside a transaction
    std::optional<cdc::position> pending_last_;
    std::optional<std::size_t> last_index_offset_; // in the current segment

    // Shared with the writer thread and readers.
    mutable std::mutex mu_;
    std::condition_variable work_;
    std::condition_variable written_; // bytes written, a sync done, or the state changed
    std::vector<chunk> queue_;
    std::map<std::uint64_t, std::unique_ptr<segment>> segments_;
    std::vector<gap_entry> gaps_;
    std::uint64_t next_gap_id_ = 0;
    cdc::position last_;
    cdc::position oldest_;
    std::uint64_t generation_ = 0; // of the directory: reset() starts a new one
    bool stopping_ = false;
    std::function<void(cdc::lsn)> on_durable_;
    std::function<void(const log_health&)> on_health_;
    log_health health_;
    std::uint64_t bytes_appended_ = 0;
    std::uint64_t bytes_queued_ = 0;  // handed to the writer, headers included
    std::uint64_t bytes_written_ = 0; // of those, written
    std::uint64_t syncs_ = 0;
    std::uint64_t chunks_submitted_ = 0;
    std::uint64_t chunks_done_ = 0; // written and synced
    cdc::lsn durable_;
    std::thread writer_;
};

enum class replay_status {
    reached, // every change up to `until` has been read
    more,    // stopped at `max_changes`: call again
    gone,    // the history it needed was removed meanwhile (retention): the client must resync
    waiting, // the next change is handed to the log but not yet written (or the file cannot be
             // opened right now): call again later
};

// Replays the log's changes after a position, in order, with the relation each was logged with.
class log_reader {
public:
    // Calls `f` for each change after the last one read (at first: after the start position),
    // up to and including `until`, at most `max_changes` of them. Changes up to `until` must
    // have been handed to the log (change_log::submit). Never waits for the writer: what is
    // handed over but not yet written gives `waiting`.
    //
    // `on_gap` is called, before any change of the same call, once for each gap record
    // (change_log::gap) the log holds whose LSN is after the start position's commit LSN, those
    // logged while the reader reads included: a client resuming from that position may have
    // missed changes of that table.
    //
    // Throws log_error on a damaged record, or on a segment that is missing, shorter than the log
    // wrote it, or does not continue the one before (the client must resync).
    replay_status read(cdc::position until, std::size_t max_changes,
                       const std::function<void(const cdc::change&)>& f,
                       const std::function<void(std::string_view table)>& on_gap = {});

    // All of them: false when gone. Unlike read(), this blocks while the writer has not written
    // what it needs (for tests and tools, never an event loop); throws log_error if the log
    // fails meanwhile.
    bool read_until(cdc::position until, const std::function<void(const cdc::change&)>& f,
                    const std::function<void(std::string_view table)>& on_gap = {});

    cdc::position position() const { return after_; }

private:
    friend class change_log;
    log_reader(change_log& log, cdc::position after) : log_(log), start_(after), after_(after) {}
    void report_gaps(const std::function<void(std::string_view table)>& on_gap);
    change_log& log_;
    cdc::position start_;
    cdc::position after_;
    std::uint64_t next_gap_ = 0; // gaps with a lower id were considered
};

} // namespace pgpush::log
