#include "push/jwt_verifier.hpp"

#include <array>
#include <cstdlib>
#include <memory>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <vector>

#include <jwt.h>

namespace pgpush::push {

namespace {

std::optional<std::string> base64url_decode(std::string_view in) {
    static const auto table = [] {
        std::array<int, 256> t{};
        t.fill(-1);
        const char* chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        for (int i = 0; i < 64; ++i)
            t[static_cast<unsigned char>(chars[i])] = i;
        return t;
    }();
    std::string out;
    unsigned buffer = 0;
    int bits = 0;
    for (char c : in) {
        if (c == '=') break;
        int v = table[static_cast<unsigned char>(c)];
        if (v < 0) return std::nullopt;
        buffer = (buffer << 6) | static_cast<unsigned>(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out.push_back(static_cast<char>((buffer >> bits) & 0xFF));
        }
    }
    return out;
}

struct jwt_deleter {
    void operator()(jwt_t* j) const { jwt_free(j); }
};
struct bio_deleter {
    void operator()(BIO* b) const { BIO_free(b); }
};
struct pkey_deleter {
    void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct ctx_deleter {
    void operator()(EVP_PKEY_CTX* c) const { EVP_PKEY_CTX_free(c); }
};
struct bld_deleter {
    void operator()(OSSL_PARAM_BLD* b) const { OSSL_PARAM_BLD_free(b); }
};
struct params_deleter {
    void operator()(OSSL_PARAM* p) const { OSSL_PARAM_free(p); }
};
struct bn_deleter {
    void operator()(BIGNUM* b) const { BN_free(b); }
};

std::string pem_of(EVP_PKEY* key) {
    std::unique_ptr<BIO, bio_deleter> bio(BIO_new(BIO_s_mem()));
    if (!bio || PEM_write_bio_PUBKEY(bio.get(), key) != 1)
        throw jwt_config_error("cannot write a PEM key");
    char* data = nullptr;
    long n = BIO_get_mem_data(bio.get(), &data);
    return std::string(data, static_cast<std::size_t>(n));
}

std::string field(const nlohmann::json& jwk, const char* name) {
    auto it = jwk.find(name);
    if (it == jwk.end() || !it->is_string()) {
        throw jwt_config_error(std::string("JWK without \"") + name + "\"");
    }
    auto raw = base64url_decode(it->get<std::string>());
    if (!raw || raw->empty())
        throw jwt_config_error(std::string("JWK \"") + name + "\" is not base64url");
    return *raw;
}

bool is_hmac(jwt_alg_t a) {
    return a == JWT_ALG_HS256 || a == JWT_ALG_HS384 || a == JWT_ALG_HS512;
}

bool contains_audience(const nlohmann::json& aud, const std::string& want) {
    if (aud.is_string()) return aud.get<std::string>() == want;
    if (aud.is_array()) {
        for (const auto& a : aud) {
            if (a.is_string() && a.get<std::string>() == want) return true;
        }
    }
    return false;
}

} // namespace

std::string jwk_to_pem(const nlohmann::json& jwk) {
    const std::string kty = jwk.value("kty", "");
    std::unique_ptr<OSSL_PARAM_BLD, bld_deleter> bld(OSSL_PARAM_BLD_new());
    const char* type = nullptr;
    std::unique_ptr<BIGNUM, bn_deleter> n, e;
    std::string point;
    if (kty == "RSA") {
        auto nb = field(jwk, "n"), eb = field(jwk, "e");
        n.reset(BN_bin2bn(reinterpret_cast<const unsigned char*>(nb.data()),
                          static_cast<int>(nb.size()), nullptr));
        e.reset(BN_bin2bn(reinterpret_cast<const unsigned char*>(eb.data()),
                          static_cast<int>(eb.size()), nullptr));
        OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, n.get());
        OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, e.get());
        type = "RSA";
    } else if (kty == "EC") {
        const std::string crv = jwk.value("crv", "");
        const char* group = crv == "P-256"   ? "prime256v1"
                            : crv == "P-384" ? "secp384r1"
                            : crv == "P-521" ? "secp521r1"
                                             : nullptr;
        if (group == nullptr) throw jwt_config_error("unsupported EC curve \"" + crv + "\"");
        point = "\x04" + field(jwk, "x") + field(jwk, "y");
        OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, group, 0);
        OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(),
                                         point.size());
        type = "EC";
    } else {
        throw jwt_config_error("unsupported JWK kty \"" + kty + "\" (RSA and EC are)");
    }
    std::unique_ptr<OSSL_PARAM, params_deleter> params(OSSL_PARAM_BLD_to_param(bld.get()));
    std::unique_ptr<EVP_PKEY_CTX, ctx_deleter> ctx(
        EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr));
    EVP_PKEY* raw = nullptr;
    if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
        EVP_PKEY_fromdata(ctx.get(), &raw, EVP_PKEY_PUBLIC_KEY, params.get()) != 1) {
        throw jwt_config_error("the JWK is not a valid " + kty + " public key");
    }
    std::unique_ptr<EVP_PKEY, pkey_deleter> key(raw);
    return pem_of(key.get());
}

jwt_verifier::jwt_verifier(jwt_config config) : config_(std::move(config)) {
    jwt_alg_t alg = jwt_str_alg(config_.algorithm.c_str());
    if (alg == JWT_ALG_INVAL || alg == JWT_ALG_NONE) {
        throw jwt_config_error("unsupported JWT algorithm \"" + config_.algorithm +
                               "\" (HS256/384/512, RS256/384/512, ES256/384/512)");
    }
    alg_ = alg;
    if (is_hmac(alg)) {
        if (config_.secret.size() < 32) {
            throw jwt_config_error(config_.algorithm +
                                   " needs a secret of at least 32 bytes (--jwt-secret)");
        }
        keys_[""] = config_.secret;
        return;
    }
    if (!config_.public_key_pem.empty()) {
        keys_[""] = config_.public_key_pem;
    } else if (!config_.jwks_json.empty()) {
        auto doc = nlohmann::json::parse(config_.jwks_json, nullptr, false);
        if (doc.is_discarded() || !doc.contains("keys") || !doc["keys"].is_array()) {
            throw jwt_config_error("the JWKS file is not a JSON object with a \"keys\" array");
        }
        for (const auto& k : doc["keys"]) {
            if (k.value("use", "sig") != "sig") continue;
            keys_[k.value("kid", "")] = jwk_to_pem(k);
        }
        if (keys_.empty()) throw jwt_config_error("the JWKS file has no signing keys");
    } else {
        throw jwt_config_error(config_.algorithm +
                               " needs a public key (--jwt-public-key or --jwt-jwks)");
    }
}

jwt_verifier::result jwt_verifier::verify(std::string_view token, std::int64_t now) const {
    result r;
    auto refuse = [&](std::string why) {
        r.ok = false;
        r.error = std::move(why);
        return r;
    };
    const auto dot = token.find('.');
    if (dot == std::string_view::npos || token.find('.', dot + 1) == std::string_view::npos) {
        return refuse("malformed token");
    }
    // The header, read by us before libjwt sees the token: the algorithm must be the pinned one.
    auto header_text = base64url_decode(token.substr(0, dot));
    if (!header_text) return refuse("malformed token header");
    auto header = nlohmann::json::parse(*header_text, nullptr, false);
    if (header.is_discarded() || !header.is_object()) return refuse("malformed token header");
    const std::string alg = header.value("alg", "");
    if (alg != config_.algorithm) {
        return refuse("token algorithm \"" + alg + "\" is not the accepted " + config_.algorithm);
    }
    const std::string* key = nullptr;
    if (keys_.size() == 1) {
        key = &keys_.begin()->second;
    } else {
        auto it = keys_.find(header.value("kid", ""));
        if (it == keys_.end()) return refuse("no key for the token's kid");
        key = &it->second;
    }
    const std::string token_z(token);
    jwt_t* raw = nullptr;
    if (jwt_decode(&raw, token_z.c_str(), reinterpret_cast<const unsigned char*>(key->data()),
                   static_cast<int>(key->size())) != 0 ||
        raw == nullptr) {
        return refuse("invalid signature");
    }
    std::unique_ptr<jwt_t, jwt_deleter> jwt(raw);
    if (jwt_get_alg(jwt.get()) != static_cast<jwt_alg_t>(alg_))
        return refuse("token algorithm mismatch");
    char* grants = jwt_get_grants_json(jwt.get(), nullptr);
    if (grants == nullptr) return refuse("token has no claims");
    auto claims = nlohmann::json::parse(grants, nullptr, false);
    std::free(grants);
    if (claims.is_discarded() || !claims.is_object())
        return refuse("token claims are not a JSON object");

    const std::int64_t leeway = config_.leeway.count();
    if (auto it = claims.find("exp"); it != claims.end()) {
        if (!it->is_number()) return refuse("\"exp\" is not a number");
        const auto exp = it->get<std::int64_t>();
        if (now > exp + leeway) return refuse("token expired");
        r.expires_at = exp;
    }
    if (auto it = claims.find("nbf"); it != claims.end()) {
        if (!it->is_number()) return refuse("\"nbf\" is not a number");
        if (now + leeway < it->get<std::int64_t>()) return refuse("token not valid yet (nbf)");
    }
    if (!config_.audience.empty()) {
        auto it = claims.find("aud");
        if (it == claims.end() || !contains_audience(*it, config_.audience)) {
            return refuse("token audience does not include " + config_.audience);
        }
    }
    if (!config_.issuer.empty()) {
        auto it = claims.find("iss");
        if (it == claims.end() || !it->is_string() || it->get<std::string>() != config_.issuer) {
            return refuse("token issuer is not " + config_.issuer);
        }
    }
    r.ok = true;
    r.claims = std::move(claims);
    return r;
}

} // namespace pgpush::push
