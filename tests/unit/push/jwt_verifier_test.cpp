#include "push/jwt_verifier.hpp"

#include <cstdlib>
#include <memory>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <gtest/gtest.h>
#include <jwt.h>

namespace pgpush::push {
namespace {

using nlohmann::json;

const std::string secret = "0123456789abcdef0123456789abcdef";
constexpr std::int64_t now = 1'800'000'000;

std::string sign(const json& claims, const std::string& alg, const std::string& key,
                 const json& headers = json::object()) {
    jwt_t* j = nullptr;
    jwt_new(&j);
    jwt_add_grants_json(j, claims.dump().c_str());
    for (auto& [k, v] : headers.items())
        jwt_add_header(j, k.c_str(), v.get<std::string>().c_str());
    jwt_set_alg(j, jwt_str_alg(alg.c_str()), reinterpret_cast<const unsigned char*>(key.data()),
                static_cast<int>(key.size()));
    char* s = jwt_encode_str(j);
    std::string out = s ? s : "";
    std::free(s);
    jwt_free(j);
    return out;
}

std::string base64url(const std::string& in) {
    static const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    std::string out;
    unsigned v = 0;
    int bits = 0;
    for (unsigned char c : in) {
        v = (v << 8) | c;
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out.push_back(t[(v >> bits) & 63]);
        }
    }
    if (bits > 0) out.push_back(t[(v << (6 - bits)) & 63]);
    return out;
}

struct key_pair {
    std::string private_pem, public_pem;
};

key_pair generate(const char* type, const char* param) {
    EVP_PKEY* k = std::string(type) == "RSA"
                      ? EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(2048))
                      : EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", param);
    auto pem = [&](bool priv) {
        BIO* b = BIO_new(BIO_s_mem());
        if (priv) {
            PEM_write_bio_PrivateKey(b, k, nullptr, nullptr, 0, nullptr, nullptr);
        } else {
            PEM_write_bio_PUBKEY(b, k);
        }
        char* d = nullptr;
        long n = BIO_get_mem_data(b, &d);
        std::string s(d, static_cast<std::size_t>(n));
        BIO_free(b);
        return s;
    };
    key_pair out{pem(true), pem(false)};
    EVP_PKEY_free(k);
    return out;
}

jwt_verifier hs256(std::string aud = "", std::string iss = "") {
    jwt_config c;
    c.secret = secret;
    c.audience = std::move(aud);
    c.issuer = std::move(iss);
    return jwt_verifier(c);
}

TEST(jwt_verifier, accepts_a_good_hs256_token_and_returns_its_claims) {
    auto r = hs256().verify(
        sign({{"sub", "alice"}, {"rooms", {1, 2}}, {"exp", now + 60}}, "HS256", secret), now);
    ASSERT_TRUE(r.ok) << r.error;
    EXPECT_EQ(r.claims["sub"], "alice");
    EXPECT_EQ(r.claims["rooms"], json({1, 2}));
    EXPECT_EQ(r.expires_at, now + 60);
}

TEST(jwt_verifier, refuses_each_kind_of_bad_token) {
    auto v = hs256("pgpush", "https://auth.example");
    const json good = {
        {"sub", "a"}, {"aud", "pgpush"}, {"iss", "https://auth.example"}, {"exp", now + 60}};
    ASSERT_TRUE(v.verify(sign(good, "HS256", secret), now).ok);
    struct bad {
        const char* what;
        std::string token;
    };
    auto with = [&](json patch) {
        json c = good;
        c.update(patch);
        return c;
    };
    const std::string unsigned_token =
        base64url(R"({"alg":"none","typ":"JWT"})") + "." + base64url(good.dump()) + ".";
    const bad cases[] = {
        {"wrong secret", sign(good, "HS256", "another-secret-that-is-long-enough!!")},
        {"alg none", unsigned_token},
        {"other HMAC alg", sign(good, "HS512", secret)},
        {"expired", sign(with({{"exp", now - 31}}), "HS256", secret)},
        {"not yet valid", sign(with({{"nbf", now + 31}}), "HS256", secret)},
        {"wrong audience", sign(with({{"aud", "other"}}), "HS256", secret)},
        {"audience list without ours", sign(with({{"aud", {"a", "b"}}}), "HS256", secret)},
        {"no audience",
         sign(json({{"sub", "a"}, {"iss", "https://auth.example"}}), "HS256", secret)},
        {"wrong issuer", sign(with({{"iss", "https://evil.example"}}), "HS256", secret)},
        {"exp not a number", sign(with({{"exp", "soon"}}), "HS256", secret)},
        {"garbage", "not.a.token"},
        {"two parts", "abc.def"},
        {"empty", ""},
    };
    for (const auto& c : cases) {
        auto r = v.verify(c.token, now);
        EXPECT_FALSE(r.ok) << c.what;
        EXPECT_FALSE(r.error.empty()) << c.what;
    }
    // Within the leeway: accepted.
    EXPECT_TRUE(v.verify(sign(with({{"exp", now - 29}}), "HS256", secret), now).ok);
    EXPECT_TRUE(v.verify(sign(with({{"aud", {"x", "pgpush"}}}), "HS256", secret), now).ok);
}

TEST(jwt_verifier, rs256_accepts_real_signatures_and_refuses_hs256_signed_with_the_public_key) {
    auto keys = generate("RSA", nullptr);
    jwt_config c;
    c.algorithm = "RS256";
    c.public_key_pem = keys.public_pem;
    jwt_verifier v(c);
    const json claims = {{"sub", "bob"}, {"exp", now + 60}};
    EXPECT_TRUE(v.verify(sign(claims, "RS256", keys.private_pem), now).ok);
    // The classic confusion attack: HMAC "signed" with the public key text.
    auto confused = v.verify(sign(claims, "HS256", keys.public_pem), now);
    EXPECT_FALSE(confused.ok);
    EXPECT_NE(confused.error.find("HS256"), std::string::npos) << confused.error;
    auto other = generate("RSA", nullptr);
    EXPECT_FALSE(v.verify(sign(claims, "RS256", other.private_pem), now).ok);
}

TEST(jwt_verifier, es256_with_a_jwks_file_picks_the_key_by_kid) {
    auto k1 = generate("EC", "P-256");
    auto k2 = generate("EC", "P-256");
    // Build the JWKS from the public keys' coordinates.
    auto jwk = [](const std::string& pub_pem, const std::string& kid) {
        BIO* b = BIO_new_mem_buf(pub_pem.data(), static_cast<int>(pub_pem.size()));
        EVP_PKEY* k = PEM_read_bio_PUBKEY(b, nullptr, nullptr, nullptr);
        BIO_free(b);
        unsigned char point[65];
        std::size_t len = 0;
        EVP_PKEY_get_octet_string_param(k, "encoded-pub-key", point, sizeof point, &len);
        EVP_PKEY_free(k);
        std::string x(reinterpret_cast<char*>(point + 1), 32),
            y(reinterpret_cast<char*>(point + 33), 32);
        return json{{"kty", "EC"},
                    {"crv", "P-256"},
                    {"kid", kid},
                    {"x", base64url(x)},
                    {"y", base64url(y)}};
    };
    jwt_config c;
    c.algorithm = "ES256";
    c.jwks_json = json{{"keys", {jwk(k1.public_pem, "one"), jwk(k2.public_pem, "two")}}}.dump();
    jwt_verifier v(c);
    const json claims = {{"sub", "carol"}};
    EXPECT_TRUE(v.verify(sign(claims, "ES256", k1.private_pem, {{"kid", "one"}}), now).ok);
    EXPECT_TRUE(v.verify(sign(claims, "ES256", k2.private_pem, {{"kid", "two"}}), now).ok);
    EXPECT_FALSE(v.verify(sign(claims, "ES256", k1.private_pem, {{"kid", "two"}}), now).ok);
    EXPECT_FALSE(v.verify(sign(claims, "ES256", k1.private_pem, {{"kid", "three"}}), now).ok);
}

TEST(jwt_verifier, refuses_unusable_configurations) {
    auto config_error = [](jwt_config c) {
        try {
            jwt_verifier v(std::move(c));
        } catch (const jwt_config_error&) {
            return true;
        }
        return false;
    };
    jwt_config none;
    none.algorithm = "none";
    none.secret = secret;
    EXPECT_TRUE(config_error(none));
    jwt_config short_secret;
    short_secret.secret = "short";
    EXPECT_TRUE(config_error(short_secret));
    jwt_config rs_without_key;
    rs_without_key.algorithm = "RS256";
    EXPECT_TRUE(config_error(rs_without_key));
    jwt_config bad_jwks;
    bad_jwks.algorithm = "RS256";
    bad_jwks.jwks_json = "{\"keys\": [{\"kty\": \"oct\", \"k\": \"AAAA\"}]}";
    EXPECT_TRUE(config_error(bad_jwks));
}

} // namespace
} // namespace pgpush::push
