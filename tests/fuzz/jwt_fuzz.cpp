// Fuzzes push/jwt_verifier: what a client can put in a token, correctly signed.
//
// Input, first byte:
//   0 mod 3: structured. The rest draws a header and claims whose fields (alg, kid, typ, crit;
//            exp, nbf, iat, aud, iss, sub; extra keys) hold any JSON value, often of the right
//            type and near the right value so verification gets deep. The token is signed with
//            HS256 and the verifier's own secret: only the header and claims decide.
//   1 mod 3: the rest is a header text and a claims text (any bytes), signed likewise: the
//            verifier's and libjwt's JSON readers on nearly-JSON input.
//   2 mod 3: the rest is the token itself, any bytes.
// Each token goes to four verifiers (audience and issuer configured or not), at a fixed time and
// at a fuzzed one. Properties: verify() never throws and never needs its catch-all
// (unexpected_errors() stays 0); a refusal never echoes the token; an accepted token has a
// non-empty string subject equal to its `sub` and an expiry within [now - leeway,
// max_expires_at]; and acceptance is exactly what the rules of docs/protocol.md say, by the model
// below (in modes 1 and 2 only "accepted implies allowed", as libjwt reads claims, not us).

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <string>

#include "push/jwt_verifier.hpp"
#include "tests/fuzz/fuzz_json.hpp"

using namespace pgpush::fuzz;
using pgpush::push::jwt_config;
using pgpush::push::jwt_verifier;

namespace {

const std::string secret = "fuzz-secret-that-is-at-least-32-bytes-long";
const std::string audience = "pgpush";
const std::string issuer = "https://issuer.example";
constexpr std::int64_t fixed_now = 1'800'000'000;
constexpr std::int64_t leeway = 30;

struct configured {
    jwt_verifier verifier;
    bool audience, issuer;
};

const std::vector<configured>& verifiers() {
    static const std::vector<configured> v = [] {
        std::vector<configured> out;
        for (bool aud : {false, true}) {
            for (bool iss : {false, true}) {
                jwt_config c;
                c.secret = secret;
                c.audience = aud ? audience : "";
                c.issuer = iss ? issuer : "";
                c.leeway = std::chrono::seconds(leeway);
                out.push_back({jwt_verifier(c), aud, iss});
            }
        }
        return out;
    }();
    return v;
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

// The header a raw token carries, as the verifier reads it (discarded when it is not JSON).
json header_of(const std::string& token) {
    std::string text;
    unsigned v = 0;
    int bits = 0;
    for (char c : token.substr(0, token.find('.'))) {
        const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        const char* at = c == '\0' ? nullptr : std::strchr(t, c);
        if (at == nullptr) return json(json::value_t::discarded);
        v = (v << 6) | static_cast<unsigned>(at - t);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            text.push_back(static_cast<char>((v >> bits) & 0xFF));
        }
    }
    return json::parse(text, nullptr, false);
}

// base64url(header).base64url(claims).base64url(HMAC-SHA256(secret, the first two)): RFC 7515's
// compact serialisation, made here rather than by libjwt so the header can hold anything.
std::string sign(const std::string& header, const std::string& claims) {
    const std::string input = base64url(header) + "." + base64url(claims);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
         reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac, &n);
    return input + "." + base64url(std::string(reinterpret_cast<const char*>(mac), n));
}

// libjwt (jansson) cannot read an integer beyond 64 bits nor a string holding NUL, anywhere.
bool unreadable_by_libjwt(const json& j) {
    if (j.is_number_unsigned())
        return j.get<std::uint64_t>() > std::numeric_limits<std::int64_t>::max();
    if (j.is_string()) return j.get_ref<const std::string&>().find('\0') != std::string::npos;
    if (j.is_array()) {
        for (const auto& e : j)
            if (unreadable_by_libjwt(e)) return true;
    }
    if (j.is_object()) {
        for (const auto& [k, v] : j.items())
            if (k.find('\0') != std::string::npos || unreadable_by_libjwt(v)) return true;
    }
    return false;
}

// A NumericDate as a long double: every int64 and every double is exact in it, so comparisons
// below are the mathematical ones (the verifier's rounding and clamping must agree with them).
long double date(const json& j) {
    if (j.is_number_unsigned()) return static_cast<long double>(j.get<std::uint64_t>());
    if (j.is_number_integer()) return static_cast<long double>(j.get<std::int64_t>());
    return static_cast<long double>(j.get<double>());
}

// The rules of docs/protocol.md#authenticating, written out once more, plainly.
bool allowed(const json& header, const json& claims, const configured& c, std::int64_t now) {
    if (!header.is_object() || !claims.is_object()) return false;
    if (header.contains("crit")) return false;
    auto alg = header.find("alg");
    if (alg == header.end() || *alg != "HS256") return false;
    if (auto kid = header.find("kid"); kid != header.end() && !kid->is_string()) return false;
    if (auto typ = header.find("typ"); typ != header.end()) {
        if (!typ->is_string()) return false;
        std::string t = typ->get<std::string>();
        for (auto& ch : t)
            ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        if (t != "jwt") return false;
    }
    if (unreadable_by_libjwt(header) || unreadable_by_libjwt(claims)) return false;
    if (auto exp = claims.find("exp"); exp != claims.end()) {
        if (!exp->is_number()) return false;
        if (static_cast<long double>(now) > date(*exp) + leeway) return false;
    }
    if (auto nbf = claims.find("nbf"); nbf != claims.end()) {
        if (!nbf->is_number()) return false;
        if (static_cast<long double>(now) + leeway < date(*nbf)) return false;
    }
    if (auto iat = claims.find("iat"); iat != claims.end() && !iat->is_number()) return false;
    auto aud = claims.find("aud");
    if (!c.audience) {
        if (aud != claims.end()) return false;
    } else {
        if (aud == claims.end()) return false;
        if (aud->is_array()) {
            bool found = false;
            for (const auto& a : *aud) {
                if (!a.is_string()) return false;
                found = found || a == audience;
            }
            if (!found) return false;
        } else if (*aud != audience) {
            return false;
        }
    }
    if (c.issuer) {
        auto iss = claims.find("iss");
        if (iss == claims.end() || *iss != issuer) return false;
    }
    auto sub = claims.find("sub");
    return sub != claims.end() && sub->is_string() && !sub->get_ref<const std::string&>().empty();
}

// The properties every answer has.
void check_answer(const jwt_verifier::result& r, const std::string& token, std::int64_t now) {
    if (jwt_verifier::unexpected_errors() != 0) fail("verify() caught an exception", r.error);
    if (r.ok) {
        if (!r.error.empty()) fail("accepted with an error", r.error);
        if (r.subject.empty()) fail("accepted without a subject");
        if (!r.claims.is_object()) fail("claims are not an object");
        auto sub = r.claims.find("sub");
        if (sub == r.claims.end() || *sub != r.subject) fail("subject is not `sub`", r.subject);
        if (r.claims.contains("exp") != r.expires_at.has_value()) fail("exp without expires_at");
        if (r.expires_at) {
            if (*r.expires_at > jwt_verifier::max_expires_at) fail("expires_at beyond 9999");
            if (static_cast<long double>(*r.expires_at) + leeway < static_cast<long double>(now)) {
                fail("accepted an expired token");
            }
        }
    } else {
        if (r.error.empty()) fail("refused without a reason");
        if (!r.subject.empty()) fail("refused with a subject");
        if (r.error.size() > 200) fail("an error this long quotes something", r.error);
        // No part of the token in the message (short parts could match by chance).
        std::size_t start = 0;
        while (start <= token.size()) {
            auto end = token.find('.', start);
            if (end == std::string::npos) end = token.size();
            const std::string part = token.substr(start, end - start);
            if (part.size() > 16 && r.error.find(part) != std::string::npos)
                fail("the error echoes the token", r.error);
            start = end + 1;
        }
    }
}

// Verifies with each configuration; `header`/`claims` (when objects) are what the token holds,
// for the model. `exact`: the model decides acceptance both ways; else only ok => allowed.
void verify_all(const std::string& token, const json& header, const json& claims, bool exact,
                std::int64_t fuzzed_now) {
    for (const auto& c : verifiers()) {
        for (const std::int64_t now : {fixed_now, fuzzed_now}) {
            const auto r = c.verifier.verify(token, now);
            check_answer(r, token, now);
            if (exact) {
                if (r.ok != allowed(header, claims, c, now)) {
                    fail(r.ok ? "accepted a token the rules refuse"
                              : "refused a token the rules accept",
                         header.dump() + " . " + claims.dump() + " aud=" +
                             std::to_string(c.audience) + " iss=" + std::to_string(c.issuer) +
                             " now=" + std::to_string(now) + ": " + r.error);
                }
            } else if (r.ok && !allowed(header, r.claims, c, now)) {
                fail("accepted a token the rules refuse", token + ": " + r.claims.dump());
            }
        }
    }
}

// A date claim: mostly near now (whole or fractional), else anything.
json date_value(FuzzedDataProvider& in, std::int64_t now) {
    const auto delta = in.ConsumeIntegralInRange<std::int64_t>(-2 * leeway, 2 * leeway);
    switch (in.ConsumeIntegralInRange<int>(0, 3)) {
    case 0:
        return now + delta;
    case 1:
        return static_cast<double>(now + delta) + 0.5;
    case 2:
        return edge_number(in);
    default:
        return any_value(in, [](FuzzedDataProvider&) { return json(json::value_t::discarded); });
    }
}

json interesting_string(FuzzedDataProvider& in) {
    static const char* const s[] = {"HS256",  "HS512",  "none",
                                    "RS256",  "JWT",    "jwt",
                                    "at+jwt", "pgpush", "https://issuer.example",
                                    "alice",  "42",     "",
                                    "exp",    "b64",    "sub",
                                    "aud"};
    return s[in.ConsumeIntegralInRange<std::size_t>(0, std::size(s) - 1)];
}

// A field: absent, the usual value, or anything.
void maybe_set(FuzzedDataProvider& in, json& object, const char* name, const json& usual,
               int absent_weight = 1) {
    const int pick = in.ConsumeIntegralInRange<int>(0, 3 + absent_weight);
    if (pick < absent_weight) return;
    if (pick < absent_weight + 3) {
        object[name] = usual;
    } else {
        object[name] = any_value(in, interesting_string);
    }
}

void structured(FuzzedDataProvider& in) {
    const std::int64_t now =
        in.ConsumeIntegralInRange<std::int64_t>(0, jwt_verifier::max_expires_at - 1000);
    json header = json::object();
    maybe_set(in, header, "alg", "HS256", 0);
    maybe_set(in, header, "typ", "JWT");
    maybe_set(in, header, "kid", any_string(in, 8));
    // (A provider out of bytes returns the lowest value: make that the usual, benign choice.)
    if (in.ConsumeIntegralInRange<int>(0, 7) == 7)
        header["crit"] = any_value(in, interesting_string);
    json claims = json::object();
    maybe_set(in, claims, "sub", interesting_string(in), 0);
    maybe_set(in, claims, "exp", date_value(in, now), 2);
    maybe_set(in, claims, "nbf", date_value(in, now), 2);
    maybe_set(in, claims, "iat", date_value(in, now), 2);
    maybe_set(in, claims, "aud",
              in.ConsumeBool() ? json(audience) : json::array({"other", audience}), 2);
    maybe_set(in, claims, "iss", issuer, 2);
    for (json* object : {&header, &claims}) {
        const int extra = in.ConsumeIntegralInRange<int>(0, 2);
        for (int i = 0; i < extra; ++i)
            (*object)[any_string(in, 6)] = any_value(in, interesting_string);
    }
    // The same JSON for the token and the model: what the token's readers will see.
    const std::string header_text = header.dump();
    const std::string claims_text = claims.dump();
    verify_all(sign(header_text, claims_text), json::parse(header_text), json::parse(claims_text),
               /*exact=*/true, now);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    FuzzedDataProvider in(data + 1, size - 1);
    switch (data[0] % 3) {
    case 0:
        structured(in);
        break;
    case 1: {
        const std::int64_t now =
            in.ConsumeIntegralInRange<std::int64_t>(0, jwt_verifier::max_expires_at - 1000);
        const std::string header_text = in.ConsumeRandomLengthString(256);
        const std::string claims_text = in.ConsumeRemainingBytesAsString();
        const json header = json::parse(header_text, nullptr, false);
        verify_all(sign(header_text, claims_text), header, json(), /*exact=*/false, now);
        break;
    }
    default: {
        const std::string token = in.ConsumeRemainingBytesAsString();
        verify_all(token, header_of(token), json(), /*exact=*/false, fixed_now);
        break;
    }
    }
    return 0;
}
