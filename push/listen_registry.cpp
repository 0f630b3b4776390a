#include "push/listen_registry.hpp"

#include <algorithm>

namespace pgpush::push {

using protocol::error_code;

error_code error_code_of(rules::plan_error_code c) {
    switch (c) {
    case rules::plan_error_code::bad_query:
        return error_code::bad_query;
    case rules::plan_error_code::unknown_table:
        return error_code::unknown_table;
    case rules::plan_error_code::forbidden:
        return error_code::forbidden;
    case rules::plan_error_code::unknown_column:
        return error_code::unknown_column;
    }
    return error_code::bad_query;
}

bool listen_registry::has(std::uint64_t connection, const std::string& id) const {
    for (const auto& [ch, entries] : by_channel_) {
        for (const auto& e : entries) {
            if (e.connection == connection && *e.id == id) return true;
        }
    }
    return false;
}

std::optional<listen_registry::refusal>
listen_registry::plan(entry& e, const std::string& channel,
                      const std::shared_ptr<const rules::rule_set>& rules,
                      const resolver_factory& lookups) {
    if (!rules) return refusal{error_code::unavailable, "no rules are loaded", {}};
    static const nlohmann::json no_claims = nlohmann::json::object();
    const nlohmann::json& claims = e.claims ? *e.claims : no_claims;
    std::vector<std::pair<std::string, std::string>> read;
    std::string not_ready;
    auto r =
        rules::plan_listen(rules, channel, claims,
                           lookups ? lookups(claims, read, not_ready) : rules::lookup_resolver{});
    if (auto* err = std::get_if<rules::plan_error>(&r))
        return refusal{error_code_of(err->code), err->message, {}};
    if (!not_ready.empty()) {
        return refusal{error_code::unavailable,
                       "lookup." + not_ready + " is not in memory yet; listen again shortly",
                       not_ready};
    }
    e.plan = std::move(std::get<rules::listen_plan>(r));
    std::sort(read.begin(), read.end());
    read.erase(std::unique(read.begin(), read.end()), read.end());
    e.lookups = std::move(read);
    return std::nullopt;
}

std::optional<listen_registry::refusal>
listen_registry::add(const std::shared_ptr<const rules::rule_set>& rules, std::weak_ptr<client> to,
                     std::uint64_t connection, std::shared_ptr<const std::string> id,
                     const std::string& channel, std::shared_ptr<const nlohmann::json> claims,
                     const resolver_factory& lookups) {
    entry e{connection, std::move(id), std::move(to), std::move(claims), {}, {}};
    if (auto refused = plan(e, channel, rules, lookups)) return refused;
    by_channel_[channel].push_back(std::move(e));
    ++metrics_.listens;
    return std::nullopt;
}

std::optional<std::weak_ptr<client>> listen_registry::remove(std::uint64_t connection,
                                                             const std::string& id) {
    for (auto& [ch, entries] : by_channel_) {
        for (auto it = entries.begin(); it != entries.end(); ++it) {
            if (it->connection == connection && *it->id == id) {
                auto to = it->to;
                entries.erase(it);
                --metrics_.listens;
                return to;
            }
        }
    }
    return std::nullopt;
}

void listen_registry::remove_connection(std::uint64_t connection) {
    for (auto& [ch, entries] : by_channel_) {
        const auto before = entries.size();
        std::erase_if(entries, [&](const entry& e) { return e.connection == connection; });
        metrics_.listens -= static_cast<std::int64_t>(before - entries.size());
    }
}

void listen_registry::set_claims(std::uint64_t connection,
                                 std::shared_ptr<const nlohmann::json> claims) {
    for (auto& [ch, entries] : by_channel_) {
        for (auto& e : entries) {
            if (e.connection == connection) e.claims = claims;
        }
    }
}

void listen_registry::replan(const std::shared_ptr<const rules::rule_set>& rules, outbox& out,
                             const resolver_factory& lookups) {
    if (!rules) return; // rules, once loaded, are only ever replaced
    for (auto& [ch, entries] : by_channel_) {
        for (auto it = entries.begin(); it != entries.end();) {
            if (auto refused = plan(*it, ch, rules, lookups)) {
                metrics_.count_error(std::string(protocol::to_string(refused->code)));
                out.send(it->to,
                         frame::of(protocol::error(refused->code, refused->message, *it->id)));
                --metrics_.listens;
                it = entries.erase(it);
                continue;
            }
            ++it;
        }
    }
}

void listen_registry::replan_reading(const std::string& lookup,
                                     const std::vector<std::string>& keys,
                                     const std::shared_ptr<const rules::rule_set>& rules,
                                     const resolver_factory& lookups, outbox& out) {
    for (auto& [ch, entries] : by_channel_) {
        for (auto it = entries.begin(); it != entries.end();) {
            const bool reads =
                std::any_of(it->lookups.begin(), it->lookups.end(), [&](const auto& d) {
                    return d.first == lookup &&
                           std::find(keys.begin(), keys.end(), d.second) != keys.end();
                });
            if (reads) {
                if (auto refused = plan(*it, ch, rules, lookups)) {
                    metrics_.count_error(std::string(protocol::to_string(refused->code)));
                    out.send(it->to,
                             frame::of(protocol::error(refused->code, refused->message, *it->id)));
                    --metrics_.listens;
                    it = entries.erase(it);
                    continue;
                }
            }
            ++it;
        }
    }
}

void listen_registry::on_notify(const cdc::notification& n, outbox& out) {
    ++metrics_.notifications_in;
    auto it = by_channel_.find(n.channel);
    if (it == by_channel_.end() || it->second.empty()) return;
    auto payload = nlohmann::json::parse(n.payload, nullptr, false);
    const nlohmann::json* as_json = payload.is_discarded() ? nullptr : &payload;
    std::shared_ptr<const std::string> body;
    for (const auto& e : it->second) {
        if (e.plan.filter) {
            // A filter reads payload fields: a payload that is not JSON has none, which denies.
            if (as_json == nullptr ||
                e.plan.filter->evaluate({{}, {}, as_json}) != rules::tri::true_)
                continue;
        }
        if (!body) {
            std::string full = protocol::notify("0", n.channel, n.payload);
            // Everything after the id: shared by every listener.
            body = std::make_shared<const std::string>(full.substr(full.find(",\"channel\"")));
        }
        out.send(e.to, frame{"{\"type\":\"notify\",\"id\":", e.id, body});
        ++metrics_.notifications_out;
    }
}

} // namespace pgpush::push
