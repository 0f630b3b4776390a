#pragma once

// What the change log tests share: a scratch directory per test, transactions with predictable
// positions, and reading everything back.

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <unistd.h>
#include <vector>

#include <gtest/gtest.h>

#include "log/change_log.hpp"

namespace pgpush::log::testing {

namespace fs = std::filesystem;

class log_test : public ::testing::Test {
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
    // The log, what reset() set aside beside it (`.damaged-*`), and other directories a test
    // made beside it (`-*`).
    void TearDown() override {
        for (const auto& e : fs::directory_iterator(dir_.parent_path())) {
            const auto name = e.path().string();
            if (name == dir_.string() || name.rfind(dir_.string() + ".", 0) == 0 ||
                name.rfind(dir_.string() + "-", 0) == 0) {
                fs::remove_all(e);
            }
        }
    }

    log_options options(std::size_t segment_bytes = 1 << 20) const {
        log_options o;
        o.dir = dir_;
        o.segment_bytes = segment_bytes;
        o.fsync = false;
        return o;
    }

    fs::path segment_path(std::uint64_t sequence) const {
        char name[32];
        std::snprintf(name, sizeof name, "%016llx.seg", static_cast<unsigned long long>(sequence));
        return dir_ / name;
    }

    static std::string slurp(const fs::path& p) {
        std::ifstream in(p, std::ios::binary);
        return {std::istreambuf_iterator<char>(in), {}};
    }
    static void spill(const fs::path& p, const std::string& bytes) {
        std::ofstream out(p, std::ios::binary | std::ios::trunc);
        out << bytes;
    }

    // Appends transaction number `n` (commit LSN n*0x100, end n*0x100+0x10) with `rows` inserts,
    // and its commit unless told not to.
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
        if (commit) log.commit(txn, end_of(n));
    }
    static cdc::lsn end_of(std::uint64_t n) { return cdc::lsn{n * 0x100 + 0x10}; }

    static constexpr cdc::position the_end{cdc::lsn{~0ull}, 0};

    static std::vector<cdc::position> read_all(change_log& log, cdc::position after,
                                               cdc::position until = the_end) {
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

} // namespace pgpush::log::testing
