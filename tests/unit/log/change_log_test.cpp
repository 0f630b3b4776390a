#include "log/change_log.hpp"

#include <atomic>
#include <fstream>

#include <gtest/gtest.h>

namespace pgpush::log {
namespace {

namespace fs = std::filesystem;

// A scratch directory per test, removed afterwards.
class change_log_test : public ::testing::Test {
protected:
    void SetUp() override {
        dir_ = fs::temp_directory_path() /
               ("pgpush-log-test-" + std::to_string(::getpid()) + "-" +
                ::testing::UnitTest::GetInstance()->current_test_info()->name());
        fs::remove_all(dir_);
        rel_ = std::make_shared<cdc::relation_schema>();
        rel_->id = 1;
        rel_->schema = "public";
        rel_->name = "t";
        rel_->qualified_name = "public.t";
        rel_->columns = {{"id", 23, -1, true}, {"v", 25, -1, false}};
    }
    void TearDown() override {
        fs::remove_all(dir_);
        for (const auto& e : fs::directory_iterator(dir_.parent_path())) {
            if (e.path().string().rfind(dir_.string() + ".damaged-", 0) == 0) fs::remove_all(e);
        }
    }

    log_options options(std::size_t segment_bytes = 1 << 20) {
        log_options o;
        o.dir = dir_;
        o.segment_bytes = segment_bytes;
        o.fsync = false;
        return o;
    }

    // Appends transaction number `n` (commit LSN n*0x100) with `rows` inserts, and its commit
    // unless told not to.
    void write_txn(change_log& log, std::uint64_t n, int rows, bool commit = true) {
        cdc::transaction_info txn{static_cast<cdc::transaction_id>(n), cdc::lsn{n * 0x100},
                                  static_cast<cdc::pg_timestamp>(n)};
        log.begin(txn);
        for (int i = 0; i < rows; ++i) {
            // The log copies the bytes as it appends: the tuple may borrow from locals.
            const std::string id = std::to_string(n), v = "row " + std::to_string(i);
            pgoutput::tuple row = {{pgoutput::datum_kind::text, id},
                                   {pgoutput::datum_kind::text, v}};
            cdc::change c;
            c.op = cdc::change_op::insert;
            c.relation = rel_;
            c.row = &row;
            c.pos = {txn.commit_lsn, static_cast<std::uint32_t>(i)};
            c.txn = &txn;
            log.change(c);
        }
        if (commit) log.commit(txn, cdc::lsn{n * 0x100 + 0x10});
    }

    static std::vector<cdc::position> read_all(change_log& log, cdc::position after,
                                               cdc::position until = {cdc::lsn{~0ull}, 0}) {
        std::vector<cdc::position> got;
        auto reader = log.open_reader(after);
        EXPECT_TRUE(reader->read_until(until, [&](const cdc::change& c) {
            EXPECT_EQ(c.relation->qualified_name, "public.t");
            EXPECT_EQ(c.txn->commit_lsn, c.pos.commit_lsn);
            got.push_back(c.pos);
        }));
        return got;
    }

    static std::vector<cdc::position> expected(std::uint64_t from_txn, std::uint64_t to_txn,
                                               int rows) {
        std::vector<cdc::position> out;
        for (auto n = from_txn; n <= to_txn; ++n)
            for (int i = 0; i < rows; ++i)
                out.push_back({cdc::lsn{n * 0x100}, static_cast<std::uint32_t>(i)});
        return out;
    }

    fs::path dir_;
    std::shared_ptr<cdc::relation_schema> rel_;
};

TEST_F(change_log_test, a_new_log_is_a_fresh_epoch) {
    change_log log(options());
    EXPECT_TRUE(log.recovered().fresh);
    EXPECT_NE(log.epoch(), 0u);
    EXPECT_TRUE(read_all(log, {}).empty());
}

TEST_F(change_log_test, reads_back_after_any_position_and_across_reopen) {
    std::uint64_t epoch = 0;
    {
        change_log log(options());
        epoch = log.epoch();
        for (std::uint64_t n = 1; n <= 20; ++n)
            write_txn(log, n, 3);
        EXPECT_EQ(read_all(log, {}), expected(1, 20, 3));
        EXPECT_EQ(read_all(log, {cdc::lsn{5 * 0x100}, 1}).front(),
                  (cdc::position{cdc::lsn{5 * 0x100}, 2}));
    }
    change_log log(options());
    EXPECT_FALSE(log.recovered().fresh);
    EXPECT_EQ(log.epoch(), epoch);
    EXPECT_EQ(log.recovered().last, (cdc::position{cdc::lsn{20 * 0x100}, 2}));
    EXPECT_EQ(log.recovered().covered, cdc::lsn{20 * 0x100 + 0x10});
    EXPECT_EQ(log.check(epoch, {}), resume_check::ok);
    EXPECT_EQ(log.check(epoch + 1, {}), resume_check::other_epoch);
    EXPECT_EQ(read_all(log, {cdc::lsn{7 * 0x100}, 2}), expected(8, 20, 3));
    write_txn(log, 21, 1);
    EXPECT_EQ(read_all(log, {cdc::lsn{20 * 0x100}, 2}), expected(21, 21, 1));
}

TEST_F(change_log_test, reads_stop_at_until) {
    change_log log(options());
    for (std::uint64_t n = 1; n <= 5; ++n)
        write_txn(log, n, 2);
    EXPECT_EQ(read_all(log, {}, {cdc::lsn{3 * 0x100}, 0}),
              (std::vector<cdc::position>{{cdc::lsn{0x100}, 0},
                                          {cdc::lsn{0x100}, 1},
                                          {cdc::lsn{0x200}, 0},
                                          {cdc::lsn{0x200}, 1},
                                          {cdc::lsn{0x300}, 0}}));
}

TEST_F(change_log_test, many_segments_and_the_sparse_index) {
    change_log log(options(4096));
    for (std::uint64_t n = 1; n <= 400; ++n)
        write_txn(log, n, 5);
    EXPECT_GT(log.statistics().segments, 10u);
    EXPECT_EQ(read_all(log, {}), expected(1, 400, 5));
    EXPECT_EQ(read_all(log, {cdc::lsn{250 * 0x100}, 4}), expected(251, 400, 5));
}

TEST_F(change_log_test, durable_lsns_are_reported) {
    std::atomic<std::uint64_t> durable{0};
    {
        change_log log(options());
        log.on_durable([&](cdc::lsn l) { durable = std::max(durable.load(), l.value); });
        write_txn(log, 1, 1);
        write_txn(log, 2, 1);
        log.mark(cdc::lsn{0x5000});
    }
    EXPECT_EQ(durable.load(), 0x5000u);
    change_log log(options());
    EXPECT_EQ(log.recovered().covered, cdc::lsn{0x5000});
}

TEST_F(change_log_test, a_torn_tail_is_cut_off) {
    {
        change_log log(options());
        for (std::uint64_t n = 1; n <= 3; ++n)
            write_txn(log, n, 2);
    }
    const auto seg = dir_ / "0000000000000001.seg";
    const auto size = fs::file_size(seg);
    fs::resize_file(seg, size - 3); // the commit record of txn 3, torn
    change_log log(options());
    EXPECT_FALSE(log.recovered().fresh);
    EXPECT_TRUE(log.recovered().damage.empty());
    EXPECT_GT(log.recovered().truncated_bytes, 0u);
    EXPECT_EQ(log.recovered().last, (cdc::position{cdc::lsn{0x200}, 1}));
    EXPECT_EQ(read_all(log, {}), expected(1, 2, 2));
    // The slot sends txn 3 again; it is logged once.
    write_txn(log, 3, 2);
    EXPECT_EQ(read_all(log, {}), expected(1, 3, 2));
}

TEST_F(change_log_test, a_flipped_byte_in_the_last_segment_cuts_from_there) {
    {
        change_log log(options());
        for (std::uint64_t n = 1; n <= 3; ++n)
            write_txn(log, n, 2);
    }
    const auto seg = dir_ / "0000000000000001.seg";
    const auto size = fs::file_size(seg);
    {
        std::fstream f(seg, std::ios::in | std::ios::out | std::ios::binary);
        f.seekp(static_cast<std::streamoff>(size - 30));
        char c = 0;
        f.read(&c, 1);
        f.seekp(static_cast<std::streamoff>(size - 30));
        c = static_cast<char>(c ^ 1);
        f.write(&c, 1);
    }
    change_log log(options());
    EXPECT_GT(log.recovered().truncated_bytes, 0u);
    EXPECT_EQ(read_all(log, {}), expected(1, 2, 2));
}

TEST_F(change_log_test, damage_before_the_last_segment_starts_a_new_epoch) {
    std::uint64_t epoch = 0;
    {
        change_log log(options(4096));
        epoch = log.epoch();
        for (std::uint64_t n = 1; n <= 100; ++n)
            write_txn(log, n, 5);
        ASSERT_GT(log.statistics().segments, 2u);
    }
    const auto seg = dir_ / "0000000000000001.seg";
    {
        std::fstream f(seg, std::ios::in | std::ios::out | std::ios::binary);
        f.seekp(100);
        f.write("XXXX", 4);
    }
    change_log log(options(4096));
    EXPECT_TRUE(log.recovered().fresh);
    EXPECT_NE(log.recovered().damage.find("damaged record"), std::string::npos)
        << log.recovered().damage;
    EXPECT_NE(log.epoch(), epoch);
    EXPECT_EQ(log.check(epoch, {cdc::lsn{50 * 0x100}, 0}), resume_check::other_epoch);
    EXPECT_TRUE(read_all(log, {}).empty());
}

TEST_F(change_log_test, retention_by_size_makes_old_positions_too_old) {
    auto o = options(4096);
    o.retain_bytes = 16 * 1024;
    change_log log(o);
    for (std::uint64_t n = 1; n <= 300; ++n)
        write_txn(log, n, 5);
    log.submit();
    // Retention runs on the writer thread after a segment rolls; one more roll triggers it.
    for (std::uint64_t n = 301; n <= 320; ++n)
        write_txn(log, n, 5);
    log.drain();
    auto s = log.statistics();
    EXPECT_LE(s.bytes_on_disk, 16u * 1024 + 4096 * 2);
    EXPECT_GT(s.oldest, (cdc::position{cdc::lsn{0x100}, 0}));
    EXPECT_EQ(log.check(log.epoch(), {cdc::lsn{0x100}, 0}), resume_check::too_old);
    EXPECT_EQ(log.check(log.epoch(), s.oldest), resume_check::ok);
    auto reader = log.open_reader({cdc::lsn{0x100}, 0});
    EXPECT_FALSE(reader->read_until({cdc::lsn{~0ull}, 0}, [](const cdc::change&) {}));
    // From the oldest retained point on, everything is there, in order, without a gap.
    auto got = read_all(log, s.oldest);
    ASSERT_FALSE(got.empty());
    EXPECT_EQ(got.back(), (cdc::position{cdc::lsn{320 * 0x100}, 4}));
    for (std::size_t i = 1; i < got.size(); ++i)
        EXPECT_LT(got[i - 1], got[i]);
}

TEST_F(change_log_test, a_large_transaction_is_not_held_in_memory) {
    change_log log(options());
    // Before its commit, most of a 50,000-row transaction has gone to the writer already.
    write_txn(log, 1, 50000, /*commit=*/false);
    EXPECT_GT(log.statistics().bytes_appended, 1u << 20);
    log.commit({1, cdc::lsn{0x100}, 1}, cdc::lsn{0x110});
    EXPECT_EQ(read_all(log, {}).size(), 50000u);
}
} // namespace
} // namespace pgpush::log
