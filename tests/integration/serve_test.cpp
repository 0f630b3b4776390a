// `pgpush serve` end to end: subscribe, snapshot, live changes, enter/leave, rules, NOTIFY.

#include "tests/integration/serve_fixture.hpp"

namespace pgpush::testing {
namespace {

using nlohmann::json;

TEST_F(serve_test, snapshot_then_live_insert_update_delete) {
    start();
    pg().exec("INSERT INTO messages (id, room_id, sender_id, body) VALUES (1, 1, 10, 'hello')");
    auto alice = connect({{"sub", "alice"}, {"uid", 10}, {"rooms", {1}}});
    auto rows = subscribe(*alice, "s1", "SELECT id, body FROM messages WHERE room_id = 1");
    ASSERT_EQ(rows.size(), 1u);
    EXPECT_EQ(rows[0], json({{"id", 1}, {"body", "hello"}}));

    pg().exec("INSERT INTO messages (id, room_id, sender_id, body) VALUES (2, 1, 11, 'hi')");
    auto ins = alice->next_of("insert", "s1");
    ASSERT_TRUE(ins);
    EXPECT_EQ((*ins)["row"], json({{"id", 2}, {"body", "hi"}}));
    EXPECT_TRUE((*ins).contains("position"));
    EXPECT_TRUE((*ins).contains("commit_time"));

    pg().exec("UPDATE messages SET body = 'hi!' WHERE id = 2");
    auto upd = alice->next_of("update", "s1");
    ASSERT_TRUE(upd);
    EXPECT_EQ((*upd)["row"], json({{"id", 2}, {"body", "hi!"}}));
    EXPECT_EQ((*upd)["old"], json({{"id", 2}, {"body", "hi"}}));

    pg().exec("DELETE FROM messages WHERE id = 2");
    auto del = alice->next_of("delete", "s1");
    ASSERT_TRUE(del);
    EXPECT_EQ((*del)["row"], json({{"id", 2}, {"body", "hi!"}}));
}

} // namespace
} // namespace pgpush::testing
