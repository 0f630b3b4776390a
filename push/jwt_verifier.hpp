#pragma once

// Verifies client JWTs (libjwt for the signature; header and claims checked here). The algorithm
// is pinned by configuration and checked on the token's header before any signature check, which
// is what defeats `alg: none` and HS/RS confusion (an HS256 token "signed" with an RSA public key).
//
// Every field of the header and every claim read here may hold any JSON type in a token a client
// made up: each is type-checked before use, and a wrong type is a refusal, never an exception.
// The rules (docs/protocol.md#authenticating):
//   header  `alg` a string equal to the configured algorithm; `kid` a string when present, `typ`
//           the string "JWT" (any case) when present;
//           `crit` refused whatever it holds (RFC 7515 4.1.11: pgpush understands no extension).
//   `sub`   required, a non-empty string: it names the user.
//   `exp`, `nbf`, `iat`  when present, finite JSON numbers (RFC 7519 NumericDate, fractions
//           allowed); `exp` past (beyond the leeway) or `nbf` future (beyond it) is refused.
//   `aud`   refused when no audience is configured; else a string equal to it or an array of
//           strings containing it.
//   `iss`   checked only when an issuer is configured: a string equal to it.

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace pgpush::push {

struct jwt_config {
    std::string algorithm = "HS256"; // HS256/384/512, RS256/384/512, ES256/384/512
    std::string secret;              // HS*
    std::string public_key_pem;      // RS*/ES*: one key
    std::string jwks_json;           // RS*/ES*: a JWKS document; keys chosen by `kid`
    std::string audience;            // when set, `aud` must contain it
    std::string issuer;              // when set, `iss` must equal it
    std::chrono::seconds leeway{30}; // clock skew allowed on exp/nbf
};

// A configuration that cannot verify anything (unknown algorithm, missing or unusable key).
class jwt_config_error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

class jwt_verifier {
public:
    explicit jwt_verifier(jwt_config config); // throws jwt_config_error

    // The latest expiry `result::expires_at` reports: 9999-12-31T23:59:59Z. A later `exp` is
    // accepted and reported as this. Note that a steady_clock deadline this far out overflows
    // (nanoseconds in 64 bits reach only the year 2262): a timer must clamp its duration.
    static constexpr std::int64_t max_expires_at = 253'402'300'799;

    struct result {
        bool ok = false;
        std::string error; // why not, for the client (never echoes the token)
        nlohmann::json claims;
        std::string subject; // `sub`, never empty when ok: the user the connection belongs to
        std::optional<std::int64_t> expires_at; // `exp` rounded down, seconds since the Unix
                                                // epoch, at most max_expires_at
    };

    // Never throws, whatever `token` holds.
    result verify(std::string_view token, std::int64_t now_unix_seconds) const noexcept;

    // How many verify() calls ended in an unexpected exception (turned into a refusal). The type
    // checks make this unreachable; the fuzz target asserts it stays zero.
    static std::uint64_t unexpected_errors();

    const std::string& algorithm() const { return config_.algorithm; }

private:
    jwt_config config_;
    int alg_ = 0;                             // jwt_alg_t
    std::map<std::string, std::string> keys_; // kid -> key (PEM or secret); "" for the only key

    result check(std::string_view token, std::int64_t now) const;
};

// For tests and tools: a JWK (RSA n/e or EC crv/x/y) as a PEM public key; throws
// jwt_config_error.
std::string jwk_to_pem(const nlohmann::json& jwk);

} // namespace pgpush::push
