#include "push/jwt_verifier.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <cmath>
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

// A string member of a JWK or JWKS entry, "" when absent; any other type is a configuration
// error, not an exception of another kind.
std::string optional_string(const nlohmann::json& object, const char* name, const char* fallback) {
    auto it = object.find(name);
    if (it == object.end()) return fallback;
    if (!it->is_string())
        throw jwt_config_error(std::string("JWK \"") + name + "\" is not a string");
    return it->get<std::string>();
}

// The token's characters: three base64url parts (RFC 7515 7.1, no padding) joined by two dots.
// Anything else (spaces, padding, a NUL that would cut the C string libjwt reads) is refused
// before any parsing.
bool is_compact_serialisation(std::string_view token) {
    int dots = 0;
    for (char c : token) {
        if (c == '.') {
            ++dots;
        } else if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                     c == '-' || c == '_')) {
            return false;
        }
    }
    return dots == 2;
}

bool iequals(std::string_view a, std::string_view b) {
    return std::equal(a.begin(), a.end(), b.begin(), b.end(), [](char x, char y) {
        return std::tolower(static_cast<unsigned char>(x)) ==
               std::tolower(static_cast<unsigned char>(y));
    });
}

// An algorithm name is quoted back to the client only when it is short printable ASCII: the
// message helps whoever configured the wrong key and never carries arbitrary token bytes.
std::string quoted_if_plain(const std::string& s) {
    if (s.empty() || s.size() > 16) return "";
    for (char c : s) {
        if (c < 0x21 || c > 0x7e || c == '"' || c == '\\') return "";
    }
    return " \"" + s + "\"";
}

// A NumericDate (RFC 7519 section 2): seconds since the epoch as any finite JSON number, possibly
// fractional. Rounded (down for `exp`, up for `nbf`: both then mean "the first whole second
// from which the token is not / is valid") and clamped into [-max, max] so that no conversion or
// later arithmetic can overflow; nullopt when the value is not a number.
enum class rounding { down, up };

std::optional<std::int64_t> numeric_date(const nlohmann::json& v, rounding r) {
    constexpr std::int64_t max = jwt_verifier::max_expires_at;
    if (v.is_number_unsigned()) {
        const auto u = v.get<std::uint64_t>();
        return u > static_cast<std::uint64_t>(max) ? max : static_cast<std::int64_t>(u);
    }
    if (v.is_number_integer()) return std::clamp(v.get<std::int64_t>(), -max, max);
    if (v.is_number_float()) {
        double d = v.get<double>();
        if (!std::isfinite(d)) return std::nullopt;
        d = r == rounding::down ? std::floor(d) : std::ceil(d);
        if (d >= static_cast<double>(max)) return max;
        if (d <= static_cast<double>(-max)) return -max;
        return static_cast<std::int64_t>(d);
    }
    return std::nullopt;
}

// `aud` (RFC 7519 4.1.3): a string, or an array of strings, one of which is ours. An array holding
// anything but strings is malformed and refused even when ours is in it.
bool contains_audience(const nlohmann::json& aud, const std::string& want) {
    if (aud.is_string()) return aud.get_ref<const std::string&>() == want;
    if (!aud.is_array()) return false;
    bool found = false;
    for (const auto& a : aud) {
        if (!a.is_string()) return false;
        found = found || a.get_ref<const std::string&>() == want;
    }
    return found;
}

std::atomic<std::uint64_t> unexpected_error_count{0};

} // namespace

std::string jwk_to_pem(const nlohmann::json& jwk) {
    if (!jwk.is_object()) throw jwt_config_error("a JWK is not a JSON object");
    const std::string kty = optional_string(jwk, "kty", "");
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
        const std::string crv = optional_string(jwk, "crv", "");
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
            if (!k.is_object()) throw jwt_config_error("a JWKS key is not a JSON object");
            if (optional_string(k, "use", "sig") != "sig") continue;
            keys_[optional_string(k, "kid", "")] = jwk_to_pem(k);
        }
        if (keys_.empty()) throw jwt_config_error("the JWKS file has no signing keys");
    } else {
        throw jwt_config_error(config_.algorithm +
                               " needs a public key (--jwt-public-key or --jwt-jwks)");
    }
}

std::uint64_t jwt_verifier::unexpected_errors() {
    return unexpected_error_count.load(std::memory_order_relaxed);
}

jwt_verifier::result jwt_verifier::verify(std::string_view token, std::int64_t now) const noexcept {
    // The checks in check() leave nothing to throw but allocation failures; this is the last
    // line of defence that keeps a token from ever ending an I/O handler. "malformed token" fits
    // in std::string's inline buffer, so the refusal itself cannot throw.
    try {
        return check(token, now);
    } catch (...) {
        unexpected_error_count.fetch_add(1, std::memory_order_relaxed);
        result r;
        r.error = "malformed token";
        return r;
    }
}

jwt_verifier::result jwt_verifier::check(std::string_view token, std::int64_t now) const {
    using nlohmann::json;
    result r;
    auto refuse = [&](std::string why) {
        r.ok = false;
        r.error = std::move(why);
        return r;
    };
    if (!is_compact_serialisation(token)) return refuse("malformed token");
    const auto dot = token.find('.');

    // The header (RFC 7515 4.1), read by us before libjwt sees the token: the algorithm must be
    // the pinned one, and nothing in it may ask for processing pgpush does not do.
    auto header_text = base64url_decode(token.substr(0, dot));
    // A NUL would end nlohmann::json's input early (libjwt's too: it reads C strings).
    if (!header_text || header_text->find('\0') != std::string::npos)
        return refuse("malformed token header");
    const json header = json::parse(*header_text, nullptr, /*allow_exceptions=*/false);
    if (header.is_discarded() || !header.is_object()) return refuse("malformed token header");
    if (header.contains("crit")) {
        // RFC 7515 4.1.11: a recipient that does not understand every listed extension must
        // refuse the token. pgpush understands none, so any `crit`, well-formed or not, is refused.
        return refuse("token header lists critical extensions (\"crit\"); none is supported");
    }
    auto alg = header.find("alg");
    if (alg == header.end() || !alg->is_string())
        return refuse("token header \"alg\" is missing or not a string");
    if (alg->get_ref<const std::string&>() != config_.algorithm) {
        return refuse("token algorithm" + quoted_if_plain(alg->get_ref<const std::string&>()) +
                      " is not the accepted " + config_.algorithm);
    }
    auto kid = header.find("kid");
    if (kid != header.end() && !kid->is_string())
        return refuse("token header \"kid\" is not a string");
    if (auto typ = header.find("typ"); typ != header.end()) {
        // RFC 7519 5.1 recommends "JWT"; libjwt refuses any other value, so say so here.
        if (!typ->is_string() || !iequals(typ->get_ref<const std::string&>(), "JWT"))
            return refuse("token header \"typ\" is not \"JWT\"");
    }
    const std::string* key = nullptr;
    if (keys_.size() == 1) {
        key = &keys_.begin()->second;
    } else {
        auto it = keys_.find(kid == header.end() ? std::string() : kid->get<std::string>());
        if (it == keys_.end()) return refuse("no key for the token's kid");
        key = &it->second;
    }

    const std::string token_z(token);
    jwt_t* raw = nullptr;
    if (jwt_decode(&raw, token_z.c_str(), reinterpret_cast<const unsigned char*>(key->data()),
                   static_cast<int>(key->size())) != 0 ||
        raw == nullptr) {
        // libjwt also refuses here a payload it cannot read (not JSON, an integer beyond 64 bits).
        return refuse("invalid signature");
    }
    std::unique_ptr<jwt_t, jwt_deleter> jwt(raw);
    if (jwt_get_alg(jwt.get()) != static_cast<jwt_alg_t>(alg_))
        return refuse("token algorithm mismatch");
    char* grants = jwt_get_grants_json(jwt.get(), nullptr);
    if (grants == nullptr) return refuse("token has no claims");
    json claims = json::parse(grants, nullptr, /*allow_exceptions=*/false);
    std::free(grants);
    if (claims.is_discarded() || !claims.is_object())
        return refuse("token claims are not a JSON object");

    // The claims (RFC 7519 4.1). Times: NumericDate, compared in 128 bits so that neither `now`
    // nor the leeway can overflow.
    const std::int64_t leeway =
        std::clamp<std::int64_t>(config_.leeway.count(), 0, jwt_verifier::max_expires_at);
    using wide = __int128;
    if (auto it = claims.find("exp"); it != claims.end()) {
        const auto exp = numeric_date(*it, rounding::down);
        if (!exp) return refuse("\"exp\" is not a number");
        if (wide{now} > wide{*exp} + leeway) return refuse("token expired");
        r.expires_at = *exp;
    }
    if (auto it = claims.find("nbf"); it != claims.end()) {
        const auto nbf = numeric_date(*it, rounding::up);
        if (!nbf) return refuse("\"nbf\" is not a number");
        if (wide{now} + leeway < wide{*nbf}) return refuse("token not valid yet (nbf)");
    }
    if (auto it = claims.find("iat"); it != claims.end() && !numeric_date(*it, rounding::down))
        return refuse("\"iat\" is not a number");
    if (auto it = claims.find("aud"); config_.audience.empty()) {
        // An audience names who the token is for; a server that was told no audience of its own
        // cannot tell it is one of them.
        if (it != claims.end())
            return refuse("token has an audience (\"aud\") but the server accepts none");
    } else if (it == claims.end() || !contains_audience(*it, config_.audience)) {
        return refuse("token audience does not include " + config_.audience);
    }
    if (!config_.issuer.empty()) {
        auto it = claims.find("iss");
        if (it == claims.end() || !it->is_string() ||
            it->get_ref<const std::string&>() != config_.issuer) {
            return refuse("token issuer is not " + config_.issuer);
        }
    }
    auto sub = claims.find("sub");
    if (sub == claims.end()) return refuse("token has no subject (\"sub\")");
    if (!sub->is_string() || sub->get_ref<const std::string&>().empty())
        return refuse("token subject (\"sub\") is not a non-empty string");
    r.subject = sub->get<std::string>();
    r.ok = true;
    r.claims = std::move(claims);
    return r;
}

} // namespace pgpush::push
