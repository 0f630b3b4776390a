#pragma once

// Shared by the `pgpush tail` integration tests: one cluster per test binary, helpers to start
// tail and read its JSON lines.

#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/support/pg_cluster.hpp"
#include "tests/support/subprocess.hpp"

namespace pgpush::testing {

class tail_test : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        if (!cluster_) cluster_ = std::make_unique<pg_cluster>();
    }
    // The cluster lives until the binary exits (its reaper stops it then).

    pg_cluster& pg() { return *cluster_; }

    // Starts `pgpush tail --db <cluster> args...` and waits until it is streaming, so that
    // every change committed after this returns is seen.
    std::unique_ptr<subprocess> start_tail(std::vector<std::string> args) {
        std::vector<std::string> argv = {pgpush_binary(), "tail", "--db", pg().url()};
        argv.insert(argv.end(), args.begin(), args.end());
        auto p = std::make_unique<subprocess>(argv);
        EXPECT_TRUE(p->wait_for_stderr("streaming from slot")) << p->stderr_text();
        return p;
    }

    // The next JSON line, or a failed expectation and null.
    static nlohmann::json next(subprocess& p) {
        auto line = p.read_line();
        EXPECT_TRUE(line) << "no output line; stderr:\n" << p.stderr_text();
        if (!line) return nullptr;
        return nlohmann::json::parse(*line);
    }

    // The next line's raw text.
    static std::string next_raw(subprocess& p) {
        auto line = p.read_line();
        EXPECT_TRUE(line) << "no output line; stderr:\n" << p.stderr_text();
        return line.value_or("");
    }

    static inline std::unique_ptr<pg_cluster> cluster_;
};

} // namespace pgpush::testing
