#pragma once

// NOTIFY listens: which connections listen on which channel, under which rule. A notification
// goes to every listener whose rule's filter admits its payload, as one shared body.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "cdc/notify_listener.hpp"
#include "push/client.hpp"
#include "push/metrics.hpp"
#include "push/outbox.hpp"
#include "push/protocol.hpp"
#include "rules/plan.hpp"

namespace pgpush::push {

class listen_registry {
public:
    explicit listen_registry(metrics& m) : metrics_(m) {}

    struct refusal {
        protocol::error_code code;
        std::string message;
    };

    bool has(std::uint64_t connection, const std::string& id) const;
    // Plans and registers a listen; nullopt when it is in force.
    std::optional<refusal> add(const std::shared_ptr<const rules::rule_set>& rules,
                               std::weak_ptr<client> to, std::uint64_t connection,
                               std::shared_ptr<const std::string> id, const std::string& channel,
                               std::shared_ptr<const nlohmann::json> claims);
    // The client to answer when removed; nullopt when there was no such listen.
    std::optional<std::weak_ptr<client>> remove(std::uint64_t connection, const std::string& id);
    void remove_connection(std::uint64_t connection);
    void set_claims(std::uint64_t connection, std::shared_ptr<const nlohmann::json> claims);
    // New rules or claims: every listen is planned again; those no longer allowed end with their
    // error, sent through `out`.
    void replan(const std::shared_ptr<const rules::rule_set>& rules, outbox& out);

    void on_notify(const cdc::notification& n, outbox& out);

private:
    struct entry {
        std::uint64_t connection = 0;
        std::shared_ptr<const std::string> id;
        std::weak_ptr<client> to;
        std::shared_ptr<const nlohmann::json> claims;
        rules::listen_plan plan;
    };
    metrics& metrics_;
    std::unordered_map<std::string, std::vector<entry>> by_channel_;
};

// A rules refusal as the protocol's error code.
protocol::error_code error_code_of(rules::plan_error_code c);

} // namespace pgpush::push
