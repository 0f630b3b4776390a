#pragma once

// A client's copy of one subscription's result, kept as a real client keeps it: rows by key,
// changed by rows/insert/update/delete/truncate/transaction messages, dropped by `reset`. Tests
// compare it with what Postgres answers to the same query.

#include <map>
#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

namespace pgpush::testing {

struct live_copy {
    explicit live_copy(std::string key_column = "id") : key(std::move(key_column)) {}

    std::string key;
    std::map<std::string, nlohmann::json> rows; // by the key column's JSON text
    bool ready = false;   // `ready` seen since the last `reset` (or the start)
    std::string position; // the last position received (event, ready or reset)
    std::size_t resets = 0;
    std::string error; // the last error's code, if any

    // Applies one message addressed to this subscription.
    void apply(const nlohmann::json& m) {
        const std::string type = m.value("type", "");
        if (type == "rows") {
            for (const auto& r : m["rows"])
                rows[r.at(key).dump()] = r;
        } else if (type == "ready") {
            ready = true;
            if (!m["position"].get<std::string>().empty()) position = m["position"];
        } else if (type == "reset") {
            rows.clear();
            ready = false;
            ++resets;
            position = m["position"];
        } else if (type == "transaction") {
            for (const auto& c : m["changes"])
                change(c.value("type", ""), c);
            position = m["position"];
        } else if (type == "insert" || type == "update" || type == "delete" || type == "truncate") {
            change(type, m);
            position = m["position"];
        } else if (type == "error") {
            error = m.value("code", "");
        } else {
            throw std::runtime_error("unexpected message " + m.dump());
        }
    }

private:
    void change(const std::string& type, const nlohmann::json& m) {
        if (type == "truncate") {
            rows.clear();
        } else if (type == "delete") {
            rows.erase(m["row"].at(key).dump());
        } else {
            if (type == "update" && m.contains("old")) rows.erase(m["old"].at(key).dump());
            rows[m["row"].at(key).dump()] = m["row"];
        }
    }
};

} // namespace pgpush::testing
