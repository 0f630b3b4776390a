// Fuzzes the client-message parser, push::protocol::parse, and the server messages built from
// what it returns.
//
// Input, first byte:
//   even: the rest is a client message, any bytes.
//   odd:  structured. The rest draws a message object: a type (each known one, or another) and
//         the fields of every message type (id, token, query, params, snapshot, after,
//         transactions, channel, data) absent, of the right type, at a length limit, or of any
//         JSON type.
// Properties: parse never throws; an error has a message and, when it names an id, a valid one
// (a JSON string of 1 to max_id_bytes bytes or an integer, as canonical JSON text); a message
// respects every limit (ids, query, params, token, channel, position); the server messages built
// from its fields (error, ready, unsubscribed, rows, pong) are valid JSON that give them back;
// and in the structured mode the parse is exactly what docs/protocol.md says (the model below):
// accepted or refused with the right code, fields as sent.

#include <cstddef>
#include <cstdint>
#include <string>

#include "push/protocol.hpp"
#include "tests/fuzz/fuzz_json.hpp"

using namespace pgpush::fuzz;
namespace protocol = pgpush::push::protocol;

namespace {

using protocol::error_code;

json parse_or_fail(const std::string& text, const char* what) {
    json j = json::parse(text, nullptr, false);
    if (j.is_discarded()) fail(what, text);
    return j;
}

// An id as parse returns it: the canonical JSON text of a short non-empty string or an integer.
void check_id(const std::string& id) {
    const json j = parse_or_fail(id, "an id is not JSON");
    if (j.is_string()) {
        const auto& s = j.get_ref<const std::string&>();
        if (s.empty() || s.size() > protocol::max_id_bytes) fail("an id of the wrong length", id);
    } else if (!j.is_number_integer()) {
        fail("an id neither string nor integer", id);
    }
    if (j.dump() != id) fail("an id that is not canonical JSON", id);
}

// The server messages that echo an id are valid JSON and give it back.
void check_replies(const std::string& id) {
    const json want = json::parse(id);
    for (const auto& text :
         {protocol::ready(id, "e/p"), protocol::unsubscribed(id),
          protocol::rows_open(id) + "{\"a\":1}" + std::string(protocol::rows_close),
          protocol::error(error_code::forbidden, "no", id), protocol::notify(id, "c", "{}"),
          std::string(protocol::event_head("insert")) + id + ",\"row\":{}}"}) {
        const json m = parse_or_fail(text, "a reply is not JSON");
        if (!m.is_object() || m["id"] != want) fail("a reply lost its id", text);
    }
}

void check_error(const protocol::parse_error& e) {
    if (e.message.empty()) fail("an error without a message");
    if (e.message.size() > 300) fail("an error message this long quotes the input", e.message);
    if (e.id) {
        check_id(*e.id);
        check_replies(*e.id);
    }
    const json m = parse_or_fail(
        protocol::error(e.code, e.message, e.id ? std::string_view(*e.id) : std::string_view{}),
        "an error reply is not JSON");
    if (m["type"] != "error" || m["code"] != std::string(protocol::to_string(e.code)) ||
        m["message"] != e.message || m.contains("id") != e.id.has_value()) {
        fail("an error reply does not say what it was given", m.dump());
    }
}

bool is_scalar(const json& j) {
    return j.is_null() || j.is_string() || j.is_number() || j.is_boolean();
}

void check_message(const protocol::client_message& message) {
    if (auto* a = std::get_if<protocol::auth>(&message)) {
        if (a->token.size() > protocol::max_token_bytes) fail("a token over its limit");
    } else if (auto* s = std::get_if<protocol::subscribe>(&message)) {
        check_id(s->id);
        check_replies(s->id);
        if (s->query.size() > protocol::max_query_bytes) fail("a query over its limit");
        if (s->params.size() > protocol::max_params) fail("too many params");
        for (const auto& p : s->params)
            if (!is_scalar(p)) fail("a param that is not a scalar", p.dump());
        if (s->after && s->after->size() > protocol::max_position_bytes)
            fail("a position over its limit");
    } else if (auto* u = std::get_if<protocol::unsubscribe>(&message)) {
        check_id(u->id);
    } else if (auto* l = std::get_if<protocol::listen>(&message)) {
        check_id(l->id);
        if (l->channel.empty() || l->channel.size() > protocol::max_channel_bytes)
            fail("a channel of the wrong length", l->channel);
        check_replies(l->id);
    } else if (auto* ul = std::get_if<protocol::unlisten>(&message)) {
        check_id(ul->id);
    } else if (auto* p = std::get_if<protocol::ping>(&message)) {
        const json pong = parse_or_fail(protocol::pong(p->data), "a pong is not JSON");
        if (pong["type"] != "pong") fail("a pong of another type");
        if (!p->data.is_null() && pong["data"] != p->data) fail("a pong lost its data");
    }
}

// Any text: the properties that hold whatever it is.
std::variant<protocol::client_message, protocol::parse_error> check(const std::string& text) {
    std::variant<protocol::client_message, protocol::parse_error> r;
    try {
        r = protocol::parse(text);
    } catch (const std::exception& e) {
        fail("parse threw", e.what());
    }
    if (auto* e = std::get_if<protocol::parse_error>(&r)) {
        check_error(*e);
    } else {
        check_message(std::get<protocol::client_message>(r));
    }
    return r;
}

// ---- the structured mode's model of docs/protocol.md ----

bool valid_id(const json& m) {
    auto it = m.find("id");
    if (it == m.end()) return false;
    if (it->is_string())
        return !it->get_ref<const std::string&>().empty() &&
               it->get_ref<const std::string&>().size() <= protocol::max_id_bytes;
    return it->is_number_integer();
}

bool string_within(const json& m, const char* name, std::size_t max) {
    auto it = m.find(name);
    return it != m.end() && it->is_string() && it->get_ref<const std::string&>().size() <= max;
}

bool bool_or_absent(const json& m, const char* name) {
    auto it = m.find(name);
    return it == m.end() || it->is_boolean();
}

// nullopt: accepted; else the code of the refusal.
std::optional<error_code> expected(const json& m) {
    auto type = m.find("type");
    if (type == m.end() || !type->is_string()) return error_code::bad_message;
    const std::string& t = type->get_ref<const std::string&>();
    const bool needs_id =
        t == "subscribe" || t == "unsubscribe" || t == "listen" || t == "unlisten";
    if (needs_id && !valid_id(m)) return error_code::bad_message;
    if (t == "auth")
        return string_within(m, "token", protocol::max_token_bytes)
                   ? std::nullopt
                   : std::optional(error_code::bad_message);
    if (t == "subscribe") {
        if (!string_within(m, "query", protocol::max_query_bytes)) return error_code::bad_message;
        if (auto p = m.find("params"); p != m.end()) {
            if (!p->is_array() || p->size() > protocol::max_params) return error_code::bad_message;
            for (const auto& e : *p)
                if (!is_scalar(e)) return error_code::bad_message;
        }
        if (!bool_or_absent(m, "snapshot") || !bool_or_absent(m, "transactions"))
            return error_code::bad_message;
        if (auto a = m.find("after"); a != m.end() && !a->is_null() &&
                                      !string_within(m, "after", protocol::max_position_bytes))
            return error_code::bad_message;
        return std::nullopt;
    }
    if (t == "listen") {
        if (!string_within(m, "channel", protocol::max_channel_bytes) ||
            m["channel"].get_ref<const std::string&>().empty())
            return error_code::bad_message;
        return std::nullopt;
    }
    if (t == "unsubscribe" || t == "unlisten" || t == "ping") return std::nullopt;
    return error_code::unknown_type;
}

// The accepted message holds exactly the fields sent.
void check_fields(const json& m, const protocol::client_message& message) {
    const std::string t = m["type"];
    auto same_id = [&](const std::string& id) {
        if (json::parse(id) != m["id"]) fail("the id changed", id + " vs " + m["id"].dump());
    };
    if (auto* a = std::get_if<protocol::auth>(&message)) {
        if (t != "auth" || a->token != m["token"]) fail("auth fields changed", m.dump());
    } else if (auto* s = std::get_if<protocol::subscribe>(&message)) {
        if (t != "subscribe") fail("parsed as subscribe", m.dump());
        same_id(s->id);
        if (s->query != m["query"]) fail("query changed");
        const json params = m.value("params", json::array());
        if (json(s->params) != params) fail("params changed", m.dump());
        if (s->snapshot != m.value("snapshot", true)) fail("snapshot changed");
        if (s->transactions != m.value("transactions", false)) fail("transactions changed");
        const json after = m.value("after", json());
        if (s->after.has_value() != !after.is_null() || (s->after && *s->after != after))
            fail("after changed", m.dump());
    } else if (auto* u = std::get_if<protocol::unsubscribe>(&message)) {
        if (t != "unsubscribe") fail("parsed as unsubscribe", m.dump());
        same_id(u->id);
    } else if (auto* l = std::get_if<protocol::listen>(&message)) {
        if (t != "listen" || l->channel != m["channel"]) fail("listen fields changed", m.dump());
        same_id(l->id);
    } else if (auto* ul = std::get_if<protocol::unlisten>(&message)) {
        if (t != "unlisten") fail("parsed as unlisten", m.dump());
        same_id(ul->id);
    } else if (auto* p = std::get_if<protocol::ping>(&message)) {
        if (t != "ping" || p->data != m.value("data", json())) fail("ping changed", m.dump());
    }
}

// Strings at and around a limit, and the values each field wants.
json sized_string(FuzzedDataProvider& in) {
    static const std::size_t sizes[] = {0,
                                        1,
                                        protocol::max_channel_bytes,
                                        protocol::max_channel_bytes + 1,
                                        protocol::max_id_bytes,
                                        protocol::max_id_bytes + 1,
                                        protocol::max_position_bytes + 1,
                                        protocol::max_query_bytes,
                                        protocol::max_query_bytes + 1};
    const auto n = sizes[in.ConsumeIntegralInRange<std::size_t>(0, std::size(sizes) - 1)];
    // A multi-byte character at the end: limits are in bytes.
    if (n >= 2 && in.ConsumeBool()) return std::string(n - 2, 'q') + "\xc3\xa9";
    return std::string(n, 'q');
}

json interesting(FuzzedDataProvider& in) {
    static const char* const s[] = {"auth",        "subscribe",
                                    "unsubscribe", "listen",
                                    "unlisten",    "ping",
                                    "typing",      "SELECT id FROM messages WHERE room_id = $1",
                                    "e/0-0",       "8f48a0d7a562de63/00000000016B3748-00000003"};
    if (in.ConsumeBool()) return sized_string(in);
    return s[in.ConsumeIntegralInRange<std::size_t>(0, std::size(s) - 1)];
}

void set_field(FuzzedDataProvider& in, json& m, const char* name, const json& usual) {
    switch (in.ConsumeIntegralInRange<int>(0, 4)) {
    case 0:
    case 1:
        return; // absent
    case 2:
    case 3:
        m[name] = usual;
        return;
    default:
        m[name] = any_value(in, interesting);
    }
}

void structured(FuzzedDataProvider& in) {
    static const char* const types[] = {"auth",     "subscribe", "unsubscribe", "listen",
                                        "unlisten", "ping",      "pong",        "AUTH"};
    json m = json::object();
    if (in.ConsumeIntegralInRange<int>(0, 7) == 7) {
        m["type"] = any_value(in, interesting);
    } else {
        m["type"] = types[in.ConsumeIntegralInRange<std::size_t>(0, std::size(types) - 1)];
    }
    const json id =
        in.ConsumeBool() ? json(any_string(in, 8)) : json(in.ConsumeIntegral<std::int64_t>());
    set_field(in, m, "id", id);
    set_field(in, m, "token", "a.b.c");
    set_field(in, m, "query", "SELECT id FROM messages");
    json params = json::array();
    const int n = in.ConsumeIntegralInRange<int>(0, 3);
    for (int i = 0; i < n; ++i)
        params.push_back(any_value(in, interesting, 0, 0));
    set_field(in, m, "params", params);
    set_field(in, m, "snapshot", in.ConsumeBool());
    set_field(in, m, "transactions", in.ConsumeBool());
    set_field(in, m, "after", "e/0-0");
    set_field(in, m, "channel", "typing");
    set_field(in, m, "data", any_value(in, interesting));
    const int extra = in.ConsumeIntegralInRange<int>(0, 2);
    for (int i = 0; i < extra; ++i)
        m[any_string(in, 6)] = any_value(in, interesting);

    const std::string text = m.dump();
    const auto r = check(text);
    const auto want = expected(m);
    if (auto* e = std::get_if<protocol::parse_error>(&r)) {
        if (!want) fail("refused a valid message", text + ": " + e->message);
        if (e->code != *want) fail("refused with another code", text + ": " + e->message);
        // The id comes back whenever the message had a usable one.
        if (e->id.has_value() != valid_id(m)) fail("the error's id", text);
        if (e->id && json::parse(*e->id) != m["id"]) fail("the error's id changed", text);
    } else {
        if (want) fail("accepted an invalid message", text);
        check_fields(m, std::get<protocol::client_message>(r));
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    if (data[0] % 2 == 0) {
        check(std::string(reinterpret_cast<const char*>(data + 1), size - 1));
    } else {
        FuzzedDataProvider in(data + 1, size - 1);
        structured(in);
    }
    return 0;
}
