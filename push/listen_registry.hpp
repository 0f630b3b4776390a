#pragma once

// NOTIFY listens: which connections listen on which channel, under which rule. A notification
// goes to every listener whose rule's filter admits its payload, as one shared body.

#include <cstdint>
#include <functional>
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

    // Makes the lookup resolver for one subscriber's claims; `read` gets the (lookup, key)
    // results the plan read, `not_ready` a lookup not in memory yet.
    using resolver_factory = std::function<rules::lookup_resolver(
        const nlohmann::json& claims, std::vector<std::pair<std::string, std::string>>& read,
        std::string& not_ready)>;

    struct refusal {
        protocol::error_code code;
        std::string message;
        std::string waiting_for; // a lookup not in memory yet: try again once it is
    };

    bool has(std::uint64_t connection, const std::string& id) const;
    // Plans and registers a listen; nullopt when it is in force.
    std::optional<refusal> add(const std::shared_ptr<const rules::rule_set>& rules,
                               std::weak_ptr<client> to, std::uint64_t connection,
                               std::shared_ptr<const std::string> id, const std::string& channel,
                               std::shared_ptr<const nlohmann::json> claims,
                               const resolver_factory& lookups = {});
    // The client to answer when removed; nullopt when there was no such listen.
    std::optional<std::weak_ptr<client>> remove(std::uint64_t connection, const std::string& id);
    void remove_connection(std::uint64_t connection);
    void set_claims(std::uint64_t connection, std::shared_ptr<const nlohmann::json> claims);
    // New rules or claims: every listen is planned again; those no longer allowed end with their
    // error, sent through `out`.
    void replan(const std::shared_ptr<const rules::rule_set>& rules, outbox& out,
                const resolver_factory& lookups = {});
    // The results of `lookup` for `keys` changed: the listens that read one are planned again.
    void replan_reading(const std::string& lookup, const std::vector<std::string>& keys,
                        const std::shared_ptr<const rules::rule_set>& rules,
                        const resolver_factory& lookups, outbox& out);

    void on_notify(const cdc::notification& n, outbox& out);

private:
    struct entry {
        std::uint64_t connection = 0;
        std::shared_ptr<const std::string> id;
        std::weak_ptr<client> to;
        std::shared_ptr<const nlohmann::json> claims;
        rules::listen_plan plan;
        std::vector<std::pair<std::string, std::string>> lookups; // results the plan read
    };
    // Plans `e` for `channel`; the refusal when it may not listen (any more).
    std::optional<refusal> plan(entry& e, const std::string& channel,
                                const std::shared_ptr<const rules::rule_set>& rules,
                                const resolver_factory& lookups);
    metrics& metrics_;
    std::unordered_map<std::string, std::vector<entry>> by_channel_;
};

// A rules refusal as the protocol's error code.
protocol::error_code error_code_of(rules::plan_error_code c);

} // namespace pgpush::push
