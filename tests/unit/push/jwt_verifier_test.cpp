#include "push/jwt_verifier.hpp"

#include <cstdlib>
#include <limits>
#include <memory>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <set>

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

// A token whose header and claims are exactly these JSON texts, correctly signed with HS256 and
// `secret`: what a client holding the key (or a broken issuer) can make, whatever the types.
std::string hs256_token(const std::string& header, const std::string& claims,
                        const std::string& key = secret) {
    const std::string input = base64url(header) + "." + base64url(claims);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
         reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac, &n);
    return input + "." + base64url(std::string(reinterpret_cast<const char*>(mac), n));
}

std::string hs256_token(const json& header, const json& claims) {
    return hs256_token(header.dump(), claims.dump());
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

// Checks that hold for every answer: a refusal says why without echoing the token, an acceptance
// names its subject, and no exception was ever caught by verify()'s last line of defence.
void expect_well_formed(const jwt_verifier::result& r, const std::string& token,
                        const std::string& what) {
    if (r.ok) {
        EXPECT_TRUE(r.error.empty()) << what;
        EXPECT_FALSE(r.subject.empty()) << what;
        ASSERT_TRUE(r.claims.is_object()) << what;
        EXPECT_EQ(r.claims["sub"], r.subject) << what;
        if (r.expires_at) {
            EXPECT_LE(*r.expires_at, jwt_verifier::max_expires_at) << what;
        }
    } else {
        EXPECT_FALSE(r.error.empty()) << what;
        EXPECT_TRUE(r.subject.empty()) << what;
        if (token.size() > 8) {
            EXPECT_EQ(r.error.find(token), std::string::npos) << what;
        }
        for (const auto& part :
             {token.substr(0, token.find('.')), token.substr(token.rfind('.') + 1)}) {
            if (part.size() > 8) {
                EXPECT_EQ(r.error.find(part), std::string::npos) << what;
            }
        }
    }
    EXPECT_EQ(jwt_verifier::unexpected_errors(), 0u) << what;
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

// ---- every field of every type ----

const json header_base = {{"alg", "HS256"}, {"typ", "JWT"}};
const json claims_base = {{"sub", "alice"}, {"exp", now + 60}};

// One JSON value of each type, and the numbers that overflow conversions.
struct typed_value {
    const char* name;
    json value;
};
const std::vector<typed_value>& every_type() {
    static const std::vector<typed_value> v = {
        {"integer", 123},
        {"negative integer", -5},
        {"float", 1.5},
        {"null", nullptr},
        {"true", true},
        {"false", false},
        {"empty array", json::array()},
        {"empty object", json::object()},
        {"string", "x"},
        {"empty string", ""},
        {"array of strings", {"x", "y"}},
        {"object", {{"a", "b"}}},
        {"max int64", std::numeric_limits<std::int64_t>::max()},
        {"min int64", std::numeric_limits<std::int64_t>::min()},
        {"huge unsigned", std::numeric_limits<std::uint64_t>::max()},
        {"1e300", 1e300},
        {"-1e300", -1e300},
    };
    return v;
}

TEST(jwt_verifier, every_header_field_and_claim_of_every_json_type_is_accepted_or_refused) {
    struct field {
        bool in_header;
        const char* name;
        std::set<std::string> accepted; // the every_type() names this field accepts
    };
    // Numbers beyond 64-bit integers are refused by libjwt's JSON reader wherever they are in
    // the claims. Dates: exp 123, 1.5 and -5 are long past; max int64 and 1e300 are far future.
    const std::set<std::string> numbers_but_huge = {
        "integer", "negative integer", "float", "max int64", "min int64", "1e300", "-1e300"};
    std::set<std::string> anything_but_huge;
    for (const auto& t : every_type())
        anything_but_huge.insert(t.name);
    anything_but_huge.erase("huge unsigned");
    const field fields[] = {
        {true, "alg", {}},
        {true, "kid", {"string", "empty string"}},
        {true, "typ", {}}, // only "JWT" (below)
        {true, "crit", {}},
        {false, "exp", {"max int64", "1e300"}},
        {false, "nbf", {"integer", "negative integer", "float", "min int64", "-1e300"}},
        {false, "iat", numbers_but_huge},
        {false, "aud", {}}, // no audience configured
        {false, "iss", anything_but_huge},
        {false, "sub", {"string"}},
    };
    const auto v = hs256();
    const auto before = jwt_verifier::unexpected_errors();
    for (const auto& f : fields) {
        for (const auto& t : every_type()) {
            json header = header_base, claims = claims_base;
            (f.in_header ? header : claims)[f.name] = t.value;
            const std::string what = std::string(f.in_header ? "header " : "claim ") + f.name +
                                     " = " + t.value.dump() + " (" + t.name + ")";
            const auto token = hs256_token(header, claims);
            const auto r = v.verify(token, now);
            EXPECT_EQ(r.ok, f.accepted.count(t.name) == 1) << what << ": " << r.error;
            expect_well_formed(r, token, what);
        }
        // The field left out altogether: only alg and sub are required.
        json header = header_base, claims = claims_base;
        (f.in_header ? header : claims).erase(f.name);
        const auto r = v.verify(hs256_token(header, claims), now);
        const bool required = std::string(f.name) == "alg" || std::string(f.name) == "sub";
        EXPECT_EQ(r.ok, !required) << f.name << " absent: " << r.error;
    }
    EXPECT_EQ(jwt_verifier::unexpected_errors(), before);
}

TEST(jwt_verifier, header_alg_must_be_the_configured_algorithm_as_a_string) {
    const auto v = hs256();
    EXPECT_TRUE(v.verify(hs256_token(header_base, claims_base), now).ok);
    for (const json& alg : {json("HS512"), json("hs256"), json("none"), json(""), json(256),
                            json({"HS256"}), json({{"alg", "HS256"}})}) {
        json header = header_base;
        header["alg"] = alg;
        const auto token = hs256_token(header, claims_base);
        const auto r = v.verify(token, now);
        EXPECT_FALSE(r.ok) << alg.dump();
        expect_well_formed(r, token, alg.dump());
    }
    // A short algorithm name is quoted back (it tells an operator which key they configured
    // wrong); a long or odd one is not.
    json header = header_base;
    header["alg"] = "HS512";
    EXPECT_NE(v.verify(hs256_token(header, claims_base), now).error.find("\"HS512\""),
              std::string::npos);
    header["alg"] = std::string(200, 'A');
    EXPECT_EQ(v.verify(hs256_token(header, claims_base), now).error.find("AAAA"),
              std::string::npos);
}

TEST(jwt_verifier, header_typ_when_present_is_jwt) {
    const auto v = hs256();
    for (const char* typ : {"JWT", "jwt"}) {
        json header = header_base;
        header["typ"] = typ;
        EXPECT_TRUE(v.verify(hs256_token(header, claims_base), now).ok) << typ;
    }
    for (const json& typ : {json("at+jwt"), json("JOSE"), json(""), json(1), json(nullptr)}) {
        json header = header_base;
        header["typ"] = typ;
        EXPECT_FALSE(v.verify(hs256_token(header, claims_base), now).ok) << typ.dump();
    }
}

TEST(jwt_verifier, any_crit_header_is_refused) {
    // RFC 7515 4.1.11: extensions listed in crit must be understood; pgpush understands none. A
    // malformed crit (not a non-empty array of strings) is refused as well.
    const auto v = hs256();
    for (const json& crit :
         {json({"exp"}), json({"b64"}), json({"unknown-extension"}), json::array(), json("b64"),
          json(nullptr), json(false), json(1), json(json::object()), json({1, 2})}) {
        json header = header_base;
        header["crit"] = crit;
        if (crit == json({"b64"})) header["b64"] = false;
        const auto token = hs256_token(header, claims_base);
        const auto r = v.verify(token, now);
        EXPECT_FALSE(r.ok) << crit.dump();
        EXPECT_NE(r.error.find("crit"), std::string::npos) << r.error;
        expect_well_formed(r, token, crit.dump());
    }
}

TEST(jwt_verifier, aud_is_refused_without_a_configured_audience_and_must_contain_it_with_one) {
    struct aud_case {
        json aud; // null here: no aud claim
        bool without_config;
        bool with_config; // audience "pgpush"
    };
    const aud_case cases[] = {
        {nullptr, true, false},
        {"pgpush", false, true},
        {json({"pgpush"}), false, true},
        {json({"other", "pgpush"}), false, true},
        {"other", false, false},
        {json({"other"}), false, false},
        {json::array(), false, false},
        {json({"pgpush", 1}), false, false}, // an array of strings, or malformed
        {json({json({"pgpush"})}), false, false},
        {7, false, false},
        {json({{"pgpush", true}}), false, false},
        {"", false, false},
    };
    const auto plain = hs256();
    const auto with_audience = hs256("pgpush");
    for (const auto& c : cases) {
        json claims = claims_base;
        if (!c.aud.is_null()) claims["aud"] = c.aud;
        const auto token = hs256_token(header_base, claims);
        const auto r1 = plain.verify(token, now);
        EXPECT_EQ(r1.ok, c.without_config) << c.aud.dump() << ": " << r1.error;
        expect_well_formed(r1, token, c.aud.dump());
        const auto r2 = with_audience.verify(token, now);
        EXPECT_EQ(r2.ok, c.with_config) << c.aud.dump() << ": " << r2.error;
        expect_well_formed(r2, token, c.aud.dump());
    }
    // Explicitly JSON null is a present aud: refused without configuration too.
    json claims = claims_base;
    claims["aud"] = nullptr;
    EXPECT_FALSE(plain.verify(hs256_token(header_base, claims), now).ok);
}

TEST(jwt_verifier, iss_is_checked_only_when_configured) {
    const auto plain = hs256();
    const auto with_issuer = hs256("", "https://auth.example");
    struct iss_case {
        json iss; // null here: no iss claim
        bool with_config;
    };
    const iss_case cases[] = {
        {"https://auth.example", true},
        {nullptr, false},
        {"https://auth.example/", false},
        {json({"https://auth.example"}), false},
        {1, false},
        {json({{"iss", "https://auth.example"}}), false},
        {"", false},
    };
    for (const auto& c : cases) {
        json claims = claims_base;
        if (!c.iss.is_null()) claims["iss"] = c.iss;
        const auto token = hs256_token(header_base, claims);
        EXPECT_TRUE(plain.verify(token, now).ok) << c.iss.dump();
        const auto r = with_issuer.verify(token, now);
        EXPECT_EQ(r.ok, c.with_config) << c.iss.dump() << ": " << r.error;
        expect_well_formed(r, token, c.iss.dump());
    }
}

TEST(jwt_verifier, sub_is_required_and_is_a_non_empty_string_that_names_the_user) {
    const auto v = hs256();
    for (const char* sub : {"alice", "42", " ", "user@example.com", "\u00e9l\u00e8ve"}) {
        json claims = claims_base;
        claims["sub"] = json::parse(std::string("\"") + sub + "\"");
        const auto r = v.verify(hs256_token(header_base, claims), now);
        ASSERT_TRUE(r.ok) << sub << ": " << r.error;
        EXPECT_EQ(r.subject, claims["sub"].get<std::string>());
        EXPECT_EQ(r.claims["sub"], claims["sub"]);
    }
    // "42" and 42 are not the same user: only the string is a subject.
    for (const json& sub : {json(42), json(42.0), json(""), json(nullptr), json(true),
                            json({"alice"}), json({{"id", "alice"}})}) {
        json claims = claims_base;
        claims["sub"] = sub;
        const auto token = hs256_token(header_base, claims);
        const auto r = v.verify(token, now);
        EXPECT_FALSE(r.ok) << sub.dump();
        EXPECT_NE(r.error.find("sub"), std::string::npos) << r.error;
        expect_well_formed(r, token, sub.dump());
    }
    json claims = claims_base;
    claims.erase("sub");
    const auto r = v.verify(hs256_token(header_base, claims), now);
    EXPECT_FALSE(r.ok);
    EXPECT_NE(r.error.find("sub"), std::string::npos) << r.error;
}

TEST(jwt_verifier, numeric_dates_at_their_extremes) {
    const auto v = hs256(); // leeway 30 s
    constexpr std::int64_t year_3000 = 32'503'680'000;
    struct date_case {
        const char* claim;
        json value;
        bool ok;
        std::optional<std::int64_t> expires_at; // when ok
    };
    const date_case cases[] = {
        {"exp", year_3000, true, year_3000},
        {"exp", 1e300, true, jwt_verifier::max_expires_at},
        {"exp", 1e19, true, jwt_verifier::max_expires_at}, // a float beyond int64
        {"exp", std::numeric_limits<std::int64_t>::max(), true, jwt_verifier::max_expires_at},
        {"exp", std::numeric_limits<double>::max(), true, jwt_verifier::max_expires_at},
        {"exp", -1e300, false, {}},
        {"exp", std::numeric_limits<std::int64_t>::min(), false, {}},
        {"exp", -std::numeric_limits<double>::max(), false, {}},
        {"exp", 0, false, {}},
        {"exp", now + 0.5, true, now},     // fractions are allowed; rounded down
        {"exp", now - 30, true, now - 30}, // at the edge of the leeway
        {"exp", now - 30.5, false, {}},    // just past it
        {"exp", now - 31, false, {}},
        {"exp", 5e-324, false, {}}, // the smallest float: 1970
        {"nbf", 1e300, false, {}},
        {"nbf", std::numeric_limits<std::int64_t>::max(), false, {}},
        {"nbf", -1e300, true, now + 60},
        {"nbf", std::numeric_limits<std::int64_t>::min(), true, now + 60},
        {"nbf", now + 30, true, now + 60}, // at the edge of the leeway
        {"nbf", now + 30.5, false, {}},    // just past it: rounded up
        {"nbf", now + 31, false, {}},
        {"nbf", now - 0.5, true, now + 60},
        {"iat", 1e300, true, now + 60}, // only its type is checked
        {"iat", -1e300, true, now + 60},
        {"iat", now + 1'000'000, true, now + 60},
    };
    for (const auto& c : cases) {
        json claims = claims_base;
        claims[c.claim] = c.value;
        const std::string what = std::string(c.claim) + " = " + c.value.dump();
        const auto token = hs256_token(header_base, claims);
        const auto r = v.verify(token, now);
        EXPECT_EQ(r.ok, c.ok) << what << ": " << r.error;
        if (c.ok) {
            EXPECT_EQ(r.expires_at, c.expires_at) << what;
        }
        expect_well_formed(r, token, what);
    }
    // Without exp, no expiry.
    const auto r = v.verify(hs256_token(header_base, json{{"sub", "alice"}}), now);
    ASSERT_TRUE(r.ok) << r.error;
    EXPECT_FALSE(r.expires_at);
}

TEST(jwt_verifier, extreme_clocks_and_leeways_do_not_overflow) {
    jwt_config c;
    c.secret = secret;
    c.leeway = std::chrono::seconds(std::numeric_limits<std::int64_t>::max());
    const jwt_verifier lenient(c);
    c.leeway = std::chrono::seconds(-100);
    const jwt_verifier negative(c);
    const auto strict = hs256();
    constexpr auto max = std::numeric_limits<std::int64_t>::max();
    constexpr auto min = std::numeric_limits<std::int64_t>::min();
    json claims = claims_base;
    claims["exp"] = now - 1000;
    claims["nbf"] = now + 1000;
    const auto token = hs256_token(header_base, claims);
    // A leeway this large forgives any date, and is not an overflow.
    EXPECT_TRUE(lenient.verify(token, now).ok);
    // A negative leeway counts as none.
    EXPECT_FALSE(
        negative.verify(hs256_token(header_base, json{{"sub", "a"}, {"exp", now - 1}}), now).ok);
    EXPECT_TRUE(
        negative.verify(hs256_token(header_base, json{{"sub", "a"}, {"exp", now}}), now).ok);
    for (const auto at : {max, min, std::int64_t{0}}) {
        for (const json& date : {json(max), json(min), json(1e300), json(-1e300)}) {
            for (const char* claim : {"exp", "nbf"}) {
                json cl = {{"sub", "alice"}};
                cl[claim] = date;
                const auto t = hs256_token(header_base, cl);
                expect_well_formed(strict.verify(t, at), t, claim);
                expect_well_formed(lenient.verify(t, at), t, claim);
            }
        }
    }
    // The far past and far future are told apart at any clock.
    EXPECT_FALSE(
        strict.verify(hs256_token(header_base, json{{"sub", "a"}, {"exp", -1e300}}), max).ok);
    EXPECT_FALSE(
        strict.verify(hs256_token(header_base, json{{"sub", "a"}, {"nbf", 1e300}}), min).ok);
}

TEST(jwt_verifier, refuses_what_is_not_a_compact_token_before_parsing) {
    const auto v = hs256();
    const std::string good = hs256_token(header_base, claims_base);
    ASSERT_TRUE(v.verify(good, now).ok);
    const auto first = good.find('.');
    for (const std::string& bad :
         {good + ".", good + ".x", "." + good, good + "=", good + " ", " " + good,
          good.substr(0, first) + "=" + good.substr(first), good + std::string(1, '\0'),
          good + std::string(1, '\0') + "junk", std::string("..."), std::string(".."),
          std::string("a.b"), std::string("\xff\xfe.\xfd.x")}) {
        const auto r = v.verify(bad, now);
        EXPECT_FALSE(r.ok) << json(bad).dump(-1, ' ', false, json::error_handler_t::replace);
        expect_well_formed(r, bad, "compact");
    }
    // Header and claims that are not JSON objects, signed.
    for (const auto& [header, claims] : std::vector<std::pair<std::string, std::string>>{
             {"[]", claims_base.dump()},
             {"\"HS256\"", claims_base.dump()},
             {"{\"alg\":\"HS256\"", claims_base.dump()},
             {header_base.dump(), "[]"},
             {header_base.dump(), "\"alice\""},
             {header_base.dump(), "{\"sub\":\"alice\""},
             {header_base.dump(), "{\"sub\":\"a\\u0000b\"}"},
             {header_base.dump(), "{\"sub\":\"alice\",\"x\":1e999}"},
             {header_base.dump(), ""},
             {"", claims_base.dump()},
         }) {
        const auto token = hs256_token(header, claims);
        const auto r = v.verify(token, now);
        EXPECT_FALSE(r.ok) << header << " . " << claims;
        expect_well_formed(r, token, header + " . " + claims);
    }
}

TEST(jwt_verifier, jwks_members_of_the_wrong_type_are_configuration_errors) {
    for (const char* jwks :
         {R"({"keys": [5]})", R"({"keys": [{"kty": 5}]})", R"({"keys": ["RSA"]})",
          R"({"keys": [{"kty": "EC", "crv": 256, "x": "AA", "y": "AA"}]})",
          R"({"keys": [{"kty": "EC", "crv": "P-256", "x": 1, "y": "AA"}]})",
          R"({"keys": [{"kty": "RSA", "use": 7, "n": "AQAB", "e": "AQAB"}]})",
          R"({"keys": [{"kty": "RSA", "kid": [], "n": "AQAB", "e": "AQAB"}]})", R"({"keys": 1})",
          R"([])", "not json"}) {
        jwt_config c;
        c.algorithm = "ES256";
        c.jwks_json = jwks;
        EXPECT_THROW(jwt_verifier{c}, jwt_config_error) << jwks;
    }
}

} // namespace
} // namespace pgpush::push
