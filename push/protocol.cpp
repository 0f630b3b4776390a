#include "push/protocol.hpp"

#include "cdc/json_writer.hpp"

namespace pgpush::push::protocol {

std::string_view to_string(error_code c) {
    switch (c) {
    case error_code::unauthenticated:
        return "unauthenticated";
    case error_code::forbidden:
        return "forbidden";
    case error_code::bad_query:
        return "bad_query";
    case error_code::unknown_table:
        return "unknown_table";
    case error_code::unknown_column:
        return "unknown_column";
    case error_code::bad_message:
        return "bad_message";
    case error_code::unknown_type:
        return "unknown_type";
    case error_code::message_too_large:
        return "message_too_large";
    case error_code::too_many_subscriptions:
        return "too_many_subscriptions";
    case error_code::too_many_connections:
        return "too_many_connections";
    case error_code::rate_limited:
        return "rate_limited";
    case error_code::duplicate_id:
        return "duplicate_id";
    case error_code::unknown_id:
        return "unknown_id";
    case error_code::resync_required:
        return "resync_required";
    case error_code::snapshot_too_large:
        return "snapshot_too_large";
    case error_code::unavailable:
        return "unavailable";
    case error_code::internal:
        return "internal";
    }
    return "internal";
}

namespace {

using nlohmann::json;

parse_error fail(error_code code, std::string message, std::optional<std::string> id = {}) {
    return parse_error{code, std::move(message), std::move(id)};
}

// The id as JSON text: a string of at most max_id_bytes, or an integer.
std::optional<std::string> id_of(const json& m) {
    auto it = m.find("id");
    if (it == m.end()) return std::nullopt;
    if (it->is_string() && !it->get_ref<const std::string&>().empty() &&
        it->get_ref<const std::string&>().size() <= max_id_bytes) {
        return it->dump();
    }
    if (it->is_number_integer()) return it->dump();
    return std::nullopt;
}

std::variant<std::string, parse_error> string_field(const json& m, const char* name,
                                                    std::size_t max,
                                                    const std::optional<std::string>& id) {
    auto it = m.find(name);
    if (it == m.end())
        return fail(error_code::bad_message, std::string("missing \"") + name + "\"", id);
    if (!it->is_string())
        return fail(error_code::bad_message, std::string("\"") + name + "\" must be a string", id);
    const auto& s = it->get_ref<const std::string&>();
    if (s.size() > max) {
        return fail(
            error_code::bad_message,
            std::string("\"") + name + "\" is longer than " + std::to_string(max) + " bytes", id);
    }
    return s;
}

// Whether `text` nests arrays and objects deeper than `max` (brackets inside strings do not count).
// nlohmann::json parses without recursion, but copies and dumps recurse once per level.
bool nests_deeper_than(std::string_view text, std::size_t max) {
    std::size_t depth = 0;
    bool in_string = false;
    bool escaped = false;
    for (const char c : text) {
        if (in_string) {
            if (escaped) {
                escaped = false;
            } else if (c == '\\') {
                escaped = true;
            } else if (c == '"') {
                in_string = false;
            }
        } else if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{') {
            if (++depth > max) return true;
        } else if ((c == ']' || c == '}') && depth > 0) {
            --depth;
        }
    }
    return false;
}

// At most `max` bytes of `s`, cut at a character boundary (s is valid UTF-8: nlohmann checked).
std::string_view prefix(std::string_view s, std::size_t max) {
    if (s.size() <= max) return s;
    std::size_t n = max;
    while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80)
        --n;
    return s.substr(0, n);
}

} // namespace

std::variant<client_message, parse_error> parse(std::string_view text) {
    if (nests_deeper_than(text, max_nesting_depth)) {
        return fail(error_code::bad_message,
                    "nested deeper than " + std::to_string(max_nesting_depth) + " levels");
    }
    // nlohmann::json stops at a NUL as at the end of input; JSON has no raw NUL anywhere.
    if (text.find('\0') != std::string_view::npos)
        return fail(error_code::bad_message, "not valid JSON");
    json m = json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (m.is_discarded()) return fail(error_code::bad_message, "not valid JSON");
    if (!m.is_object()) return fail(error_code::bad_message, "a message must be a JSON object");
    auto type_it = m.find("type");
    if (type_it == m.end() || !type_it->is_string()) {
        return fail(error_code::bad_message, "missing \"type\"", id_of(m));
    }
    const std::string& type = type_it->get_ref<const std::string&>();
    const auto id = id_of(m);
    const bool needs_id =
        type == "subscribe" || type == "unsubscribe" || type == "listen" || type == "unlisten";
    if (needs_id && !id) {
        return fail(error_code::bad_message, "\"id\" must be a non-empty string of at most " +
                                                 std::to_string(max_id_bytes) +
                                                 " bytes, or an integer");
    }
    if (type == "auth") {
        auto token = string_field(m, "token", max_token_bytes, id);
        if (auto* e = std::get_if<parse_error>(&token)) return *e;
        return auth{std::get<std::string>(token)};
    }
    if (type == "subscribe") {
        subscribe s;
        s.id = *id;
        auto q = string_field(m, "query", max_query_bytes, id);
        if (auto* e = std::get_if<parse_error>(&q)) return *e;
        s.query = std::get<std::string>(q);
        if (auto it = m.find("params"); it != m.end()) {
            if (!it->is_array())
                return fail(error_code::bad_message, "\"params\" must be an array", id);
            if (it->size() > max_params) {
                return fail(error_code::bad_message,
                            "at most " + std::to_string(max_params) + " params", id);
            }
            for (const auto& p : *it) {
                if (!(p.is_null() || p.is_string() || p.is_number() || p.is_boolean())) {
                    return fail(error_code::bad_message,
                                "params must be strings, numbers, booleans or null", id);
                }
                s.params.push_back(p);
            }
        }
        if (auto it = m.find("snapshot"); it != m.end()) {
            if (!it->is_boolean())
                return fail(error_code::bad_message, "\"snapshot\" must be true or false", id);
            s.snapshot = it->get<bool>();
        }
        if (auto it = m.find("after"); it != m.end() && !it->is_null()) {
            if (!it->is_string())
                return fail(error_code::bad_message, "\"after\" must be a position string", id);
            if (it->get_ref<const std::string&>().size() > max_position_bytes)
                return fail(error_code::bad_message, "\"after\" is not a position", id);
            s.after = it->get<std::string>();
        }
        if (auto it = m.find("transactions"); it != m.end()) {
            if (!it->is_boolean())
                return fail(error_code::bad_message, "\"transactions\" must be true or false", id);
            s.transactions = it->get<bool>();
        }
        return s;
    }
    if (type == "unsubscribe") return unsubscribe{*id};
    if (type == "listen") {
        auto ch = string_field(m, "channel", max_channel_bytes, id);
        if (auto* e = std::get_if<parse_error>(&ch)) return *e;
        if (std::get<std::string>(ch).empty())
            return fail(error_code::bad_message, "\"channel\" is empty", id);
        return listen{*id, std::get<std::string>(ch)};
    }
    if (type == "unlisten") return unlisten{*id};
    if (type == "ping") {
        auto it = m.find("data");
        return ping{it == m.end() ? json() : std::move(*it)};
    }
    return fail(error_code::unknown_type,
                "unknown message type \"" + std::string(prefix(type, 64)) + "\"", id);
}

std::string error(error_code code, std::string_view message, std::string_view id) {
    std::string out = "{\"type\":\"error\"";
    if (!id.empty()) {
        out += ",\"id\":";
        out += id;
    }
    out += ",\"code\":\"";
    out += to_string(code);
    out += "\",\"message\":";
    cdc::json::append_string(out, message);
    out += '}';
    return out;
}

std::string authenticated(const nlohmann::json& claims) {
    json m = {{"type", "authenticated"}};
    if (auto it = claims.find("sub"); it != claims.end()) m["sub"] = *it;
    if (auto it = claims.find("exp"); it != claims.end()) m["exp"] = *it;
    return m.dump();
}

std::string pong(const nlohmann::json& data) {
    json m = {{"type", "pong"}};
    if (!data.is_null()) m["data"] = data;
    return m.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string ready(std::string_view id, std::string_view position) {
    std::string out = "{\"type\":\"ready\",\"id\":";
    out += id;
    out += ",\"position\":";
    cdc::json::append_string(out, position);
    out += '}';
    return out;
}

std::string reset(std::string_view id, std::string_view position) {
    std::string out = "{\"type\":\"reset\",\"id\":";
    out += id;
    out += ",\"position\":";
    cdc::json::append_string(out, position);
    out += '}';
    return out;
}

std::string unsubscribed(std::string_view id) {
    std::string out = "{\"type\":\"unsubscribed\",\"id\":";
    out += id;
    out += '}';
    return out;
}

std::string_view event_head(std::string_view type) {
    if (type == "insert") return "{\"type\":\"insert\",\"id\":";
    if (type == "update") return "{\"type\":\"update\",\"id\":";
    if (type == "delete") return "{\"type\":\"delete\",\"id\":";
    return "{\"type\":\"truncate\",\"id\":";
}

std::string transaction(std::string_view id, std::span<const batch_change> changes, bool last) {
    constexpr std::string_view open = "{\"type\":\"transaction\",\"id\":";
    constexpr std::string_view position_key = ",\"position\":";
    std::size_t size = open.size() + id.size() + 32;
    for (const auto& c : changes)
        size += c.type.size() + c.body.size() + 12;
    std::string out;
    out.reserve(size);
    out += open;
    out += id;
    out += ",\"changes\":[";
    for (std::size_t i = 0; i < changes.size(); ++i) {
        if (i) out += ',';
        out += "{\"type\":\"";
        out += changes[i].type;
        out += '"';
        out += changes[i].body;
    }
    out += ']';
    if (!changes.empty()) {
        // A body ends with ,"position":..,"commit_time":..}: its last `,"position":` starts that
        // trailer (a column named position comes earlier, in the row).
        const std::string_view body = changes.back().body;
        const auto at = body.rfind(position_key);
        if (at != std::string_view::npos && body.back() == '}')
            out += body.substr(at, body.size() - 1 - at);
    }
    out += last ? ",\"last\":true}" : ",\"last\":false}";
    return out;
}

std::string rows_open(std::string_view id) {
    std::string out = "{\"type\":\"rows\",\"id\":";
    out += id;
    out += ",\"rows\":[";
    return out;
}

std::string notify(std::string_view id, std::string_view channel, std::string_view payload) {
    std::string out = "{\"type\":\"notify\",\"id\":";
    out += id;
    out += ",\"channel\":";
    cdc::json::append_string(out, channel);
    out += ",\"payload\":";
    if (!cdc::json::append_minified(out, payload)) cdc::json::append_string(out, payload);
    out += '}';
    return out;
}

} // namespace pgpush::push::protocol
