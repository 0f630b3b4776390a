// The change log against a failing disk: every file operation goes through a log_io that fails
// when told to, so each fault is injected at a known call.

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <fcntl.h>
#include <functional>
#include <mutex>
#include <optional>

#include <gtest/gtest.h>

#include "log/change_log.hpp"
#include "tests/unit/log/log_test_support.hpp"

namespace pgpush::log {
namespace {

namespace fs = std::filesystem;

// Real file operations, except the ones told to fail. Syncs are counted, not made: these tests
// need the calls and their results, not durability.
class faulty_io : public log_io {
public:
    enum op { open_op, pwrite_op, fdatasync_op, fsync_op, pread_op, op_count };
    using filter = std::function<bool(const std::string& path, int flags)>;

    // The next `times` calls of `o` (-1: every one until clear) fail with `err`. For opens,
    // `when` picks which (by path and flags).
    void fail(op o, int err, int times = -1, filter when = {}) {
        std::lock_guard lock(mu_);
        faults_[o] = {err, times, std::move(when)};
    }
    void clear(op o) {
        std::lock_guard lock(mu_);
        faults_[o] = {};
    }
    // The next pwrite writes at most `n` bytes and says so, as a write that filled the disk does.
    void short_write(std::size_t n) {
        std::lock_guard lock(mu_);
        short_write_ = n;
    }
    std::size_t failures(op o) const {
        std::lock_guard lock(mu_);
        return failed_[o];
    }

    int open(const char* path, int flags, mode_t mode) override {
        if (const int err = take(open_op, path, flags)) return refuse(err);
        return log_io::open(path, flags, mode);
    }
    ssize_t pwrite(int fd, const void* buf, std::size_t n, off_t offset) override {
        {
            std::lock_guard lock(mu_);
            if (short_write_) {
                n = std::min(n, *short_write_);
                short_write_.reset();
                return log_io::pwrite(fd, buf, n, offset);
            }
        }
        if (const int err = take(pwrite_op, {}, 0)) return refuse(err);
        return log_io::pwrite(fd, buf, n, offset);
    }
    ssize_t pread(int fd, void* buf, std::size_t n, off_t offset) override {
        if (const int err = take(pread_op, {}, 0)) return refuse(err);
        return log_io::pread(fd, buf, n, offset);
    }
    int fdatasync(int) override {
        if (const int err = take(fdatasync_op, {}, 0)) return refuse(err);
        return 0;
    }
    int fsync(int) override {
        if (const int err = take(fsync_op, {}, 0)) return refuse(err);
        return 0;
    }

private:
    struct fault {
        int err = 0;
        int times = 0;
        filter when;
    };
    static int refuse(int err) {
        errno = err;
        return -1;
    }
    int take(op o, const std::string& path, int flags) {
        std::lock_guard lock(mu_);
        auto& f = faults_[o];
        if (!f.err || f.times == 0 || (f.when && !f.when(path, flags))) return 0;
        if (f.times > 0) --f.times;
        ++failed_[o];
        return f.err;
    }

    mutable std::mutex mu_;
    fault faults_[op_count];
    std::size_t failed_[op_count] = {};
    std::optional<std::size_t> short_write_;
};

// Opens that create a file: the writer's, never a reader's or recovery's.
bool creates(const std::string&, int flags) {
    return (flags & O_CREAT) != 0;
}

// The states a log reports through on_health, awaited as events. Declared before the log, so
// that it outlives the log's writer thread.
class health_events {
public:
    void attach(change_log& log) {
        log.on_health([this](const log_health& h) {
            std::lock_guard lock(mu_);
            states_.push_back(h.state);
            cv_.notify_all();
        });
    }
    // Waits until `state` has been reported `n` times. The deadline only keeps a broken build
    // from hanging: nothing here depends on how long the writer takes.
    bool wait_for(log_state state, std::size_t n = 1) {
        std::unique_lock lock(mu_);
        return cv_.wait_for(lock, std::chrono::seconds(60), [&] {
            return static_cast<std::size_t>(std::count(states_.begin(), states_.end(), state)) >= n;
        });
    }
    std::vector<log_state> states() const {
        std::lock_guard lock(mu_);
        return states_;
    }

private:
    mutable std::mutex mu_;
    std::condition_variable cv_;
    std::vector<log_state> states_;
};

class change_log_faults_test : public testing::log_test {
protected:
    log_options faulty(std::size_t segment_bytes = 1 << 20) {
        auto o = options(segment_bytes);
        o.fsync = true;
        o.io = io_;
        // Retries come quickly, so a test that clears a fault sees it recover at once.
        o.retry_min = std::chrono::milliseconds(1);
        o.retry_max = std::chrono::milliseconds(4);
        return o;
    }

    // The bytes of a segment after its header (which holds the epoch, random per log).
    static std::string body(const fs::path& segment) {
        const auto bytes = slurp(segment);
        const auto head =
            read_record({reinterpret_cast<const std::byte*>(bytes.data()), bytes.size()});
        EXPECT_EQ(head.status, read_status::ok);
        return bytes.substr(head.size);
    }

    std::shared_ptr<faulty_io> io_ = std::make_shared<faulty_io>();
};

TEST_F(change_log_faults_test, a_full_disk_stalls_the_writer_which_then_writes_every_byte_once) {
    {
        std::vector<cdc::lsn> reported;
        std::mutex reported_mu;
        health_events events;
        change_log log(faulty());
        events.attach(log);
        log.on_durable([&](cdc::lsn l) {
            std::lock_guard lock(reported_mu);
            reported.push_back(l);
        });
        for (std::uint64_t n = 1; n <= 5; ++n)
            write_txn(log, n, 3);
        ASSERT_TRUE(log.drain());
        EXPECT_EQ(log.durable(), end_of(5));

        // The disk fills up 7 bytes into the next write.
        io_->fail(faulty_io::pwrite_op, ENOSPC);
        io_->short_write(7);
        for (std::uint64_t n = 6; n <= 10; ++n)
            write_txn(log, n, 3);
        ASSERT_TRUE(events.wait_for(log_state::stalled));
        const auto h = log.health();
        EXPECT_EQ(h.state, log_state::stalled);
        EXPECT_NE(h.reason.find("No space left on device"), std::string::npos) << h.reason;
        EXPECT_NE(h.reason.find(segment_path(1).string()), std::string::npos) << h.reason;
        EXPECT_EQ(h.stalls, 1u);
        EXPECT_FALSE(log.drain()); // it does not wait for the disk to free up
        EXPECT_EQ(log.durable(), end_of(5));
        EXPECT_GT(log.unwritten_bytes(), 0u);

        // A reader does not wait for the writer either: the next change is not written yet.
        auto reader = log.open_reader({cdc::lsn{5 * 0x100}, 2});
        std::vector<cdc::position> got;
        const auto collect = [&](const cdc::change& c) { got.push_back(c.pos); };
        EXPECT_EQ(reader->read(log.last_position(), 100, collect), replay_status::waiting);
        EXPECT_TRUE(got.empty());
        EXPECT_GT(io_->failures(faulty_io::pwrite_op), 0u);
        EXPECT_EQ(log.durable(), end_of(5));

        // Space again: the writer carries on from the byte it stopped at.
        io_->clear(faulty_io::pwrite_op);
        ASSERT_TRUE(events.wait_for(log_state::ok));
        EXPECT_TRUE(log.drain());
        EXPECT_EQ(log.health().state, log_state::ok);
        EXPECT_EQ(log.health().stalls, 1u);
        EXPECT_EQ(log.durable(), end_of(10));
        EXPECT_EQ(log.unwritten_bytes(), 0u);
        EXPECT_EQ(reader->read(log.last_position(), 100, collect), replay_status::reached);
        EXPECT_EQ(got, expected(6, 10, 3));
        std::lock_guard lock(reported_mu);
        for (auto l : reported)
            EXPECT_TRUE(l <= end_of(5) || l == end_of(10)) << cdc::to_string(l);
        EXPECT_EQ(events.states(), (std::vector<log_state>{log_state::stalled, log_state::ok}));
    }
    // Byte for byte what a log that never met the fault writes.
    auto o = options();
    o.dir = dir_.string() + "-reference";
    {
        change_log reference(o);
        for (std::uint64_t n = 1; n <= 10; ++n)
            write_txn(reference, n, 3);
    }
    EXPECT_EQ(body(segment_path(1)), body(o.dir / segment_path(1).filename()));
    change_log log(options());
    EXPECT_EQ(log.recovered().truncated_bytes, 0u);
    EXPECT_EQ(read_all(log, {}), expected(1, 10, 3));
}

TEST_F(change_log_faults_test, no_descriptor_for_the_next_segment_stalls_until_there_is_one) {
    health_events events;
    change_log log(faulty(4096));
    events.attach(log);
    ASSERT_TRUE(log.drain()); // the first segment is open
    io_->fail(faulty_io::open_op, EMFILE, -1, creates);
    std::uint64_t n = 0;
    while (log.statistics().segments < 3)
        write_txn(log, ++n, 5);
    ASSERT_TRUE(events.wait_for(log_state::stalled));
    const auto h = log.health();
    EXPECT_NE(h.reason.find("Too many open files"), std::string::npos) << h.reason;
    EXPECT_NE(h.reason.find(segment_path(2).string()), std::string::npos) << h.reason;
    EXPECT_LT(log.durable(), end_of(n));

    // What the first segment holds is readable; then the reader waits, without blocking.
    std::vector<cdc::position> got;
    auto reader = log.open_reader({});
    EXPECT_EQ(reader->read(log.last_position(), SIZE_MAX,
                           [&](const cdc::change& c) { got.push_back(c.pos); }),
              replay_status::waiting);
    ASSERT_FALSE(got.empty());
    EXPECT_LT(got.back(), log.last_position());

    io_->clear(faulty_io::open_op);
    ASSERT_TRUE(events.wait_for(log_state::ok));
    EXPECT_TRUE(log.drain());
    EXPECT_EQ(log.durable(), end_of(n));
    EXPECT_EQ(log.health().stalls, 1u);
    EXPECT_EQ(read_all(log, {}), expected(1, n, 5));
}

TEST_F(change_log_faults_test, a_failed_fdatasync_is_final) {
    {
        cdc::lsn highest;
        std::mutex highest_mu;
        health_events events;
        change_log log(faulty());
        events.attach(log);
        log.on_durable([&](cdc::lsn l) {
            std::lock_guard lock(highest_mu);
            highest = std::max(highest, l);
        });
        write_txn(log, 1, 2);
        ASSERT_TRUE(log.drain());
        EXPECT_EQ(log.durable(), end_of(1));

        // One failure only: the syncs after it would succeed, and must count for nothing.
        io_->fail(faulty_io::fdatasync_op, EIO, 1);
        write_txn(log, 2, 2);
        ASSERT_TRUE(events.wait_for(log_state::failed));
        const auto h = log.health();
        EXPECT_EQ(h.state, log_state::failed);
        EXPECT_NE(h.reason.find("Input/output error"), std::string::npos) << h.reason;
        EXPECT_NE(h.reason.find(segment_path(1).string()), std::string::npos) << h.reason;
        EXPECT_FALSE(log.drain()); // returns rather than hang
        write_txn(log, 3, 2);
        EXPECT_FALSE(log.drain());
        EXPECT_EQ(log.durable(), end_of(1));
        EXPECT_EQ(log.health().state, log_state::failed);
        std::lock_guard lock(highest_mu);
        EXPECT_EQ(highest, end_of(1));
    }
    // The next start cuts the log back to what the slot was confirmed to (end_of(1)): the rest
    // comes again from the slot.
    change_log log(options());
    log.cut_back_to(end_of(1));
    EXPECT_EQ(log.recovered().last, (cdc::position{cdc::lsn{0x100}, 1}));
    EXPECT_EQ(log.recovered().covered, end_of(1));
    EXPECT_EQ(read_all(log, {}), expected(1, 1, 2));
}

TEST_F(change_log_faults_test, a_failed_directory_fsync_after_a_roll_is_final) {
    health_events events;
    change_log log(faulty(4096));
    events.attach(log);
    ASSERT_TRUE(log.drain()); // the first segment's directory entry is synced
    const auto before = log.durable();
    io_->fail(faulty_io::fsync_op, EIO);
    std::uint64_t n = 0;
    while (log.statistics().segments < 2)
        write_txn(log, ++n, 5);
    write_txn(log, ++n, 5);
    ASSERT_TRUE(events.wait_for(log_state::failed));
    const auto h = log.health();
    EXPECT_NE(h.reason.find("directory"), std::string::npos) << h.reason;
    EXPECT_NE(h.reason.find(dir_.string()), std::string::npos) << h.reason;
    EXPECT_FALSE(log.drain());
    EXPECT_LT(log.durable(), end_of(n));
    EXPECT_GE(log.durable(), before);
    io_->clear(faulty_io::fsync_op);
    write_txn(log, ++n, 5);
    EXPECT_FALSE(log.drain());
    EXPECT_LT(log.durable(), end_of(n - 1));
}

TEST_F(change_log_faults_test, closing_a_stalled_log_gives_up_and_the_torn_tail_is_cut) {
    {
        health_events events;
        change_log log(faulty());
        events.attach(log);
        write_txn(log, 1, 2);
        ASSERT_TRUE(log.drain());
        io_->fail(faulty_io::pwrite_op, ENOSPC);
        io_->short_write(20);
        write_txn(log, 2, 2);
        ASSERT_TRUE(events.wait_for(log_state::stalled));
        EXPECT_EQ(log.durable(), end_of(1));
    } // returns: the disk is still full
    change_log log(options());
    EXPECT_TRUE(log.recovered().damage.empty());
    EXPECT_EQ(log.recovered().truncated_bytes, 20u);
    EXPECT_EQ(read_all(log, {}), expected(1, 1, 2));
}

TEST_F(change_log_faults_test, a_reader_without_a_descriptor_waits) {
    change_log log(faulty());
    write_txn(log, 1, 2);
    ASSERT_TRUE(log.drain());
    io_->fail(faulty_io::open_op, EMFILE, 1,
              [](const std::string&, int flags) { return (flags & O_ACCMODE) == O_RDONLY; });
    std::vector<cdc::position> got;
    auto reader = log.open_reader({});
    const auto collect = [&](const cdc::change& c) { got.push_back(c.pos); };
    EXPECT_EQ(reader->read(log.last_position(), SIZE_MAX, collect), replay_status::waiting);
    EXPECT_TRUE(got.empty());
    EXPECT_EQ(reader->read(log.last_position(), SIZE_MAX, collect), replay_status::reached);
    EXPECT_EQ(got, expected(1, 1, 2));
}

TEST_F(change_log_faults_test, a_read_error_is_a_log_error) {
    change_log log(faulty());
    write_txn(log, 1, 2);
    ASSERT_TRUE(log.drain());
    io_->fail(faulty_io::pread_op, EIO, 1);
    auto reader = log.open_reader({});
    EXPECT_THROW(reader->read(log.last_position(), SIZE_MAX, [](const cdc::change&) {}), log_error);
}

} // namespace
} // namespace pgpush::log
