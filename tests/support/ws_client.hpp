#pragma once

// A WebSocket client for black-box tests of `pgpush serve`: send JSON, wait (with a deadline)
// for the next message, see how the server closed the connection.

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

namespace pgpush::testing {

using namespace std::chrono_literals;

class ws_client {
public:
    // Connects to 127.0.0.1:port and completes the handshake on `target` (throws on failure).
    explicit ws_client(int port, const std::string& target = "/ws");
    ~ws_client();
    ws_client(const ws_client&) = delete;
    ws_client& operator=(const ws_client&) = delete;

    void send(const std::string& text);
    void send(const nlohmann::json& message) { send(message.dump()); }
    void send_binary(const std::string& bytes);

    // The next message, parsed; nullopt at the deadline or when the connection closed.
    std::optional<nlohmann::json> next(std::chrono::milliseconds timeout = 15s);

    // Skips messages until one of `type` (and `id`, when given); nullopt if none in time.
    std::optional<nlohmann::json> next_of(const std::string& type,
                                          const nlohmann::json& id = nullptr,
                                          std::chrono::milliseconds timeout = 15s);

    // True once the server closed the connection (a next() returned nullopt because of it).
    bool closed() const;
    // True when a next() gave up at its deadline (so closed() is our doing, not the server's).
    bool timed_out() const;
    // The close code and reason the server sent (0/"" if none).
    int close_code() const;
    std::string close_reason() const;

    // Stops reading from the socket: the server's queue for us fills (slow-consumer tests).
    void stop_reading();
    // Undoes stop_reading(): a full-size receive buffer, so what the server had queued (however
    // much) drains quickly on the next reads.
    void resume_reading();

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

// An HTTP GET to 127.0.0.1:port; returns (status, body).
std::pair<int, std::string> http_get(int port, const std::string& target);

// An HS256 token for tests (libjwt), with `claims` and the given secret.
std::string make_token(const nlohmann::json& claims, const std::string& secret,
                       const std::string& alg = "HS256");

// A token signed with `key` (an HMAC secret for HS*, a private key PEM for RS*/ES*) whose header
// also carries `headers` (e.g. {"kid": "k1"}), for key-selection and algorithm tests.
std::string make_token(const nlohmann::json& claims, const std::string& key, const std::string& alg,
                       const nlohmann::json& headers);

} // namespace pgpush::testing
