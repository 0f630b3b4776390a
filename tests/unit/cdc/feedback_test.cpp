#include "cdc/feedback.hpp"

#include <gtest/gtest.h>

namespace pgpush::cdc {
namespace {

TEST(feedback, starts_at_the_restart_point) {
    feedback f(lsn{0x100});
    EXPECT_EQ(f.received(), lsn{0x100});
    EXPECT_EQ(f.flushed(), lsn{0x100});
    feedback zero;
    EXPECT_EQ(zero.received(), lsn{0});
    EXPECT_EQ(zero.flushed(), lsn{0});
}

TEST(feedback, received_tracks_the_maximum_seen) {
    feedback f(lsn{0x100});
    f.on_data(lsn{0x200});
    EXPECT_EQ(f.received(), lsn{0x200});
    f.on_data(lsn{0x150});
    EXPECT_EQ(f.received(), lsn{0x200});
    f.on_keepalive(lsn{0x180}, true);
    EXPECT_EQ(f.received(), lsn{0x200});
    f.on_keepalive(lsn{0x300}, true);
    EXPECT_EQ(f.received(), lsn{0x300});
    f.on_commit_handed_over(lsn{0x400});
    EXPECT_EQ(f.received(), lsn{0x400});
    f.on_commit_handed_over(lsn{0x350});
    EXPECT_EQ(f.received(), lsn{0x400});
}

TEST(feedback, data_alone_never_moves_flushed) {
    feedback f(lsn{0x100});
    f.on_data(lsn{0x900});
    EXPECT_EQ(f.flushed(), lsn{0x100});
}

TEST(feedback, confirm_moves_flushed_to_what_was_handed_over) {
    feedback f(lsn{0x100});
    f.on_commit_handed_over(lsn{0x200});
    EXPECT_EQ(f.flushed(), lsn{0x100}); // handing over is not confirming
    f.confirm(lsn{0x200});
    EXPECT_EQ(f.flushed(), lsn{0x200});
}

TEST(feedback, confirm_never_goes_past_what_was_handed_over) {
    feedback f(lsn{0x100});
    f.confirm(lsn{0x500});
    EXPECT_EQ(f.flushed(), lsn{0x100}); // nothing handed over yet
    f.on_data(lsn{0x900});
    f.confirm(lsn{0x500});
    EXPECT_EQ(f.flushed(), lsn{0x100}); // received is not handed over
    f.on_commit_handed_over(lsn{0x300});
    f.confirm(lsn{0x500});
    EXPECT_EQ(f.flushed(), lsn{0x300});
}

TEST(feedback, confirm_never_moves_flushed_backwards) {
    feedback f(lsn{0x100});
    f.on_commit_handed_over(lsn{0x300});
    f.confirm(lsn{0x300});
    f.confirm(lsn{0x200});
    EXPECT_EQ(f.flushed(), lsn{0x300});
    f.confirm(lsn{0});
    EXPECT_EQ(f.flushed(), lsn{0x300});
    feedback g(lsn{0x100});
    g.confirm(lsn{0x50});
    EXPECT_EQ(g.flushed(), lsn{0x100});
}

TEST(feedback, confirm_in_between_commits_moves_to_the_confirmed_point) {
    feedback f;
    f.on_commit_handed_over(lsn{0x200});
    f.on_commit_handed_over(lsn{0x300});
    f.confirm(lsn{0x200});
    EXPECT_EQ(f.flushed(), lsn{0x200});
}

TEST(feedback, keepalive_follows_the_server_while_idle_and_all_confirmed) {
    feedback f(lsn{0x100});
    f.on_keepalive(lsn{0x500}, false);
    EXPECT_EQ(f.flushed(), lsn{0x500});
    EXPECT_EQ(f.received(), lsn{0x500});

    f.on_commit_handed_over(lsn{0x600});
    f.confirm(lsn{0x600});
    f.on_keepalive(lsn{0x700}, false);
    EXPECT_EQ(f.flushed(), lsn{0x700});
}

TEST(feedback, keepalive_does_not_move_flushed_inside_a_transaction) {
    feedback f(lsn{0x100});
    f.on_keepalive(lsn{0x500}, true);
    EXPECT_EQ(f.flushed(), lsn{0x100});
    EXPECT_EQ(f.received(), lsn{0x500});
}

TEST(feedback, keepalive_does_not_move_flushed_while_handed_over_work_is_unconfirmed) {
    feedback f(lsn{0x100});
    f.on_commit_handed_over(lsn{0x200});
    f.on_keepalive(lsn{0x500}, false);
    EXPECT_EQ(f.flushed(), lsn{0x100});
    f.confirm(lsn{0x150}); // partly confirmed is still unconfirmed
    f.on_keepalive(lsn{0x600}, false);
    EXPECT_EQ(f.flushed(), lsn{0x150});
    f.confirm(lsn{0x200});
    f.on_keepalive(lsn{0x700}, false);
    EXPECT_EQ(f.flushed(), lsn{0x700});
}

TEST(feedback, keepalive_behind_flushed_does_not_move_it_back) {
    feedback f(lsn{0x100});
    f.on_commit_handed_over(lsn{0x400});
    f.confirm(lsn{0x400});
    f.on_keepalive(lsn{0x300}, false);
    EXPECT_EQ(f.flushed(), lsn{0x400});
}

TEST(feedback, after_following_a_keepalive_confirm_still_cannot_overtake_handover) {
    feedback f(lsn{0x100});
    f.on_keepalive(lsn{0x500}, false);
    f.confirm(lsn{0x900});
    EXPECT_EQ(f.flushed(), lsn{0x500});
    // A later commit is handed over but not confirmed: keepalives stop following.
    f.on_commit_handed_over(lsn{0x600});
    f.on_keepalive(lsn{0x800}, false);
    EXPECT_EQ(f.flushed(), lsn{0x500});
    f.confirm(lsn{0x600});
    EXPECT_EQ(f.flushed(), lsn{0x600});
}

} // namespace
} // namespace pgpush::cdc
