#pragma once

// Shared by the `pgpush serve` integration tests: one cluster and one chat schema per test
// binary, a running engine per test (its own slot and publication), real WebSocket clients.

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/support/pg_cluster.hpp"
#include "tests/support/subprocess.hpp"
#include "tests/support/ws_client.hpp"

namespace pgpush::testing {

inline const std::string test_secret = "test-secret-that-is-at-least-32-bytes-long";

class serve_test : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        if (!cluster_) {
            cluster_ = std::make_unique<pg_cluster>();
            cluster_->exec(R"(
                CREATE TABLE rooms (id int PRIMARY KEY, name text NOT NULL, tenant_id int NOT NULL DEFAULT 1);
                CREATE TABLE messages (id bigserial PRIMARY KEY, room_id int NOT NULL, sender_id int NOT NULL,
                                       body text NOT NULL, secret text, sent_at timestamptz NOT NULL DEFAULT now());
                CREATE TABLE audit (id int PRIMARY KEY, what text);
                INSERT INTO rooms VALUES (1, 'general'), (2, 'random'), (3, 'private');
            )");
        }
    }

    pg_cluster& pg() { return *cluster_; }

    // rules.yaml used by start() unless a test passes its own.
    static std::string default_rules() {
        return R"(
tables:
  messages:
    allow: "auth.sub is not null"
    rows: "row.room_id in auth.rooms or row.sender_id = auth.uid"
    columns: [id, room_id, sender_id, body, sent_at]
  rooms:
    rows: "true"
    columns: [id, name]
channels:
  typing:
    filter: "payload.room in auth.rooms"
)";
    }

    struct launch_options {
        std::vector<std::string> extra;                       // more flags
        std::vector<std::pair<std::string, std::string>> env; // e.g. the fault shim
        subprocess_limits limits;                             // e.g. fewer descriptors
        bool wait = true; // wait until it streams and listens (start() needs a database up)
    };

    // Starts `pgpush serve` with its own slot/publication and waits until it listens.
    void start(const std::string& rules = default_rules(), std::vector<std::string> extra = {}) {
        launch(rules, launch_options{std::move(extra), {}, {}, true});
    }

    // The same with more control; `data_dir()` and `rules_path()` are the engine's. A second
    // launch after the engine stopped reuses its slot, publication and data directory (a restart).
    void launch(const std::string& rules, launch_options o) {
        prepare(rules);
        std::vector<std::string> argv = {
            pgpush_binary(), "serve",       "--db",      pg().url(), "--rules",       rules_path_,
            "--listen",      "127.0.0.1:0", "--slot",    name_,      "--publication", name_,
            "--jwt-secret",  test_secret,   "--threads", "2",        "--data-dir",    data_dir_};
        argv.insert(argv.end(), o.extra.begin(), o.extra.end());
        server_ = std::make_unique<subprocess>(argv, o.env, o.limits);
        if (o.wait) await_started();
    }

    // Picks the engine's names (slot, publication, rules file, data directory) before the first
    // launch, for a test that needs them in its launch options.
    void prepare(const std::string& rules = default_rules()) {
        static int n = 0;
        if (!name_.empty()) return;
        name_ = "serve_" + std::to_string(::getpid()) + "_" + std::to_string(++n);
        rules_path_ = "/tmp/pgpush-" + name_ + ".yaml";
        std::ofstream(rules_path_) << rules;
        // The engine's change log goes to a directory of the test's own, removed at the end.
        data_dir_ = "/tmp/pgpush-" + name_ + ".data";
    }

    // Waits until the engine streams and listens, and learns its port.
    void await_started(std::chrono::milliseconds timeout = 30s) {
        ASSERT_TRUE(server_->wait_for_stderr("streaming from slot", 1, timeout))
            << server_->stderr_text();
        ASSERT_TRUE(server_->wait_for_stderr("listening on 127.0.0.1:", 1, timeout))
            << server_->stderr_text();
        const auto& err = server_->stderr_text();
        auto at = err.rfind("listening on 127.0.0.1:");
        port_ = std::stoi(err.substr(at + 23));
    }

    const std::string& data_dir() const { return data_dir_; }
    const std::string& rules_path() const { return rules_path_; }
    const std::string& slot() const { return name_; }

    void TearDown() override {
        if (server_) {
            server_->signal(SIGTERM);
            auto status = server_->wait();
            EXPECT_EQ(status.value_or(-1), 0) << server_->stderr_text();
            server_.reset();
        }
        if (!rules_path_.empty()) std::remove(rules_path_.c_str());
        if (!data_dir_.empty()) std::filesystem::remove_all(data_dir_);
    }

    int port() const { return port_; }

    static std::string token(const nlohmann::json& claims) {
        return make_token(claims, test_secret);
    }

    // A client authenticated with `claims` (through the auth message).
    std::unique_ptr<ws_client> connect(const nlohmann::json& claims) {
        auto c = std::make_unique<ws_client>(port_);
        c->send(nlohmann::json{{"type", "auth"}, {"token", token(claims)}});
        auto m = c->next();
        EXPECT_TRUE(m && (*m)["type"] == "authenticated") << (m ? m->dump() : "no reply");
        return c;
    }

    // Subscribes and collects the snapshot: returns the rows, having seen `ready`.
    static nlohmann::json subscribe(ws_client& c, const std::string& id, const std::string& query,
                                    nlohmann::json extra = nlohmann::json::object()) {
        nlohmann::json m = {{"type", "subscribe"}, {"id", id}, {"query", query}};
        m.update(extra);
        c.send(m);
        nlohmann::json rows = nlohmann::json::array();
        while (auto r = c.next()) {
            if ((*r)["type"] == "rows") {
                for (auto& row : (*r)["rows"])
                    rows.push_back(row);
            } else if ((*r)["type"] == "ready") {
                return rows;
            } else {
                ADD_FAILURE() << "before ready: " << r->dump();
                return rows;
            }
        }
        ADD_FAILURE() << "no ready for " << id;
        return rows;
    }

    subprocess& server() { return *server_; }

    // Puts the shared cluster back to the schema's starting data (messages and audit empty, ids
    // from 1; rooms 1-3 only) and drops the slots of engines that have stopped, so a test does not
    // depend on the ones before it. Call it before start(): a running engine would see the
    // TRUNCATE.
    void reset_data() {
        pg().exec(R"(
            TRUNCATE messages, audit RESTART IDENTITY;
            DELETE FROM rooms WHERE id > 3;
            SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE NOT active;
        )");
    }

    // Replaces the running engine's rules file as editors save: a whole new file renamed over the
    // old one, so the engine never reads a half-written file.
    void rewrite_rules(const std::string& rules) {
        const std::string tmp = rules_path_ + ".new";
        std::ofstream(tmp) << rules;
        ASSERT_EQ(std::rename(tmp.c_str(), rules_path_.c_str()), 0) << rules_path_;
    }

    static inline std::unique_ptr<pg_cluster> cluster_;
    std::unique_ptr<subprocess> server_;
    std::string name_; // of the slot and publication
    std::string rules_path_;
    std::string data_dir_;
    int port_ = 0;
};

} // namespace pgpush::testing
