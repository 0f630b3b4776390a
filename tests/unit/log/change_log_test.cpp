#include "log/change_log.hpp"

#include <atomic>
#include <fstream>

#include <gtest/gtest.h>

#include "tests/unit/log/log_test_support.hpp"

namespace pgpush::log {
namespace {

namespace fs = std::filesystem;

using change_log_test = testing::log_test;

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
// ---- Continuity: a hole between segments is damage, never a silent skip ----

class change_log_continuity_test : public testing::log_test {
protected:
    // Writes six segments of five-row transactions and closes the log; returns the last
    // transaction's number.
    std::uint64_t six_segments() {
        change_log log(options(4096));
        epoch_ = log.epoch();
        std::uint64_t n = 0;
        while (log.statistics().segments < 6)
            write_txn(log, ++n, 5);
        for (int i = 0; i < 3; ++i)
            write_txn(log, ++n, 5);
        EXPECT_EQ(log.statistics().segments, 6u);
        return n;
    }

    header_record header_of(std::uint64_t sequence) const {
        const auto bytes = slurp(segment_path(sequence));
        auto r = read_record({reinterpret_cast<const std::byte*>(bytes.data()), bytes.size()});
        EXPECT_EQ(r.status, read_status::ok);
        return std::get<header_record>(r.value);
    }

    // Writes `h` over the header of a segment (headers all have the same size).
    void replace_header(std::uint64_t sequence, const header_record& h) const {
        auto bytes = slurp(segment_path(sequence));
        std::string head;
        append_header(head, h);
        bytes.replace(0, head.size(), head);
        spill(segment_path(sequence), bytes);
    }

    // Opening finds the damage, sets the old log aside and starts a new epoch: a client holding
    // a position of the old one is told to resync, never served with a hole.
    void expect_new_epoch(const std::string& why) {
        change_log log(options(4096));
        EXPECT_TRUE(log.recovered().fresh);
        EXPECT_NE(log.recovered().damage.find(why), std::string::npos) << log.recovered().damage;
        EXPECT_NE(log.epoch(), epoch_);
        EXPECT_EQ(log.check(epoch_, {}), resume_check::other_epoch);
        EXPECT_TRUE(read_all(log, log.statistics().oldest).empty());
    }

    std::uint64_t epoch_ = 0;
};

TEST_F(change_log_continuity_test, a_middle_segment_emptied_is_damage) {
    six_segments();
    fs::resize_file(segment_path(3), 0);
    expect_new_epoch(segment_path(3).string() + " has no valid header");
}

TEST_F(change_log_continuity_test, a_middle_segment_deleted_is_damage) {
    six_segments();
    fs::remove(segment_path(3));
    expect_new_epoch(segment_path(3).string() + " is missing");
}

TEST_F(change_log_continuity_test, a_header_of_another_epoch_is_damage) {
    six_segments();
    auto h = header_of(3);
    h.epoch ^= 1;
    replace_header(3, h);
    expect_new_epoch("a bad segment header");
}

TEST_F(change_log_continuity_test, a_header_of_another_sequence_is_damage) {
    six_segments();
    auto h = header_of(3);
    h.sequence = 4;
    replace_header(3, h);
    expect_new_epoch("a bad segment header");
}

TEST_F(change_log_continuity_test, a_header_that_does_not_continue_the_one_before_is_damage) {
    six_segments();
    // A segment of this epoch and sequence, but starting one change later than the segment
    // before ends: that change would be skipped.
    auto h = header_of(3);
    h.previous.index += 1;
    replace_header(3, h);
    expect_new_epoch("does not continue the one before");
}

// A crash right after a segment was created leaves it empty: a torn tail, cut like any other.
TEST_F(change_log_continuity_test, an_empty_last_segment_is_a_torn_tail) {
    const auto n = six_segments();
    spill(segment_path(7), "");
    {
        change_log log(options(4096));
        EXPECT_FALSE(log.recovered().fresh);
        EXPECT_TRUE(log.recovered().damage.empty()) << log.recovered().damage;
        EXPECT_EQ(log.epoch(), epoch_);
        EXPECT_FALSE(fs::exists(segment_path(7)));
        EXPECT_EQ(read_all(log, {}), expected(1, n, 5));
        // Logging goes on, into a new segment 7 in time.
        for (std::uint64_t m = n + 1; m <= n + 30; ++m)
            write_txn(log, m, 5);
    }
    change_log log(options(4096));
    EXPECT_TRUE(log.recovered().damage.empty()) << log.recovered().damage;
    EXPECT_TRUE(fs::exists(segment_path(7)));
    EXPECT_EQ(read_all(log, {}), expected(1, n + 30, 5));
}

TEST_F(change_log_continuity_test, a_torn_header_in_the_last_segment_is_a_torn_tail) {
    const auto n = six_segments();
    std::string head;
    append_header(head, {epoch_, 7, {cdc::lsn{n * 0x100}, 4}});
    spill(segment_path(7), head.substr(0, 10));
    change_log log(options(4096));
    EXPECT_TRUE(log.recovered().damage.empty()) << log.recovered().damage;
    EXPECT_EQ(log.recovered().truncated_bytes, 10u);
    EXPECT_EQ(read_all(log, {}), expected(1, n, 5));
}

TEST_F(change_log_continuity_test, a_lone_empty_segment_is_a_fresh_log) {
    fs::create_directories(dir_);
    spill(segment_path(1), "");
    change_log log(options());
    EXPECT_TRUE(log.recovered().fresh);
    EXPECT_TRUE(log.recovered().damage.empty());
    write_txn(log, 1, 1);
    EXPECT_EQ(read_all(log, {}), expected(1, 1, 1));
}

// The same damage done while the engine runs is found by the reader that meets it.
TEST_F(change_log_continuity_test, a_reader_meeting_a_replaced_segment_throws) {
    change_log log(options(4096));
    epoch_ = log.epoch();
    std::uint64_t n = 0;
    while (log.statistics().segments < 6)
        write_txn(log, ++n, 5);
    log.drain();
    auto h = header_of(3);
    h.epoch ^= 1;
    replace_header(3, h);
    auto reader = log.open_reader({});
    std::vector<cdc::position> got;
    EXPECT_THROW(reader->read_until(the_end, [&](const cdc::change& c) { got.push_back(c.pos); }),
                 log_error);
    // It stopped where the hole begins.
    ASSERT_FALSE(got.empty());
    EXPECT_EQ(got.back(), header_of(3).previous);
}

TEST_F(change_log_continuity_test, a_reader_meeting_a_truncated_or_deleted_segment_throws) {
    change_log log(options(4096));
    std::uint64_t n = 0;
    while (log.statistics().segments < 6)
        write_txn(log, ++n, 5);
    log.drain();
    const auto start_of_four = header_of(4).previous;
    const auto start_of_five = header_of(5).previous;
    const auto read_from = [&](cdc::position after) {
        return log.open_reader(after)->read_until(the_end, [](const cdc::change&) {});
    };
    fs::resize_file(segment_path(3), 100);
    EXPECT_THROW(read_from({}), log_error);
    fs::remove(segment_path(4));
    EXPECT_THROW(read_from(start_of_four), log_error);
    // A reader that does not need them is not disturbed.
    EXPECT_TRUE(read_from(start_of_five));
}

// ---- Cutting back to the slot's confirmed position ----

TEST_F(change_log_test, cut_back_to_removes_what_the_slot_sends_again) {
    std::uint64_t epoch = 0;
    {
        change_log log(options(4096));
        epoch = log.epoch();
        for (std::uint64_t n = 1; n <= 60; ++n)
            write_txn(log, n, 5);
        ASSERT_GT(log.statistics().segments, 3u);
    }
    std::size_t files = 0;
    for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir_))
        ++files;
    {
        change_log log(options(4096));
        // Confirmed to the end of txn 10: Postgres sends txn 11 on again.
        log.cut_back_to(end_of(10));
        EXPECT_EQ(log.epoch(), epoch);
        EXPECT_TRUE(log.recovered().damage.empty());
        EXPECT_EQ(log.recovered().last, (cdc::position{cdc::lsn{10 * 0x100}, 4}));
        EXPECT_EQ(log.recovered().covered, end_of(10));
        EXPECT_EQ(log.recovered().last_commit, cdc::lsn{10 * 0x100});
        EXPECT_GT(log.recovered().truncated_bytes, 0u);
        EXPECT_EQ(log.last_position(), (cdc::position{cdc::lsn{10 * 0x100}, 4}));
        std::size_t left = 0;
        for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir_))
            ++left;
        EXPECT_LT(left, files);
        EXPECT_EQ(read_all(log, {}), expected(1, 10, 5));
        // The slot sends the rest again, at the same positions.
        for (std::uint64_t n = 11; n <= 60; ++n)
            write_txn(log, n, 5);
        EXPECT_EQ(read_all(log, {cdc::lsn{0x900}, 2}).front(), (cdc::position{cdc::lsn{0x900}, 3}));
    }
    change_log log(options(4096));
    EXPECT_EQ(read_all(log, {}), expected(1, 60, 5));
}

TEST_F(change_log_test, cut_back_to_keeps_a_confirmed_mark) {
    {
        change_log log(options());
        for (std::uint64_t n = 1; n <= 4; ++n)
            write_txn(log, n, 2);
        log.mark(cdc::lsn{0x480});
        for (std::uint64_t n = 5; n <= 6; ++n)
            write_txn(log, n, 2);
    }
    change_log log(options());
    log.cut_back_to(cdc::lsn{0x480});
    EXPECT_EQ(log.recovered().covered, cdc::lsn{0x480});
    EXPECT_EQ(log.recovered().last_commit, cdc::lsn{0x400});
    EXPECT_EQ(read_all(log, {}), expected(1, 4, 2));
}

TEST_F(change_log_test, cut_back_to_before_everything_empties_the_log) {
    {
        change_log log(options());
        for (std::uint64_t n = 1; n <= 5; ++n)
            write_txn(log, n, 2);
    }
    change_log log(options());
    // The slot was never confirmed past any of it.
    log.cut_back_to(cdc::lsn{0x50});
    EXPECT_FALSE(log.recovered().fresh);
    EXPECT_EQ(log.recovered().last, cdc::position{});
    EXPECT_EQ(log.recovered().last_commit, cdc::lsn{});
    // It held a commit after 0x50: nothing before 0x50 can be missing from it.
    EXPECT_EQ(log.recovered().covered, cdc::lsn{0x50});
    EXPECT_TRUE(read_all(log, {}).empty());
    for (std::uint64_t n = 1; n <= 5; ++n)
        write_txn(log, n, 2);
    EXPECT_EQ(read_all(log, {}), expected(1, 5, 2));
}

TEST_F(change_log_test, a_new_log_begins_where_the_slot_stood_when_it_was_made) {
    // Made when the slot stood at 0x1000; killed before anything after it was confirmed.
    auto o = options();
    o.start = cdc::lsn{0x1000};
    {
        change_log log(o);
        EXPECT_TRUE(log.recovered().fresh);
        EXPECT_EQ(log.recovered().covered, cdc::lsn{0x1000});
        write_txn(log, 0x11, 2, false); // at 0x1100; its commit never reached the disk
    }
    change_log log(o);
    log.cut_back_to(cdc::lsn{0x1000});
    // Nothing is missing: the slot resends everything after 0x1000. Without the start, the log
    // would seem to end before the slot's confirmed position, and a new epoch would begin.
    EXPECT_FALSE(log.recovered().fresh);
    EXPECT_GE(log.recovered().covered, cdc::lsn{0x1000});
    EXPECT_EQ(log.statistics().oldest, (cdc::position{cdc::lsn{0x1000}, 0}));
}

TEST_F(change_log_test, cut_back_to_leaves_a_log_without_its_beginning_alone) {
    auto o = options(4096);
    o.retain_bytes = 16 * 1024;
    cdc::position oldest;
    {
        change_log log(o);
        for (std::uint64_t n = 1; n <= 200; ++n)
            write_txn(log, n, 5);
        log.drain();
        oldest = log.statistics().oldest;
        ASSERT_GT(oldest, cdc::position{});
    }
    change_log log(o);
    const auto before = log.recovered();
    log.cut_back_to(cdc::lsn{0x10}); // before all it holds
    EXPECT_EQ(log.recovered().truncated_bytes, before.truncated_bytes);
    EXPECT_EQ(log.recovered().last, before.last);
    EXPECT_EQ(log.recovered().covered, before.covered);
    const auto got = read_all(log, oldest);
    ASSERT_FALSE(got.empty());
    EXPECT_EQ(got.back(), (cdc::position{cdc::lsn{200 * 0x100}, 4}));
}

TEST_F(change_log_test, cut_back_to_past_the_end_changes_nothing) {
    {
        change_log log(options());
        for (std::uint64_t n = 1; n <= 5; ++n)
            write_txn(log, n, 2);
    }
    change_log log(options());
    log.cut_back_to(end_of(9));
    EXPECT_EQ(log.recovered().truncated_bytes, 0u);
    // The log ends before the slot's confirmed position: the caller's check sees it.
    EXPECT_EQ(log.recovered().covered, end_of(5));
    EXPECT_EQ(read_all(log, {}), expected(1, 5, 2));
}

TEST_F(change_log_test, cut_back_to_comes_before_appending) {
    change_log log(options());
    write_txn(log, 1, 1);
    EXPECT_THROW(log.cut_back_to(end_of(1)), std::logic_error);
}

// ---- Gap records ----

TEST_F(change_log_test, a_gap_is_reported_to_readers_that_start_before_it) {
    change_log log(options());
    for (std::uint64_t n = 1; n <= 3; ++n)
        write_txn(log, n, 2);
    log.gap("public.t", cdc::lsn{0x280});
    for (std::uint64_t n = 4; n <= 5; ++n)
        write_txn(log, n, 2);

    const auto gaps_from = [&](cdc::position after, std::size_t batch) {
        std::vector<std::string> gaps;
        std::vector<cdc::position> got;
        auto reader = log.open_reader(after);
        for (;;) {
            const auto s = reader->read(
                log.last_position(), batch, [&](const cdc::change& c) { got.push_back(c.pos); },
                [&](std::string_view table) { gaps.emplace_back(table); });
            if (s == replay_status::reached) break;
            EXPECT_NE(s, replay_status::gone);
            if (s == replay_status::waiting) log.drain();
        }
        EXPECT_EQ(got.back(), (cdc::position{cdc::lsn{0x500}, 1}));
        return gaps;
    };
    const std::vector<std::string> one{"public.t"};
    EXPECT_EQ(gaps_from({}, SIZE_MAX), one);
    EXPECT_EQ(gaps_from({cdc::lsn{0x200}, 1}, SIZE_MAX), one);
    EXPECT_EQ(gaps_from({}, 1), one); // once, however many calls
    EXPECT_TRUE(gaps_from({cdc::lsn{0x300}, 0}, SIZE_MAX).empty());
    EXPECT_TRUE(gaps_from({cdc::lsn{0x400}, 1}, 1).empty());
}

TEST_F(change_log_test, a_gap_logged_while_reading_is_reported_at_the_next_read) {
    change_log log(options());
    write_txn(log, 1, 2);
    auto reader = log.open_reader({});
    std::vector<std::string> gaps;
    const auto on_gap = [&](std::string_view table) { gaps.emplace_back(table); };
    ASSERT_TRUE(reader->read_until(
        log.last_position(), [](const cdc::change&) {}, on_gap));
    EXPECT_TRUE(gaps.empty());
    // Inside a transaction it is logged after the commit.
    write_txn(log, 2, 1, /*commit=*/false);
    log.gap("public.rooms", cdc::lsn{0x250});
    log.commit({2, cdc::lsn{0x200}, 2}, end_of(2));
    ASSERT_TRUE(reader->read_until(
        log.last_position(), [](const cdc::change&) {}, on_gap));
    EXPECT_EQ(gaps, std::vector<std::string>{"public.rooms"});
}

TEST_F(change_log_test, gaps_are_kept_across_reopening_and_cutting_back) {
    {
        change_log log(options());
        for (std::uint64_t n = 1; n <= 3; ++n)
            write_txn(log, n, 2);
        log.gap("public.t", cdc::lsn{0x350});
        for (std::uint64_t n = 4; n <= 5; ++n)
            write_txn(log, n, 2);
    }
    const auto gaps_from = [](change_log& log, cdc::position after) {
        std::vector<std::string> gaps;
        log.open_reader(after)->read_until(
            log.last_position(), [](const cdc::change&) {},
            [&](std::string_view table) { gaps.emplace_back(table); });
        return gaps;
    };
    {
        change_log log(options());
        EXPECT_EQ(gaps_from(log, {}), std::vector<std::string>{"public.t"});
        // The slot sends txns 4 and 5 again; the gap is not something it sends.
        log.cut_back_to(end_of(3));
        EXPECT_EQ(read_all(log, {}), expected(1, 3, 2));
        EXPECT_EQ(gaps_from(log, {}), std::vector<std::string>{"public.t"});
        for (std::uint64_t n = 4; n <= 5; ++n)
            write_txn(log, n, 2);
    }
    change_log log(options());
    EXPECT_EQ(read_all(log, {}), expected(1, 5, 2));
    EXPECT_EQ(gaps_from(log, {cdc::lsn{0x100}, 0}), std::vector<std::string>{"public.t"});
    EXPECT_TRUE(gaps_from(log, {cdc::lsn{0x400}, 0}).empty());
}

} // namespace
} // namespace pgpush::log
