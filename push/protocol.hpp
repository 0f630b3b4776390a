#pragma once

// The WebSocket protocol (docs/protocol.md): JSON text messages with a `type`; replies to a
// subscription carry its client-chosen `id`. Pure: parsing and building messages, no I/O.

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

namespace pgpush::push::protocol {

// Stable error codes: clients switch on them.
enum class error_code {
    unauthenticated,        // no valid token yet, or it was refused or expired
    forbidden,              // the rules do not allow it
    bad_query,              // the query does not parse or is not supported
    unknown_table,          // no such table, or not one the rules make visible
    unknown_column,         // no such column
    bad_message,            // not JSON, not an object, a field missing or of the wrong type
    unknown_type,           // a `type` the server does not know
    message_too_large,      // over the maximum message size (the connection is closed)
    too_many_subscriptions, // per connection, or the table's max_subscriptions
    too_many_connections,   // per user (the connection is closed)
    rate_limited,           // subscribing faster than allowed
    duplicate_id,           // an id already in use on this connection
    unknown_id,             // unsubscribe/unlisten of an id not in use
    resync_required,        // the subscription ended; subscribe again to get a fresh snapshot
    snapshot_too_large,     // the initial result exceeds the server's row limit
    unavailable,            // the database cannot be reached right now; retry later
    internal,               // a bug; the message says what
};

std::string_view to_string(error_code c);

struct auth {
    std::string token;
};

struct subscribe {
    std::string id; // the id's JSON text: "\"s1\"" or "7", echoed verbatim
    std::string query;
    std::vector<nlohmann::json> params;
    bool snapshot = true;
    std::optional<std::string> after; // resume: replay the change log after this position
    bool transactions = false;        // each transaction's changes as one `transaction` message
};

struct unsubscribe {
    std::string id;
};

struct listen {
    std::string id;
    std::string channel;
};

struct unlisten {
    std::string id;
};

struct ping {
    nlohmann::json data; // echoed in the pong
};

using client_message = std::variant<auth, subscribe, unsubscribe, listen, unlisten, ping>;

struct parse_error {
    error_code code;
    std::string message;
    std::optional<std::string> id; // when the message had a usable id
};

// Limits on fields, in bytes.
constexpr std::size_t max_id_bytes = 128;
constexpr std::size_t max_query_bytes = 16 * 1024;
constexpr std::size_t max_params = 100;
constexpr std::size_t max_token_bytes = 16 * 1024;
constexpr std::size_t max_channel_bytes = 63; // Postgres' identifier length
constexpr std::size_t max_position_bytes = 128;
// Arrays and objects nested deeper than this are refused (bad_message) before parsing: copying
// and serialising a JSON value recurse once per level, and a message of nothing but brackets must
// not reach the stack of an I/O thread.
constexpr std::size_t max_nesting_depth = 64;

// Any text, any bytes: a message or a parse_error, never an exception. The ids of both are JSON
// texts: a string of 1 to max_id_bytes bytes or an integer.
std::variant<client_message, parse_error> parse(std::string_view text);

// ---- server messages (complete JSON texts) ----

// {"type":"error","id":..,"code":"..","message":".."}; no id field when `id` is empty.
std::string error(error_code code, std::string_view message, std::string_view id = {});
std::string authenticated(const nlohmann::json& claims);
std::string pong(const nlohmann::json& data);
std::string ready(std::string_view id, std::string_view position);
std::string unsubscribed(std::string_view id);
// {"type":"reset","id":..,"position":".."}: what the subscription may see changed at `position`
// (a lookup it reads changed): drop the rows of this subscription; `rows` and `ready` follow with
// its new result, then events as usual.
std::string reset(std::string_view id, std::string_view position);

// A change event is built in two parts so the part after the id is made once per projection
// and shared by every subscriber: head (per event kind) + id + body.
//   head: {"type":"insert","id":
//   body: ,"row":{..},"old":{..},"position":"..","commit_time":".."}
std::string_view event_head(std::string_view type); // "insert", "update", "delete", "truncate"

// A subscription with "transactions": true gets the changes of one transaction as one message:
//   {"type":"transaction","id":..,"changes":[{"type":"insert",<body>},..],
//    "position":"..","commit_time":..,"last":true}
// A change is an event without its id: its type and its shared body (as above). The message's
// position and commit_time are its last change's (a body ends with them). A transaction over the
// hub's batch cap comes in several messages, `last` false on all but the final one.
struct batch_change {
    std::string_view type; // "insert", "update", "delete", "truncate"
    std::string_view body; // ,"row":{..},..,"position":"..","commit_time":".."}
};
std::string transaction(std::string_view id, std::span<const batch_change> changes, bool last);

// The `rows` message of a snapshot chunk: {"type":"rows","id":..,"rows":[ + rows + ]}
std::string rows_open(std::string_view id);
constexpr std::string_view rows_close = "]}";

// A NOTIFY delivery: {"type":"notify","id":..,"channel":"..","payload":..}; the payload is
// embedded as JSON when it is JSON, else as a string.
std::string notify(std::string_view id, std::string_view channel, std::string_view payload);

} // namespace pgpush::push::protocol
