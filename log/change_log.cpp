#include "log/change_log.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <random>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

namespace pgpush::log {

namespace fs = std::filesystem;

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
};

namespace {

constexpr std::size_t index_interval = 64 * 1024;

[[noreturn]] void fail_errno(const std::string& what, const fs::path& p) {
    throw log_error(fmt::format("{} {}: {}", what, p.string(), std::strerror(errno)));
}

std::uint64_t new_epoch() {
    std::random_device rd;
    std::uint64_t e = 0;
    while (e == 0)
        e = (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
    return e;
}

std::string read_all(const fs::path& p) {
    const int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail_errno("cannot open", p);
    std::string out;
    char buf[1 << 16];
    for (;;) {
        const ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR) continue;
            ::close(fd);
            fail_errno("cannot read", p);
        }
        if (n == 0) break;
        out.append(buf, static_cast<std::size_t>(n));
    }
    ::close(fd);
    return out;
}

void write_all(int fd, const std::string& bytes, const fs::path& p) {
    std::size_t done = 0;
    while (done < bytes.size()) {
        const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
        if (n < 0) {
            if (errno == EINTR) continue;
            fail_errno("cannot write", p);
        }
        done += static_cast<std::size_t>(n);
    }
}

void sync_dir(const fs::path& dir) {
    const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) fail_errno("cannot open", dir);
    ::fsync(fd);
    ::close(fd);
}

std::span<const std::byte> as_bytes(std::string_view s) {
    return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

} // namespace

change_log::change_log(log_options options) : options_(std::move(options)) {
    std::error_code ec;
    fs::create_directories(options_.dir, ec);
    if (ec) {
        throw log_error(fmt::format("cannot create the log directory {}: {}", options_.dir.string(),
                                    ec.message()));
    }
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

// Reads every segment in order, rebuilding their indexes; cuts a torn or uncommitted tail off
// the last one. Damage before the last segment cannot be cut off without losing history that
// the slot no longer has: the log is then set aside and a new epoch begins.
void change_log::recover() {
    std::vector<std::uint64_t> sequences;
    for (const auto& entry : fs::directory_iterator(options_.dir)) {
        const auto name = entry.path().filename().string();
        if (name.size() != 20 || name.substr(16) != ".seg") continue;
        sequences.push_back(std::stoull(name.substr(0, 16), nullptr, 16));
    }
    std::sort(sequences.begin(), sequences.end());

    std::string damage;
    for (std::size_t i = 0; i < sequences.size() && damage.empty(); ++i) {
        const bool last_segment = i + 1 == sequences.size();
        const auto path = path_of(sequences[i]);
        const std::string bytes = read_all(path);
        auto seg = std::make_unique<segment>();
        seg->sequence = sequences[i];
        std::size_t at = 0;
        std::size_t good = 0; // end of the last record after which the log is consistent
        cdc::position last_good;
        cdc::lsn covered_good = recovery_.covered;
        cdc::lsn last_commit_good = recovery_.last_commit;
        bool in_txn = false;
        std::size_t since_index = index_interval;
        std::string problem;
        while (at < bytes.size()) {
            auto r = read_record(as_bytes(std::string_view(bytes).substr(at)));
            if (r.status != read_status::ok) {
                problem =
                    r.status == read_status::incomplete ? "a torn record" : "a damaged record";
                break;
            }
            if (at == 0) {
                auto* h = std::get_if<header_record>(&r.value);
                if (!h || h->sequence != seg->sequence || (epoch_ != 0 && h->epoch != epoch_)) {
                    problem = "a bad segment header";
                    break;
                }
                epoch_ = h->epoch;
                seg->previous = h->previous;
                seg->last = h->previous;
                if (i == 0) oldest_ = h->previous;
                if (last_good == cdc::position{}) last_good = h->previous;
            } else if (auto* rel = std::get_if<relation_record>(&r.value)) {
                seg->relations.emplace_back(at, rel->schema);
            } else if (auto* b = std::get_if<begin_record>(&r.value)) {
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
                in_txn = false;
                covered_good = std::max(covered_good, e->end_lsn);
                last_commit_good = e->commit_lsn;
            } else if (auto* m = std::get_if<mark_record>(&r.value)) {
                covered_good = std::max(covered_good, m->lsn);
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
        if (!problem.empty() && (!last_segment || good == 0)) {
            damage = fmt::format("{} at byte {} of {}", problem, at, path.string());
            break;
        }
        if (good < bytes.size()) {
            // The tail a crash left: written but never synced, or a transaction cut short.
            // Postgres still has it (the slot was not confirmed past it) and sends it again.
            if (::truncate(path.c_str(), static_cast<off_t>(good)) != 0) {
                fail_errno("cannot truncate", path);
            }
            recovery_.truncated_bytes = bytes.size() - good;
            seg->last = last_good;
            std::erase_if(seg->index, [&](const index_entry& e) { return e.offset >= good; });
            std::erase_if(seg->relations, [&](const auto& r) { return r.first >= good; });
        }
        seg->written = seg->appended = good;
        if (seg->last != seg->previous) recovery_.last = seg->last;
        if (!last_segment || good > 0) segments_.emplace(seg->sequence, std::move(seg));
    }

    if (!damage.empty()) {
        reset(damage, recovery_.covered);
        return;
    }
    if (segments_.empty()) {
        epoch_ = new_epoch();
        recovery_.fresh = true;
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
        queue_.clear();
    }
    buffer_.clear();
    pending_index_.clear();
    pending_relations_.clear();
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
        queue_.push_back({sequence_, true, std::move(head), {}});
        ++chunks_submitted_;
    }
    work_.notify_one();
}

void change_log::begin(const cdc::transaction_info& txn) {
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
    append_commit(buffer_, txn.commit_lsn, end_lsn);
    open_txn_.reset();
    pending_durable_ = end_lsn;
    submit();
}

void change_log::mark(cdc::lsn lsn) {
    if (open_txn_) return; // only between transactions
    append_mark(buffer_, lsn);
    pending_durable_ = std::max(pending_durable_, lsn);
    submit();
}

// Hands the buffer to the writer and publishes what it holds to readers (index entries, relations,
// the last position) under one lock, rather than one per change.
void change_log::submit() {
    if (buffer_.empty()) return;
    segment_size_ += buffer_.size();
    {
        std::lock_guard lock(mu_);
        auto& seg = *segments_.at(sequence_);
        seg.appended = segment_size_;
        seg.index.insert(seg.index.end(), pending_index_.begin(), pending_index_.end());
        seg.relations.insert(seg.relations.end(), pending_relations_.begin(),
                             pending_relations_.end());
        if (pending_last_) last_ = seg.last = *pending_last_;
        bytes_appended_ += buffer_.size();
        queue_.push_back({sequence_, false, std::move(buffer_), pending_durable_});
        ++chunks_submitted_;
    }
    buffer_.clear();
    pending_durable_ = {};
    pending_index_.clear();
    pending_relations_.clear();
    pending_last_.reset();
    work_.notify_one();
}

void change_log::drain() {
    submit();
    std::unique_lock lock(mu_);
    const auto target = chunks_submitted_;
    written_.wait(lock, [&] { return chunks_done_ >= target; });
}

cdc::lsn change_log::durable() const {
    std::lock_guard lock(mu_);
    return durable_;
}

void change_log::on_durable(std::function<void(cdc::lsn)> f) {
    std::lock_guard lock(mu_);
    on_durable_ = std::move(f);
}

// The writer thread: write everything queued, sync once, report, repeat. A sync takes as long
// as it takes; what arrives meanwhile shares the next one (group commit).
void change_log::write_loop() {
    int fd = -1;
    std::uint64_t open_sequence = 0;
    for (;;) {
        std::vector<chunk> batch;
        {
            std::unique_lock lock(mu_);
            work_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
            if (queue_.empty() && stopping_) break;
            batch.swap(queue_);
        }
        cdc::lsn durable;
        std::vector<std::pair<std::uint64_t, std::size_t>> written;
        bool rolled = false;
        for (auto& c : batch) {
            if (c.sequence != open_sequence) {
                if (fd >= 0) {
                    if (options_.fsync) ::fdatasync(fd);
                    ::close(fd);
                }
                const auto path = path_of(c.sequence);
                fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
                if (fd < 0) fail_errno("cannot open", path);
                open_sequence = c.sequence;
                rolled = rolled || c.opens_segment;
            }
            write_all(fd, c.bytes, path_of(c.sequence));
            if (written.empty() || written.back().first != c.sequence) {
                written.emplace_back(c.sequence, 0);
            }
            written.back().second += c.bytes.size();
            durable = std::max(durable, c.durable);
        }
        // Readers may read what is written before it is synced: what they send on is only ever
        // sent again after a crash, at the same positions (see docs/architecture.md).
        {
            std::lock_guard lock(mu_);
            for (auto [sequence, bytes] : written) {
                auto it = segments_.find(sequence);
                if (it != segments_.end()) {
                    it->second->written += bytes;
                    it->second->last_write = std::chrono::system_clock::now();
                }
            }
        }
        written_.notify_all();
        if (options_.fsync) {
            ::fdatasync(fd);
            if (rolled) sync_dir(options_.dir);
        }
        if (options_.sync_delay.count()) std::this_thread::sleep_for(options_.sync_delay);
        if (rolled) apply_retention();
        std::function<void(cdc::lsn)> report;
        {
            std::lock_guard lock(mu_);
            ++syncs_;
            chunks_done_ += batch.size();
            if (durable > durable_) durable_ = durable;
            report = on_durable_;
        }
        written_.notify_all();
        if (durable.valid() && report) report(durable);
    }
    if (fd >= 0) {
        if (options_.fsync) ::fdatasync(fd);
        ::close(fd);
    }
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
    s.oldest = oldest_;
    return s;
}

// ---- log_reader ----

replay_status log_reader::read(cdc::position until, std::size_t max_changes,
                               const std::function<void(const cdc::change&)>& f) {
    std::size_t count = 0;
    auto& log = log_;
    for (;;) {
        if (after_ >= until) return replay_status::reached;
        const cdc::position before = after_;
        // The segment holding the first change after after_, and where in it to start.
        std::uint64_t sequence = 0;
        std::size_t start = 0;
        std::size_t needed = 0; // bytes of it that must be on disk first
        std::vector<std::pair<std::size_t, std::shared_ptr<const cdc::relation_schema>>> relations;
        {
            std::unique_lock lock(log.mu_);
            if (after_ < log.oldest_) return replay_status::gone;
            const change_log::segment* seg = nullptr;
            for (const auto& [seq, s] : log.segments_) {
                if (s->last > after_) {
                    seg = s.get();
                    break;
                }
            }
            if (!seg) return replay_status::reached; // nothing after after_ yet
            sequence = seg->sequence;
            for (const auto& e : seg->index) {
                if (e.commit_lsn > after_.commit_lsn) break;
                start = e.offset;
            }
            needed = seg->appended;
            relations = seg->relations;
            log.written_.wait(lock, [&] {
                auto it = log.segments_.find(sequence);
                return it == log.segments_.end() || it->second->written >= needed;
            });
            if (!log.segments_.count(sequence)) return replay_status::gone; // removed meanwhile
        }

        const auto path = log.path_of(sequence);
        const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) return replay_status::gone;
        std::unordered_map<cdc::oid, std::shared_ptr<const cdc::relation_schema>> known;
        for (const auto& [offset, schema] : relations) {
            if (offset < start) known[schema->id] = schema;
        }
        std::string buf;
        std::size_t buf_at = start; // file offset of buf[0]
        std::size_t at = start;
        std::optional<cdc::transaction_info> txn;
        bool more = true;
        while (at < needed && more) {
            auto r = read_record(as_bytes(std::string_view(buf).substr(at - buf_at)));
            if (r.status == read_status::incomplete) {
                // Read on: keep the unread part and append the next block.
                buf.erase(0, at - buf_at);
                buf_at = at;
                const std::size_t want = std::min<std::size_t>(
                    needed - buf_at - buf.size(), std::max<std::size_t>(1 << 20, buf.size()));
                const std::size_t old = buf.size();
                buf.resize(old + want);
                const ssize_t n =
                    ::pread(fd, buf.data() + old, want, static_cast<off_t>(buf_at + old));
                if (n <= 0) {
                    ::close(fd);
                    return replay_status::gone;
                }
                buf.resize(old + static_cast<std::size_t>(n));
                continue;
            }
            if (r.status == read_status::corrupt) {
                ::close(fd);
                throw log_error(fmt::format("damaged record at byte {} of {}", at, path.string()));
            }
            if (auto* rel = std::get_if<relation_record>(&r.value)) {
                known[rel->schema->id] = rel->schema;
            } else if (auto* b = std::get_if<begin_record>(&r.value)) {
                txn = b->txn;
            } else if (auto* c = std::get_if<change_record>(&r.value)) {
                if (c->pos > until) {
                    more = false;
                    break;
                }
                if (c->pos > after_ && count == max_changes) {
                    ::close(fd);
                    return replay_status::more;
                }
                if (c->pos > after_) {
                    auto schema = known.find(c->relation);
                    if (schema == known.end() || !txn) {
                        ::close(fd);
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
        ::close(fd);
        if (!more) return replay_status::reached;
        // The segment is read as far as it was written. If that moved us on, look again (the
        // next segment, or more of this one); if not, nothing more is readable yet.
        if (after_ == before) return replay_status::reached;
    }
}

} // namespace pgpush::log
