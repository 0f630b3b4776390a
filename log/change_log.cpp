#include "log/change_log.hpp"

#include <algorithm>
#include <cerrno>
#include <deque>
#include <fcntl.h>
#include <random>
#include <sys/stat.h>
#include <system_error>
#include <unistd.h>

#include <fmt/format.h>

namespace pgpush::log {

namespace fs = std::filesystem;

int log_io::open(const char* path, int flags, mode_t mode) {
    return ::open(path, flags, mode);
}
ssize_t log_io::pread(int fd, void* buf, std::size_t n, off_t offset) {
    return ::pread(fd, buf, n, offset);
}
ssize_t log_io::pwrite(int fd, const void* buf, std::size_t n, off_t offset) {
    return ::pwrite(fd, buf, n, offset);
}
int log_io::fdatasync(int fd) {
    return ::fdatasync(fd);
}
int log_io::fsync(int fd) {
    return ::fsync(fd);
}
int log_io::ftruncate(int fd, off_t size) {
    return ::ftruncate(fd, size);
}
int log_io::close(int fd) {
    return ::close(fd);
}

std::string_view to_string(log_state s) {
    switch (s) {
    case log_state::ok:
        return "ok";
    case log_state::stalled:
        return "stalled";
    case log_state::failed:
        return "failed";
    }
    return "unknown";
}

struct change_log::segment {
    std::uint64_t sequence = 0;
    cdc::position previous;   // from the header
    cdc::position last;       // last change in it (previous when none)
    std::size_t written = 0;  // bytes on disk (readable)
    std::size_t appended = 0; // bytes handed to the writer
    std::vector<index_entry> index;
    // Relations as logged, by the offset of their record: a reader at offset X uses, for each
    // OID, the last one before X.
    std::vector<std::pair<std::size_t, std::shared_ptr<const cdc::relation_schema>>> relations;
    std::chrono::system_clock::time_point last_write = std::chrono::system_clock::now();
    // What recovery had counted before this segment: where cut_back_to starts counting again.
    cdc::lsn covered_before;
    cdc::lsn last_commit_before;
};

namespace {

constexpr std::size_t index_interval = 64 * 1024;

std::string errno_text(int err) {
    return std::system_category().message(err);
}

[[noreturn]] void fail_errno(const std::string& what, const fs::path& p, int err) {
    throw log_error(fmt::format("{} {}: {}", what, p.string(), errno_text(err)));
}

log_io& default_io() {
    static log_io io;
    return io;
}

std::uint64_t new_epoch() {
    std::random_device rd;
    std::uint64_t e = 0;
    while (e == 0)
        e = (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
    return e;
}

std::span<const std::byte> as_bytes(std::string_view s) {
    return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

// Closes a descriptor on every way out of a scope.
class fd_guard {
public:
    fd_guard(log_io& io, int fd) : io_(io), fd_(fd) {}
    ~fd_guard() {
        if (fd_ >= 0) io_.close(fd_);
    }
    fd_guard(const fd_guard&) = delete;
    fd_guard& operator=(const fd_guard&) = delete;
    int get() const { return fd_; }

private:
    log_io& io_;
    int fd_;
};

// Reads up to `n` bytes at `offset`, as many as there are: fewer only at the end of the file.
// -1 (errno set) on an error.
ssize_t pread_full(log_io& io, int fd, char* out, std::size_t n, std::size_t offset) {
    std::size_t done = 0;
    while (done < n) {
        const ssize_t r = io.pread(fd, out + done, n - done, static_cast<off_t>(offset + done));
        if (r < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (r == 0) break;
        done += static_cast<std::size_t>(r);
    }
    return static_cast<ssize_t>(done);
}

std::string read_file(log_io& io, const fs::path& p) {
    const int fd = io.open(p.c_str(), O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0) fail_errno("cannot open", p, errno);
    fd_guard guard(io, fd);
    std::string out;
    for (;;) {
        const std::size_t old = out.size();
        out.resize(old + (1 << 16));
        const ssize_t n = pread_full(io, fd, out.data() + old, 1 << 16, old);
        if (n < 0) fail_errno("cannot read", p, errno);
        out.resize(old + static_cast<std::size_t>(n));
        if (n == 0) break;
    }
    return out;
}

// Cuts a file to `size` bytes and, with `sync`, makes that durable.
void truncate_file(log_io& io, const fs::path& p, std::size_t size, bool sync) {
    const int fd = io.open(p.c_str(), O_WRONLY | O_CLOEXEC, 0);
    if (fd < 0) fail_errno("cannot open", p, errno);
    fd_guard guard(io, fd);
    if (io.ftruncate(fd, static_cast<off_t>(size)) != 0) fail_errno("cannot truncate", p, errno);
    if (sync && io.fsync(fd) != 0) fail_errno("cannot fsync", p, errno);
}

// Whether a failed open is worth trying again later rather than a fault of the log itself.
bool transient(int err) {
    return err == EMFILE || err == ENFILE || err == ENOMEM || err == EAGAIN || err == EINTR;
}

} // namespace

change_log::change_log(log_options options)
    : options_(std::move(options)), io_(options_.io ? *options_.io : default_io()) {
    std::error_code ec;
    fs::create_directories(options_.dir, ec);
    if (ec) {
        throw log_error(fmt::format("cannot create the log directory {}: {}", options_.dir.string(),
                                    ec.message()));
    }
    health_.since = std::chrono::system_clock::now();
    recover();
    writer_ = std::thread([this] { write_loop(); });
}

change_log::~change_log() {
    submit();
    {
        std::lock_guard lock(mu_);
        stopping_ = true;
    }
    work_.notify_all();
    if (writer_.joinable()) writer_.join();
}

fs::path change_log::path_of(std::uint64_t sequence) const {
    return options_.dir / fmt::format("{:016x}.seg", sequence);
}

void change_log::sync_dir_or_throw() const {
    if (!options_.fsync) return;
    const int fd = io_.open(options_.dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    if (fd < 0) fail_errno("cannot open", options_.dir, errno);
    fd_guard guard(io_, fd);
    if (io_.fsync(fd) != 0) fail_errno("cannot fsync", options_.dir, errno);
}

// Reads every segment in order, rebuilding their indexes; cuts a torn or uncommitted tail off
// the last one. The segments must be consecutive, each must open with a valid header of this
// epoch, and each header must start where the segment before ends: a segment missing, emptied or
// replaced in the middle is a hole in history. Damage before the last segment cannot be cut off
// without losing history that the slot no longer has: the log is then set aside and a new epoch
// begins.
void change_log::recover() {
    std::vector<std::uint64_t> sequences;
    for (const auto& entry : fs::directory_iterator(options_.dir)) {
        const auto name = entry.path().filename().string();
        if (name.size() != 20 || name.substr(16) != ".seg") continue;
        const auto hex = name.substr(0, 16);
        if (hex.find_first_not_of("0123456789abcdef") != std::string::npos) continue;
        sequences.push_back(std::stoull(hex, nullptr, 16));
    }
    std::sort(sequences.begin(), sequences.end());

    std::string damage;
    bool removed_a_file = false;
    cdc::position previous_last; // where the segment before ended
    for (std::size_t i = 0; i < sequences.size() && damage.empty(); ++i) {
        const bool last_segment = i + 1 == sequences.size();
        const auto path = path_of(sequences[i]);
        if (i > 0 && sequences[i] != sequences[i - 1] + 1) {
            damage = fmt::format("segment {} is missing: the log goes from {} to {}",
                                 path_of(sequences[i - 1] + 1).string(),
                                 path_of(sequences[i - 1]).filename().string(),
                                 path.filename().string());
            break;
        }
        const std::string bytes = read_file(io_, path);
        auto seg = std::make_unique<segment>();
        seg->sequence = sequences[i];

        const auto head = read_record(as_bytes(bytes));
        if (head.status != read_status::ok) {
            if (last_segment) {
                // A crash after the segment was created, before its header was written whole:
                // a torn tail like any other. Nothing in it was ever reported durable.
                std::error_code ec;
                fs::remove(path, ec);
                if (ec) {
                    throw log_error(
                        fmt::format("cannot remove {}: {}", path.string(), ec.message()));
                }
                recovery_.truncated_bytes += bytes.size();
                removed_a_file = true;
                break;
            }
            damage = fmt::format("segment {} has no valid header ({} bytes)", path.string(),
                                 bytes.size());
            break;
        }
        const auto* h = std::get_if<header_record>(&head.value);
        if (!h || h->sequence != seg->sequence || (i > 0 && h->epoch != epoch_)) {
            damage = fmt::format("a bad segment header at byte 0 of {}", path.string());
            break;
        }
        if (i > 0 && h->previous != previous_last) {
            damage = fmt::format(
                "segment {} does not continue the one before: it starts after {}, the one "
                "before ends at {}",
                path.string(), cdc::to_string(h->previous), cdc::to_string(previous_last));
            break;
        }
        epoch_ = h->epoch;
        seg->previous = seg->last = h->previous;
        if (i == 0) {
            oldest_ = h->previous;
            // Every commit before the log's starting point was logged (and retained away) or
            // came before the log began.
            recovery_.covered = std::max(recovery_.covered, h->previous.commit_lsn);
        }
        seg->covered_before = recovery_.covered;
        seg->last_commit_before = recovery_.last_commit;

        std::size_t at = head.size;
        std::size_t good = at; // end of the last record after which the log is consistent
        cdc::position last_good = seg->last;
        cdc::lsn covered_good = recovery_.covered;
        cdc::lsn last_commit_good = recovery_.last_commit;
        bool in_txn = false;
        std::size_t since_index = index_interval;
        std::string problem;
        std::vector<gap_entry> gaps;
        while (at < bytes.size()) {
            auto r = read_record(as_bytes(std::string_view(bytes).substr(at)));
            if (r.status != read_status::ok) {
                problem =
                    r.status == read_status::incomplete ? "a torn record" : "a damaged record";
                break;
            }
            if (std::holds_alternative<header_record>(r.value)) {
                problem = "a segment header inside a segment";
                break;
            } else if (auto* rel = std::get_if<relation_record>(&r.value)) {
                seg->relations.emplace_back(at, rel->schema);
            } else if (auto* b = std::get_if<begin_record>(&r.value)) {
                if (in_txn) {
                    problem = "a transaction inside a transaction";
                    break;
                }
                in_txn = true;
                if (since_index >= index_interval) {
                    seg->index.push_back({b->txn.commit_lsn, at});
                    since_index = 0;
                }
            } else if (auto* c = std::get_if<change_record>(&r.value)) {
                if (!in_txn) {
                    problem = "a change outside a transaction";
                    break;
                }
                seg->last = c->pos;
            } else if (auto* e = std::get_if<commit_record>(&r.value)) {
                if (!in_txn) {
                    problem = "a commit outside a transaction";
                    break;
                }
                in_txn = false;
                covered_good = std::max(covered_good, e->end_lsn);
                last_commit_good = e->commit_lsn;
            } else if (auto* m = std::get_if<mark_record>(&r.value)) {
                covered_good = std::max(covered_good, m->lsn);
            } else if (auto* g = std::get_if<gap_record>(&r.value)) {
                gaps.push_back({0, seg->sequence, at, g->table, g->at});
            }
            at += r.size;
            since_index += r.size;
            if (!in_txn) {
                good = at;
                last_good = seg->last;
                recovery_.covered = covered_good;
                recovery_.last_commit = last_commit_good;
            }
        }
        if (problem.empty() && in_txn) problem = "a transaction without its commit";
        if (!problem.empty() && !last_segment) {
            damage = fmt::format("{} at byte {} of {}", problem, at, path.string());
            break;
        }
        if (good < bytes.size()) {
            // The tail a crash left: written but never synced, or a transaction cut short.
            // Postgres still has it (the slot was not confirmed past it) and sends it again.
            truncate_file(io_, path, good, options_.fsync);
            recovery_.truncated_bytes += bytes.size() - good;
            seg->last = last_good;
            std::erase_if(seg->index, [&](const index_entry& e) { return e.offset >= good; });
            std::erase_if(seg->relations, [&](const auto& r) { return r.first >= good; });
            std::erase_if(gaps, [&](const gap_entry& g) { return g.offset >= good; });
        }
        seg->written = seg->appended = good;
        if (seg->last != seg->previous) recovery_.last = seg->last;
        previous_last = seg->last;
        for (auto& g : gaps) {
            g.id = next_gap_id_++;
            gaps_.push_back(std::move(g));
        }
        segments_.emplace(seg->sequence, std::move(seg));
    }

    if (!damage.empty()) {
        reset(damage, recovery_.covered);
        return;
    }
    if (removed_a_file) sync_dir_or_throw();
    if (segments_.empty()) {
        epoch_ = new_epoch();
        recovery_.fresh = true;
        recovery_.covered = options_.start;
        last_ = oldest_ = cdc::position{options_.start, 0};
        sequence_ = 0;
        start_segment();
    } else {
        auto& current = *segments_.rbegin()->second;
        sequence_ = current.sequence;
        segment_size_ = current.written;
        last_ = current.last;
        if (!current.index.empty()) last_index_offset_ = current.index.back().offset;
        // Relations are logged again in the next segment; within this one, what is there stands.
        for (const auto& [offset, schema] : current.relations)
            written_relations_[schema->id] = schema;
    }
    recovery_.epoch = epoch_;
}

void change_log::reset(const std::string& why, cdc::lsn start) {
    {
        std::lock_guard lock(mu_);
        if (!segments_.empty() || !queue_.empty()) {
            const std::string base =
                options_.dir.string() + ".damaged-" + std::to_string(std::time(nullptr));
            fs::path aside = base;
            for (int n = 2; fs::exists(aside); ++n)
                aside = base + "-" + std::to_string(n);
            std::error_code ec;
            fs::rename(options_.dir, aside, ec);
            if (ec) {
                throw log_error(fmt::format("cannot move the old log {} aside: {}",
                                            options_.dir.string(), ec.message()));
            }
            fs::create_directories(options_.dir);
        }
        segments_.clear();
        for (const auto& c : queue_)
            bytes_queued_ -= c.bytes.size();
        chunks_done_ += queue_.size();
        queue_.clear();
        gaps_.clear();
        // The writer drops what it still holds for the old directory.
        ++generation_;
    }
    buffer_.clear();
    pending_index_.clear();
    pending_relations_.clear();
    pending_gaps_.clear();
    gaps_after_commit_.clear();
    pending_last_.reset();
    written_relations_.clear();
    open_txn_.reset();
    recovery_ = recovery{};
    recovery_.fresh = true;
    recovery_.damage = why;
    recovery_.covered = start;
    epoch_ = new_epoch();
    recovery_.epoch = epoch_;
    last_ = oldest_ = cdc::position{start, 0};
    sequence_ = 0;
    start_segment();
}

void change_log::cut_back_to(cdc::lsn confirmed) {
    if (appended_) throw std::logic_error("change_log::cut_back_to after an append");
    if (recovery_.fresh) return; // nothing was logged in this epoch yet

    // A point the log may be cut back to: the end of a record in `sequence`.
    struct point {
        std::uint64_t sequence;
        std::size_t offset;
        cdc::position last;
        cdc::lsn covered;
        cdc::lsn last_commit;
    };
    std::optional<point> cut;
    bool beyond = false;                // a commit or mark at or after `confirmed` follows it
    std::vector<gap_record> later_gaps; // gap records after it, in log order
    std::vector<std::uint64_t> sequences;
    {
        std::lock_guard lock(mu_);
        for (const auto& [sequence, seg] : segments_)
            sequences.push_back(sequence);
    }
    // Newest first: the point is almost always in the last segment or the one before.
    for (auto it = sequences.rbegin(); it != sequences.rend() && !cut; ++it) {
        const segment& seg = *segments_.at(*it);
        const auto path = path_of(seg.sequence);
        const std::string bytes = read_file(io_, path).substr(0, seg.written);
        std::optional<point> found;
        bool later = false;
        std::vector<gap_record> gaps_after;
        cdc::position last = seg.previous;
        cdc::lsn covered = seg.covered_before;
        cdc::lsn last_commit = seg.last_commit_before;
        std::size_t at = 0;
        while (at < bytes.size()) {
            auto r = read_record(as_bytes(std::string_view(bytes).substr(at)));
            if (r.status != read_status::ok) {
                throw log_error(fmt::format("damaged record at byte {} of {}", at, path.string()));
            }
            at += r.size;
            bool is_point = false;
            if (std::holds_alternative<header_record>(r.value)) {
                // The log's own beginning: nothing before it was ever logged in this epoch.
                is_point = seg.sequence == 1;
            } else if (auto* c = std::get_if<change_record>(&r.value)) {
                last = c->pos;
            } else if (auto* e = std::get_if<commit_record>(&r.value)) {
                covered = std::max(covered, e->end_lsn);
                last_commit = e->commit_lsn;
                is_point = e->commit_lsn < confirmed;
                later = later || !is_point;
            } else if (auto* m = std::get_if<mark_record>(&r.value)) {
                covered = std::max(covered, m->lsn);
                is_point = m->lsn <= confirmed;
                later = later || !is_point;
            } else if (auto* g = std::get_if<gap_record>(&r.value)) {
                gaps_after.push_back(*g);
            }
            if (is_point) {
                found = point{seg.sequence, at, last, covered, last_commit};
                later = false;
                gaps_after.clear();
            }
        }
        beyond = beyond || later;
        later_gaps.insert(later_gaps.begin(), gaps_after.begin(), gaps_after.end());
        cut = found;
    }
    if (!cut) return;
    const std::uint64_t last_sequence = sequences.back();
    if (cut->sequence == last_sequence && cut->offset == segments_.at(last_sequence)->written) {
        return; // nothing after it
    }

    // Later segments go newest first, so that a crash midway leaves a log that is a prefix of
    // this one; then the segment holding the point is cut there; then the directory is synced.
    std::size_t removed = 0;
    for (auto it = sequences.rbegin(); *it != cut->sequence; ++it) {
        const auto path = path_of(*it);
        std::error_code ec;
        fs::remove(path, ec);
        if (ec) throw log_error(fmt::format("cannot remove {}: {}", path.string(), ec.message()));
        removed += segments_.at(*it)->written;
    }
    segment& seg = *segments_.at(cut->sequence);
    if (cut->offset < seg.written) {
        truncate_file(io_, path_of(seg.sequence), cut->offset, options_.fsync);
        removed += seg.written - cut->offset;
    }
    sync_dir_or_throw();

    {
        std::lock_guard lock(mu_);
        segments_.erase(segments_.upper_bound(cut->sequence), segments_.end());
        seg.written = seg.appended = cut->offset;
        seg.last = cut->last;
        std::erase_if(seg.index, [&](const index_entry& e) { return e.offset >= cut->offset; });
        std::erase_if(seg.relations, [&](const auto& r) { return r.first >= cut->offset; });
        std::erase_if(gaps_, [&](const gap_entry& g) {
            return g.sequence > cut->sequence ||
                   (g.sequence == cut->sequence && g.offset >= cut->offset);
        });
        last_ = cut->last;
    }
    recovery_.truncated_bytes += removed;
    recovery_.last_commit = cut->last_commit;
    // The log held a commit or mark at or after `confirmed`, and a log has no holes: every
    // commit before `confirmed` is at or before the point.
    recovery_.covered = beyond ? std::max(cut->covered, confirmed) : cut->covered;
    recovery_.last = {};
    for (const auto& [sequence, s] : segments_) {
        if (s->last != s->previous) recovery_.last = s->last;
    }
    sequence_ = seg.sequence;
    segment_size_ = seg.written;
    last_index_offset_.reset();
    if (!seg.index.empty()) last_index_offset_ = seg.index.back().offset;
    written_relations_.clear();
    for (const auto& [offset, schema] : seg.relations)
        written_relations_[schema->id] = schema;
    // A gap is not something the slot sends again: it is kept, logged again after the cut.
    for (const auto& g : later_gaps)
        append_gap_now(g.table, g.at);
    submit();
}

// Opens a new segment (appending thread): its header, and nothing of the last one's relations.
void change_log::start_segment() {
    if (!buffer_.empty()) submit();
    ++sequence_;
    written_relations_.clear();
    auto seg = std::make_unique<segment>();
    seg->sequence = sequence_;
    seg->previous = seg->last = last_;
    std::string head;
    append_header(head, {epoch_, sequence_, last_});
    seg->appended = head.size();
    segment_size_ = head.size();
    last_index_offset_.reset();
    {
        std::lock_guard lock(mu_);
        if (segments_.empty()) oldest_ = last_;
        segments_.emplace(sequence_, std::move(seg));
        bytes_queued_ += head.size();
        queue_.push_back({sequence_, 0, true, std::move(head), {}});
        ++chunks_submitted_;
    }
    work_.notify_one();
}

void change_log::begin(const cdc::transaction_info& txn) {
    appended_ = true;
    // Segments roll between transactions only, so a segment never ends inside one.
    if (segment_size_ + buffer_.size() >= options_.segment_bytes) start_segment();
    open_txn_ = txn;
    const std::size_t offset = segment_size_ + buffer_.size();
    append_begin(buffer_, txn);
    if (!last_index_offset_ || offset - *last_index_offset_ >= index_interval) {
        pending_index_.push_back({txn.commit_lsn, offset});
        last_index_offset_ = offset;
    }
}

void change_log::change(const cdc::change& c) {
    appended_ = true;
    if (c.relation) {
        auto& known = written_relations_[c.relation->id];
        if (known != c.relation) {
            const std::size_t offset = segment_size_ + buffer_.size();
            append_relation(buffer_, *c.relation);
            known = c.relation;
            pending_relations_.emplace_back(offset, c.relation);
        }
    }
    append_change(buffer_, c);
    pending_last_ = c.pos;
    // A large transaction is not held in memory: it goes to the writer in pieces.
    if (buffer_.size() >= (1u << 20)) submit();
}

void change_log::commit(const cdc::transaction_info& txn, cdc::lsn end_lsn) {
    appended_ = true;
    append_commit(buffer_, txn.commit_lsn, end_lsn);
    open_txn_.reset();
    pending_durable_ = end_lsn;
    for (const auto& g : gaps_after_commit_)
        append_gap_now(g.table, g.at);
    gaps_after_commit_.clear();
    submit();
}

void change_log::mark(cdc::lsn lsn) {
    appended_ = true;
    if (open_txn_) return; // only between transactions
    append_mark(buffer_, lsn);
    pending_durable_ = std::max(pending_durable_, lsn);
    submit();
}

void change_log::gap(std::string table, cdc::lsn at) {
    appended_ = true;
    if (open_txn_) {
        gaps_after_commit_.push_back({std::move(table), at});
        return;
    }
    append_gap_now(table, at);
    submit();
}

void change_log::append_gap_now(std::string_view table, cdc::lsn at) {
    const std::size_t offset = segment_size_ + buffer_.size();
    append_gap(buffer_, table, at);
    pending_gaps_.push_back({0, sequence_, offset, std::string(table), at});
}

// Hands the buffer to the writer and publishes what it holds to readers (index entries, relations,
// gaps, the last position) under one lock, rather than one per change.
void change_log::submit() {
    if (buffer_.empty()) return;
    const std::size_t offset = segment_size_;
    segment_size_ += buffer_.size();
    {
        std::lock_guard lock(mu_);
        auto& seg = *segments_.at(sequence_);
        seg.appended = segment_size_;
        seg.index.insert(seg.index.end(), pending_index_.begin(), pending_index_.end());
        seg.relations.insert(seg.relations.end(), pending_relations_.begin(),
                             pending_relations_.end());
        for (auto& g : pending_gaps_) {
            g.id = next_gap_id_++;
            gaps_.push_back(std::move(g));
        }
        if (pending_last_) last_ = seg.last = *pending_last_;
        bytes_appended_ += buffer_.size();
        bytes_queued_ += buffer_.size();
        queue_.push_back({sequence_, offset, false, std::move(buffer_), pending_durable_});
        ++chunks_submitted_;
    }
    buffer_.clear();
    pending_durable_ = {};
    pending_index_.clear();
    pending_relations_.clear();
    pending_gaps_.clear();
    pending_last_.reset();
    work_.notify_one();
}

bool change_log::drain() {
    submit();
    std::unique_lock lock(mu_);
    const auto target = chunks_submitted_;
    written_.wait(lock, [&] { return chunks_done_ >= target || health_.state != log_state::ok; });
    return chunks_done_ >= target;
}

cdc::lsn change_log::durable() const {
    std::lock_guard lock(mu_);
    return durable_;
}

void change_log::on_durable(std::function<void(cdc::lsn)> f) {
    std::lock_guard lock(mu_);
    on_durable_ = std::move(f);
}

log_health change_log::health() const {
    std::lock_guard lock(mu_);
    return health_;
}

void change_log::on_health(std::function<void(const log_health&)> f) {
    std::lock_guard lock(mu_);
    on_health_ = std::move(f);
}

std::uint64_t change_log::unwritten_bytes() const {
    std::lock_guard lock(mu_);
    return bytes_queued_ - bytes_written_;
}

// Enters `state` (writer thread). `failed` is for good; within the same state only the reason
// moves, and the callback is not called again.
void change_log::set_health(log_state state, std::string reason) {
    std::function<void(const log_health&)> report;
    log_health now;
    {
        std::lock_guard lock(mu_);
        if (health_.state == log_state::failed) return;
        if (health_.state == state) {
            health_.reason = std::move(reason);
            return;
        }
        health_.state = state;
        health_.reason = std::move(reason);
        health_.since = std::chrono::system_clock::now();
        if (state == log_state::stalled) ++health_.stalls;
        now = health_;
        report = on_health_;
    }
    written_.notify_all();
    if (report) report(now);
}

// The writer thread: write everything queued, sync once, report, repeat. A sync takes as long
// as it takes; what arrives meanwhile shares the next one (group commit).
//
// A failed open or write leaves the chunk it was writing at the front of `pending`, with
// `front_done` bytes of it written: the retry writes the rest at its offset, so the file gets
// every byte once. Nothing written since the last sync is reported durable until a sync covers it.
// A failed sync ends writing for good.
void change_log::write_loop() {
    struct open_file {
        int fd = -1;
        std::uint64_t sequence = 0;
        bool dirty = false; // written since its last sync
    } file;
    std::deque<chunk> pending;
    std::size_t front_done = 0;      // bytes of pending.front() written
    std::size_t unsynced_chunks = 0; // written whole, waiting for a sync
    cdc::lsn unsynced_durable;
    bool dir_dirty = false;     // a segment was created since the directory was last synced
    bool retention_due = false; // a segment rolled
    auto backoff = options_.retry_min;
    bool tried_after_stop = false;
    std::uint64_t generation = 0; // of what this loop holds
    {
        std::lock_guard lock(mu_);
        generation = generation_;
    }
    const auto close_file = [&] {
        // Only ever after a sync, or for a file whose data no longer counts: a close error loses
        // nothing that was reported durable.
        if (file.fd >= 0) io_.close(file.fd);
        file = {};
    };

    for (;;) {
        {
            std::unique_lock lock(mu_);
            if (health_.state == log_state::failed) {
                work_.wait(lock, [&] { return stopping_; });
                break;
            }
            const bool outstanding = !pending.empty() || unsynced_chunks > 0 || dir_dirty;
            if (!outstanding) work_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
            if (generation != generation_) {
                // reset() set the directory aside: what is held for it no longer counts.
                for (const auto& c : pending)
                    bytes_written_ += c.bytes.size();
                bytes_written_ -= front_done;
                chunks_done_ += pending.size() + unsynced_chunks;
                pending.clear();
                front_done = unsynced_chunks = 0;
                unsynced_durable = {};
                dir_dirty = retention_due = false;
                if (file.fd >= 0) io_.close(file.fd);
                file = {};
                generation = generation_;
            }
            for (auto& c : queue_)
                pending.push_back(std::move(c));
            queue_.clear();
            if (stopping_ && pending.empty() && unsynced_chunks == 0 && !dir_dirty) break;
        }

        log_state outcome = log_state::ok;
        std::string reason;
        std::vector<std::pair<std::uint64_t, std::size_t>> progress; // bytes written, by segment
        while (!pending.empty() && outcome == log_state::ok) {
            chunk& c = pending.front();
            if (file.fd < 0 || c.sequence != file.sequence) {
                if (file.fd >= 0 && file.dirty && options_.fsync && io_.fdatasync(file.fd) != 0) {
                    outcome = log_state::failed;
                    reason = fmt::format("fdatasync of {} failed: {}",
                                         path_of(file.sequence).string(), errno_text(errno));
                    break;
                }
                close_file();
                if (c.opens_segment) dir_dirty = retention_due = true;
                const auto path = path_of(c.sequence);
                const int fd = io_.open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
                if (fd < 0) {
                    outcome = log_state::stalled;
                    reason = fmt::format("cannot open {}: {}", path.string(), errno_text(errno));
                    break;
                }
                file = {fd, c.sequence, false};
            }
            while (front_done < c.bytes.size()) {
                const ssize_t n =
                    io_.pwrite(file.fd, c.bytes.data() + front_done, c.bytes.size() - front_done,
                               static_cast<off_t>(c.offset + front_done));
                if (n < 0 && errno == EINTR) continue;
                if (n <= 0) {
                    outcome = log_state::stalled;
                    reason = fmt::format("cannot write {}: {}", path_of(c.sequence).string(),
                                         n < 0 ? errno_text(errno) : "nothing was written");
                    break;
                }
                front_done += static_cast<std::size_t>(n);
                file.dirty = true;
                if (progress.empty() || progress.back().first != c.sequence) {
                    progress.emplace_back(c.sequence, 0);
                }
                progress.back().second += static_cast<std::size_t>(n);
            }
            if (outcome != log_state::ok) break;
            unsynced_durable = std::max(unsynced_durable, c.durable);
            ++unsynced_chunks;
            front_done = 0;
            pending.pop_front();
        }
        // Readers may read what is written before it is synced: what they send on is only ever
        // sent again after a crash, at the same positions (see docs/architecture.md).
        if (!progress.empty()) {
            {
                std::lock_guard lock(mu_);
                if (generation == generation_) {
                    const auto now = std::chrono::system_clock::now();
                    for (auto [sequence, bytes] : progress) {
                        bytes_written_ += bytes;
                        auto it = segments_.find(sequence);
                        if (it != segments_.end()) {
                            it->second->written += bytes;
                            it->second->last_write = now;
                        }
                    }
                }
            }
            written_.notify_all();
        }

        if (outcome == log_state::ok && options_.fsync) {
            if (file.fd >= 0 && file.dirty) {
                if (io_.fdatasync(file.fd) != 0) {
                    outcome = log_state::failed;
                    reason = fmt::format("fdatasync of {} failed: {}",
                                         path_of(file.sequence).string(), errno_text(errno));
                } else {
                    file.dirty = false;
                }
            }
            if (outcome == log_state::ok && dir_dirty) {
                // A new segment's directory entry must be durable before its data is reported.
                const int dfd =
                    io_.open(options_.dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
                if (dfd < 0) {
                    outcome = log_state::stalled;
                    reason =
                        fmt::format("cannot open {}: {}", options_.dir.string(), errno_text(errno));
                } else {
                    const int rc = io_.fsync(dfd);
                    const int err = errno;
                    io_.close(dfd);
                    if (rc != 0) {
                        outcome = log_state::failed;
                        reason = fmt::format("fsync of the directory {} failed: {}",
                                             options_.dir.string(), errno_text(err));
                    } else {
                        dir_dirty = false;
                    }
                }
            }
        } else if (outcome == log_state::ok) {
            file.dirty = false;
            dir_dirty = false;
        }

        if (outcome == log_state::failed) {
            // The kernel may have dropped the pages it could not write and would report the next
            // sync as a success: nothing written from here on can be called durable.
            close_file();
            set_health(log_state::failed, reason + "; the page cache can no longer be trusted");
            continue;
        }
        if (outcome == log_state::stalled) {
            set_health(log_state::stalled, std::move(reason));
            std::unique_lock lock(mu_);
            if (stopping_) {
                if (tried_after_stop) break; // give up: none of it was reported durable
                tried_after_stop = true;
                continue;
            }
            work_.wait_for(lock, backoff, [&] { return stopping_; });
            backoff = std::min(backoff * 2, options_.retry_max);
            continue;
        }

        backoff = options_.retry_min;
        if (options_.sync_delay.count()) std::this_thread::sleep_for(options_.sync_delay);
        if (retention_due) {
            apply_retention();
            retention_due = false;
        }
        std::function<void(cdc::lsn)> report;
        const cdc::lsn durable = unsynced_durable;
        {
            std::lock_guard lock(mu_);
            ++syncs_;
            chunks_done_ += unsynced_chunks;
            if (durable > durable_) durable_ = durable;
            report = on_durable_;
        }
        unsynced_chunks = 0;
        unsynced_durable = {};
        set_health(log_state::ok, {});
        written_.notify_all();
        if (durable.valid() && report) report(durable);
    }
    close_file();
}

// Drops the oldest segments while the log is over its size or age budget (never the current).
void change_log::apply_retention() {
    const auto now = std::chrono::system_clock::now();
    for (;;) {
        fs::path victim;
        {
            std::lock_guard lock(mu_);
            if (segments_.size() < 2) return;
            std::uint64_t total = 0;
            for (const auto& [seq, s] : segments_)
                total += s->written;
            auto& oldest = *segments_.begin()->second;
            const bool too_big = total > options_.retain_bytes;
            const bool too_old = now - oldest.last_write > options_.retain_age;
            if (!too_big && !too_old) return;
            victim = path_of(oldest.sequence);
            const auto sequence = oldest.sequence;
            std::erase_if(gaps_, [&](const gap_entry& g) { return g.sequence <= sequence; });
            segments_.erase(segments_.begin());
            oldest_ = segments_.begin()->second->previous;
        }
        std::error_code ec;
        fs::remove(victim, ec);
    }
}

resume_check change_log::check(std::uint64_t epoch, cdc::position after) const {
    if (epoch != epoch_) return resume_check::other_epoch;
    std::lock_guard lock(mu_);
    if (after < oldest_) return resume_check::too_old;
    return resume_check::ok;
}

std::unique_ptr<log_reader> change_log::open_reader(cdc::position after) {
    return std::unique_ptr<log_reader>(new log_reader(*this, after));
}

cdc::position change_log::last_position() const {
    std::lock_guard lock(mu_);
    return last_;
}

change_log::stats change_log::statistics() const {
    std::lock_guard lock(mu_);
    stats s;
    s.bytes_appended = bytes_appended_;
    s.syncs = syncs_;
    s.segments = segments_.size();
    for (const auto& [seq, seg] : segments_)
        s.bytes_on_disk += seg->written;
    s.unwritten_bytes = bytes_queued_ - bytes_written_;
    s.oldest = oldest_;
    return s;
}

// ---- log_reader ----

void log_reader::report_gaps(const std::function<void(std::string_view table)>& on_gap) {
    std::vector<std::string> tables;
    {
        std::lock_guard lock(log_.mu_);
        for (const auto& g : log_.gaps_) {
            if (g.id >= next_gap_ && g.at > start_.commit_lsn) tables.push_back(g.table);
        }
        next_gap_ = log_.next_gap_id_;
    }
    for (const auto& t : tables)
        on_gap(t);
}

replay_status log_reader::read(cdc::position until, std::size_t max_changes,
                               const std::function<void(const cdc::change&)>& f,
                               const std::function<void(std::string_view table)>& on_gap) {
    if (on_gap) report_gaps(on_gap);
    std::size_t count = 0;
    auto& log = log_;
    auto& io = log.io_;
    // Whether `sequence` is still part of the log (retention may remove it while we read).
    const auto listed = [&](std::uint64_t sequence) {
        std::lock_guard lock(log.mu_);
        return log.segments_.count(sequence) != 0;
    };
    for (;;) {
        if (after_ >= until) return replay_status::reached;
        const cdc::position before = after_;
        // The segment holding the first change after after_, and where in it to start.
        std::uint64_t sequence = 0;
        cdc::position previous;
        std::size_t start = 0;
        std::size_t limit = 0;    // bytes of it written so far: what can be read
        std::size_t appended = 0; // bytes of it handed to the writer
        std::vector<std::pair<std::size_t, std::shared_ptr<const cdc::relation_schema>>> relations;
        {
            std::lock_guard lock(log.mu_);
            if (after_ < log.oldest_) return replay_status::gone;
            const change_log::segment* seg = nullptr;
            for (const auto& [seq, s] : log.segments_) {
                if (s->last > after_) {
                    seg = s.get();
                    break;
                }
            }
            if (!seg) return replay_status::reached; // nothing after after_ yet
            if (seg->previous > after_) {
                throw log_error(fmt::format("the change log has a hole: {} starts after {}, the "
                                            "reader is at {}",
                                            log.path_of(seg->sequence).string(),
                                            cdc::to_string(seg->previous), cdc::to_string(after_)));
            }
            sequence = seg->sequence;
            previous = seg->previous;
            for (const auto& e : seg->index) {
                if (e.commit_lsn > after_.commit_lsn) break;
                start = e.offset;
            }
            limit = seg->written;
            appended = seg->appended;
            relations = seg->relations;
        }
        if (limit <= start) return replay_status::waiting;

        const auto path = log.path_of(sequence);
        const int raw = io.open(path.c_str(), O_RDONLY | O_CLOEXEC, 0);
        if (raw < 0) {
            const int err = errno;
            if (!listed(sequence)) return replay_status::gone; // removed by retention meanwhile
            if (transient(err)) return replay_status::waiting;
            fail_errno("cannot open", path, err);
        }
        fd_guard fd(io, raw);
        // A reader moving to a segment checks that the file is the one the log wrote there: of
        // this epoch, this sequence, and starting where the one before ended.
        {
            std::string head(std::min<std::size_t>(limit, 64), '\0');
            const ssize_t n = pread_full(io, fd.get(), head.data(), head.size(), 0);
            if (n < 0) fail_errno("cannot read", path, errno);
            head.resize(static_cast<std::size_t>(n));
            const auto h = read_record(as_bytes(head));
            if (h.status == read_status::incomplete && n == static_cast<ssize_t>(limit) &&
                limit < appended) {
                return replay_status::waiting; // the header itself is not written whole yet
            }
            const auto* hr =
                h.status == read_status::ok ? std::get_if<header_record>(&h.value) : nullptr;
            if (!hr || hr->epoch != log.epoch_ || hr->sequence != sequence ||
                hr->previous != previous) {
                if (!listed(sequence)) return replay_status::gone;
                throw log_error(fmt::format(
                    "{} does not continue the change log: its header is not the one written "
                    "there (this segment starts after {})",
                    path.string(), cdc::to_string(previous)));
            }
        }

        std::unordered_map<cdc::oid, std::shared_ptr<const cdc::relation_schema>> known;
        for (const auto& [offset, schema] : relations) {
            if (offset < start) known[schema->id] = schema;
        }
        std::string buf;
        std::size_t buf_at = start; // file offset of buf[0]
        std::size_t at = start;
        std::optional<cdc::transaction_info> txn;
        bool done = false; // met a change after `until`
        while (at < limit) {
            auto r = read_record(as_bytes(std::string_view(buf).substr(at - buf_at)));
            if (r.status == read_status::incomplete) {
                if (buf_at + buf.size() >= limit) {
                    // The record runs past what is written: the rest is on its way, unless the
                    // log says it was all written.
                    if (limit < appended) break;
                    throw log_error(
                        fmt::format("damaged record at byte {} of {}", at, path.string()));
                }
                // Read on: keep the unread part and append the next block.
                buf.erase(0, at - buf_at);
                buf_at = at;
                const std::size_t want = std::min<std::size_t>(
                    limit - buf_at - buf.size(), std::max<std::size_t>(1 << 20, buf.size()));
                const std::size_t old = buf.size();
                buf.resize(old + want);
                const ssize_t n = pread_full(io, fd.get(), buf.data() + old, want, buf_at + old);
                if (n < 0) fail_errno("cannot read", path, errno);
                buf.resize(old + static_cast<std::size_t>(n));
                if (static_cast<std::size_t>(n) < want) {
                    if (!listed(sequence)) return replay_status::gone;
                    throw log_error(
                        fmt::format("{} is shorter than the change log wrote it", path.string()));
                }
                continue;
            }
            if (r.status == read_status::corrupt) {
                throw log_error(fmt::format("damaged record at byte {} of {}", at, path.string()));
            }
            if (auto* rel = std::get_if<relation_record>(&r.value)) {
                known[rel->schema->id] = rel->schema;
            } else if (auto* b = std::get_if<begin_record>(&r.value)) {
                txn = b->txn;
            } else if (auto* c = std::get_if<change_record>(&r.value)) {
                if (c->pos > until) {
                    done = true;
                    break;
                }
                if (c->pos > after_ && count == max_changes) return replay_status::more;
                if (c->pos > after_) {
                    auto schema = known.find(c->relation);
                    if (schema == known.end() || !txn) {
                        throw log_error(fmt::format("change at byte {} of {} has no {}", at,
                                                    path.string(),
                                                    txn ? "relation" : "transaction"));
                    }
                    f(to_change(*c, schema->second, &*txn));
                    after_ = c->pos;
                    ++count;
                }
            }
            at += r.size;
        }
        if (done) return replay_status::reached;
        // The segment is read as far as it is written. If that moved us on, look again (the
        // next segment, or more of this one); if not, the next change is not written yet.
        if (after_ == before) {
            if (limit < appended) return replay_status::waiting;
            throw log_error(fmt::format("{} ends before its last change", path.string()));
        }
    }
}

bool log_reader::read_until(cdc::position until, const std::function<void(const cdc::change&)>& f,
                            const std::function<void(std::string_view table)>& on_gap) {
    for (;;) {
        std::uint64_t seen = 0;
        {
            std::lock_guard lock(log_.mu_);
            seen = log_.bytes_written_;
        }
        switch (read(until, SIZE_MAX, f, on_gap)) {
        case replay_status::reached:
            return true;
        case replay_status::gone:
            return false;
        case replay_status::more:
            continue;
        case replay_status::waiting:
            break;
        }
        std::unique_lock lock(log_.mu_);
        // Woken by the writer's progress; the timeout only covers a reader that could not open
        // a file (descriptors exhausted), which no write announces.
        log_.written_.wait_for(lock, std::chrono::milliseconds(100), [&] {
            return log_.bytes_written_ != seen || log_.health_.state == log_state::failed;
        });
        if (log_.bytes_written_ == seen && log_.health_.state == log_state::failed) {
            throw log_error("the change log failed: " + log_.health_.reason);
        }
    }
}

} // namespace pgpush::log
