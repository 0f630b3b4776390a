#pragma once

// Verifies client JWTs (libjwt for the signature; claims checked here). The algorithm is pinned
// by configuration and checked on the token's header before any signature check, which is what
// defeats `alg: none` and HS/RS confusion (an HS256 token "signed" with an RSA public key).

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

    struct result {
        bool ok = false;
        std::string error; // why not, for the client (never echoes the token)
        nlohmann::json claims;
        std::optional<std::int64_t> expires_at; // `exp`, seconds since the Unix epoch
    };

    result verify(std::string_view token, std::int64_t now_unix_seconds) const;

    const std::string& algorithm() const { return config_.algorithm; }

private:
    jwt_config config_;
    int alg_ = 0;                             // jwt_alg_t
    std::map<std::string, std::string> keys_; // kid -> key (PEM or secret); "" for the only key
};

// For tests and tools: a JWK (RSA n/e or EC crv/x/y) as a PEM public key; throws
// jwt_config_error.
std::string jwk_to_pem(const nlohmann::json& jwk);

} // namespace pgpush::push
