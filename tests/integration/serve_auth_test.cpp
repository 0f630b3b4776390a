// `pgpush serve` end to end: auth (docs/protocol.md#authenticating). Every refused token gets
// `error {code: "unauthenticated"}` and leaves the connection open for another try; accepted
// tokens (HS256, RS256 from a PEM file, ES256 from a JWKS chosen by `kid`) feed `auth.*` in the
// rules; an expiring token closes its connection (1008, "token expired") unless refreshed, and a
// connection that never authenticates is closed after --auth-timeout.

#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "tests/integration/serve_fixture.hpp"

namespace pgpush::testing {
namespace {

using nlohmann::json;

std::int64_t now() {
    return static_cast<std::int64_t>(std::time(nullptr));
}

std::string slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

std::string base64url(std::string_view in) {
    static const char* chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    std::string out;
    unsigned buffer = 0;
    int bits = 0;
    for (unsigned char c : in) {
        buffer = (buffer << 8) | c;
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out.push_back(chars[(buffer >> bits) & 0x3F]);
        }
    }
    if (bits > 0) out.push_back(chars[(buffer << (6 - bits)) & 0x3F]);
    return out;
}

// A token assembled by hand: what a forger (or a broken client) sends.
std::string raw_token(const json& header, const json& claims, const std::string& signature) {
    return base64url(header.dump()) + "." + base64url(claims.dump()) + "." + signature;
}

// A token whose header and claims are exactly these, correctly signed with HS256 and `secret` (by
// the openssl CLI, as libjwt writes its own `alg`): what a client holding the key can send,
// whatever the types of its fields.
std::string hs256_raw(const json& header, const json& claims, const std::string& dir,
                      const std::string& secret = test_secret) {
    const std::string input = base64url(header.dump()) + "." + base64url(claims.dump());
    const std::string in = dir + "/hmac.in", out = dir + "/hmac.out";
    std::ofstream(in, std::ios::binary) << input;
    const std::string cmd =
        "openssl dgst -sha256 -mac HMAC -macopt key:" + secret + " -binary -out " + out + " " + in;
    if (std::system(cmd.c_str()) != 0) throw std::runtime_error("openssl failed: " + cmd);
    return input + "." + base64url(slurp(out));
}

// A key pair made by the openssl CLI: private PEM (to sign), public PEM and public DER.
struct key_pair {
    std::string private_pem;
    std::string public_pem;
    std::string public_pem_path;
    std::string public_der;
};

key_pair make_key(const std::string& dir, const std::string& name, const std::string& genpkey) {
    const std::string base = dir + "/" + name;
    const std::string cmd = "openssl genpkey " + genpkey + " -out " + base + ".key 2>/dev/null" +
                            " && openssl pkey -in " + base + ".key -pubout -out " + base +
                            ".pub && openssl pkey -in " + base + ".key -pubout -outform DER -out " +
                            base + ".der";
    if (std::system(cmd.c_str()) != 0) throw std::runtime_error("openssl failed: " + cmd);
    return {slurp(base + ".key"), slurp(base + ".pub"), base + ".pub", slurp(base + ".der")};
}

// The JWK of a P-256 public key: its DER SubjectPublicKeyInfo ends with 04 || x || y.
json ec_jwk(const key_pair& k, const std::string& kid) {
    const std::string& der = k.public_der;
    const std::string xy = der.substr(der.size() - 64);
    return {{"kty", "EC"},
            {"crv", "P-256"},
            {"use", "sig"},
            {"kid", kid},
            {"x", base64url(xy.substr(0, 32))},
            {"y", base64url(xy.substr(32))}};
}

json alice(json extra = json::object()) {
    json c = {{"sub", "alice"}, {"uid", 10}, {"rooms", {1}}};
    c.update(extra);
    return c;
}

class serve_auth_test : public serve_test {
protected:
    static void SetUpTestSuite() {
        serve_test::SetUpTestSuite();
        if (!keys_dir_.empty()) return;
        char tmpl[] = "/tmp/pgpush-auth-keys-XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        keys_dir_ = tmpl;
        rsa_ = make_key(keys_dir_, "rsa", "-algorithm RSA -pkeyopt rsa_keygen_bits:2048");
        rsa_other_ =
            make_key(keys_dir_, "rsa_other", "-algorithm RSA -pkeyopt rsa_keygen_bits:2048");
        ec1_ = make_key(keys_dir_, "ec1", "-algorithm EC -pkeyopt ec_paramgen_curve:P-256");
        ec2_ = make_key(keys_dir_, "ec2", "-algorithm EC -pkeyopt ec_paramgen_curve:P-256");
        ec_other_ =
            make_key(keys_dir_, "ec_other", "-algorithm EC -pkeyopt ec_paramgen_curve:P-256");
        jwks_path_ = keys_dir_ + "/jwks.json";
        std::ofstream(jwks_path_)
            << json{{"keys", {ec_jwk(ec1_, "k1"), ec_jwk(ec2_, "k2")}}}.dump();
    }

    // Every test starts an engine with a slot of its own; the slots of engines that have stopped
    // are dropped, so that max_replication_slots bounds the engines running at once, not the
    // number of tests here.
    void SetUp() override {
        pg().exec("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                  "WHERE NOT active");
    }

    static void TearDownTestSuite() {
        if (!keys_dir_.empty()) std::filesystem::remove_all(keys_dir_);
        keys_dir_.clear();
    }

    void start_rs256(std::vector<std::string> extra = {}) {
        extra.insert(extra.end(), {"--jwt-alg", "RS256", "--jwt-public-key", rsa_.public_pem_path});
        start(default_rules(), extra);
    }

    // Sends `token` as an auth message and returns the reply.
    static std::optional<json> auth(ws_client& c, const std::string& token) {
        c.send(json{{"type", "auth"}, {"token", token}});
        return c.next();
    }

    // `token` is refused with `unauthenticated` (no id, a message that does not echo it), the
    // connection stays unauthenticated but open, and `good` then authenticates it.
    void expect_refused(const std::string& token, const std::string& good) {
        ws_client c(port());
        auto m = auth(c, token);
        ASSERT_TRUE(m) << "no reply to a refused token; closed=" << c.closed();
        EXPECT_EQ((*m)["type"], "error") << m->dump();
        EXPECT_EQ((*m)["code"], "unauthenticated") << m->dump();
        EXPECT_FALSE(m->contains("id")) << m->dump();
        ASSERT_TRUE((*m)["message"].is_string()) << m->dump();
        EXPECT_FALSE((*m)["message"].get<std::string>().empty());
        if (token.size() > 16) {
            EXPECT_EQ((*m)["message"].get<std::string>().find(token), std::string::npos)
                << "the error echoes the token";
        }
        // Still not authenticated: a subscribe is refused, with its id.
        c.send(json{{"type", "subscribe"}, {"id", "s1"}, {"query", "SELECT id FROM rooms"}});
        auto e = c.next();
        ASSERT_TRUE(e);
        EXPECT_EQ((*e)["type"], "error") << e->dump();
        EXPECT_EQ((*e)["code"], "unauthenticated") << e->dump();
        EXPECT_EQ((*e)["id"], "s1") << e->dump();
        // Open for another try.
        auto ok = auth(c, good);
        ASSERT_TRUE(ok) << "closed after a refused token";
        EXPECT_EQ((*ok)["type"], "authenticated") << ok->dump();
        auto rows = subscribe(c, "s2", "SELECT id, name FROM rooms WHERE id = 1");
        EXPECT_EQ(rows, json::array({{{"id", 1}, {"name", "general"}}}));
    }

    std::string signed_raw(const json& header, const json& claims) {
        return hs256_raw(header, claims, keys_dir_);
    }

    // The rooms with ids in (above, above + 100): each test of this file that inserts rooms keeps
    // to its own range below 2100, the ranges the tests after it read.
    static std::string rooms_above(int above) {
        return "SELECT id, name FROM rooms WHERE id > " + std::to_string(above) + " AND id < " +
               std::to_string(above + 100);
    }

    // The server is still running, and serves: `watcher` (subscribed as "w" to
    // rooms_above(above)) and a new client subscribed the same way both get a row inserted now.
    void expect_still_serving(ws_client& watcher, int above) {
        ASSERT_FALSE(server().wait(0ms)) << "the server exited:\n" << server().stderr_text();
        auto other = connect({{"sub", "bob"}, {"uid", 11}, {"rooms", {1}}});
        EXPECT_EQ(subscribe(*other, "o", rooms_above(above)), json::array());
        pg().exec("INSERT INTO rooms VALUES (" + std::to_string(above + 1) + ", 'still here')");
        for (auto [c, id] : {std::pair{&watcher, "w"}, std::pair{other.get(), "o"}}) {
            auto ins = c->next();
            ASSERT_TRUE(ins) << id << " got no insert";
            EXPECT_EQ((*ins)["type"], "insert") << ins->dump();
            EXPECT_EQ((*ins)["id"], id) << ins->dump();
            EXPECT_EQ((*ins)["row"], json({{"id", above + 1}, {"name", "still here"}}));
        }
    }

    static inline std::string keys_dir_;
    static inline std::string jwks_path_;
    static inline key_pair rsa_, rsa_other_, ec1_, ec2_, ec_other_;
};

// ---- refused tokens ----

TEST_F(serve_auth_test, alg_none_is_refused) {
    start();
    const auto claims = alice({{"exp", now() + 3600}});
    expect_refused(raw_token({{"alg", "none"}, {"typ", "JWT"}}, claims, ""), token(alice()));
    // Capitalised, and with a signature tacked on: still none.
    expect_refused(raw_token({{"alg", "None"}, {"typ", "JWT"}}, claims, "c2ln"), token(alice()));
}

TEST_F(serve_auth_test, hs256_signed_with_the_rsa_public_key_is_refused) {
    start_rs256();
    const std::string good = make_token(alice(), rsa_.private_pem, "RS256");
    // The classic confusion: the public key is public, so an HS256 "signature" made with its PEM
    // text as the HMAC secret must not pass a server pinned to RS256.
    expect_refused(make_token(alice(), rsa_.public_pem, "HS256"), good);
    // The same key text without its trailing newline, as some libraries strip it.
    std::string trimmed = rsa_.public_pem;
    while (!trimmed.empty() && trimmed.back() == '\n')
        trimmed.pop_back();
    expect_refused(make_token(alice(), trimmed, "HS256"), good);
}

TEST_F(serve_auth_test, bad_signature_is_refused) {
    start();
    expect_refused(make_token(alice(), "another-secret-that-is-also-32-bytes-long"),
                   token(alice()));
    // A valid token with its claims swapped for others: the signature no longer covers them.
    const std::string real = token(alice());
    const std::string forged = real.substr(0, real.find('.')) + "." +
                               base64url(alice({{"rooms", {1, 2, 3}}}).dump()) +
                               real.substr(real.rfind('.'));
    expect_refused(forged, token(alice()));
}

TEST_F(serve_auth_test, rs256_signed_by_another_key_is_refused) {
    start_rs256();
    expect_refused(make_token(alice(), rsa_other_.private_pem, "RS256"),
                   make_token(alice(), rsa_.private_pem, "RS256"));
}

TEST_F(serve_auth_test, expired_token_is_refused) {
    start(default_rules(), {"--jwt-leeway", "5"});
    expect_refused(token(alice({{"exp", now() - 3600}})), token(alice({{"exp", now() + 3600}})));
}

TEST_F(serve_auth_test, token_not_valid_yet_is_refused) {
    start(default_rules(), {"--jwt-leeway", "5"});
    expect_refused(token(alice({{"nbf", now() + 3600}})), token(alice({{"nbf", now() - 10}})));
}

TEST_F(serve_auth_test, wrong_audience_is_refused) {
    start(default_rules(),
          {"--jwt-audience", "pgpush-test", "--jwt-issuer", "https://issuer.example"});
    const std::string good =
        token(alice({{"iss", "https://issuer.example"}, {"aud", "pgpush-test"}}));
    expect_refused(token(alice({{"iss", "https://issuer.example"}, {"aud", "someone-else"}})),
                   good);
    expect_refused(token(alice({{"iss", "https://issuer.example"}, {"aud", {"a", "b"}}})), good);
    expect_refused(token(alice({{"iss", "https://issuer.example"}})), good); // no aud at all
    // An array holding the audience is fine.
    expect_refused(
        token(alice({{"iss", "https://issuer.example"}, {"aud", "x"}})),
        token(alice({{"iss", "https://issuer.example"}, {"aud", {"x", "pgpush-test"}}})));
}

TEST_F(serve_auth_test, wrong_issuer_is_refused) {
    start(default_rules(),
          {"--jwt-audience", "pgpush-test", "--jwt-issuer", "https://issuer.example"});
    const std::string good =
        token(alice({{"iss", "https://issuer.example"}, {"aud", "pgpush-test"}}));
    expect_refused(token(alice({{"iss", "https://evil.example"}, {"aud", "pgpush-test"}})), good);
    expect_refused(token(alice({{"iss", "https://issuer.example/"}, {"aud", "pgpush-test"}})),
                   good);
    expect_refused(token(alice({{"aud", "pgpush-test"}})), good); // no iss at all
}

TEST_F(serve_auth_test, garbage_tokens_are_refused) {
    start();
    const std::string good = token(alice());
    for (const std::string& garbage : std::vector<std::string>{
             "", "garbage", "a.b", "a.b.c", "...", "Bearer " + good, good + "x", "%%%.%%%.%%%",
             base64url("not json") + "." + base64url("{}") + ".",
             base64url("[1,2]") + "." + base64url("{}") + ".",
             raw_token({{"alg", "HS256"}}, alice(), "") /* unsigned HS256 */}) {
        SCOPED_TRACE("token: " + garbage);
        expect_refused(garbage, good);
    }
}

TEST_F(serve_auth_test, token_on_the_upgrade_url) {
    start();
    {
        ws_client c(port(), "/ws?token=" + token(alice()));
        auto m = c.next();
        ASSERT_TRUE(m);
        EXPECT_EQ((*m)["type"], "authenticated") << m->dump();
        EXPECT_EQ((*m)["sub"], "alice");
        EXPECT_EQ(subscribe(c, "r", "SELECT id, name FROM rooms WHERE id = 2"),
                  json::array({{{"id", 2}, {"name", "random"}}}));
    }
    ws_client bad(port(),
                  "/ws?token=" + make_token(alice(), "another-secret-that-is-also-32-bytes-long"));
    auto m = bad.next();
    ASSERT_TRUE(m);
    EXPECT_EQ((*m)["type"], "error") << m->dump();
    EXPECT_EQ((*m)["code"], "unauthenticated") << m->dump();
    auto ok = auth(bad, token(alice()));
    ASSERT_TRUE(ok);
    EXPECT_EQ((*ok)["type"], "authenticated") << ok->dump();
}

// ---- header fields and claims of the wrong JSON type ----

// Values of every JSON type but a string (a string of the wrong value is tested above).
const std::vector<json>& not_strings() {
    static const std::vector<json> v = {123,
                                        1.5,
                                        nullptr,
                                        true,
                                        false,
                                        json::array(),
                                        json::object(),
                                        json::array({"HS256"}),
                                        json({{"alg", "HS256"}}),
                                        18446744073709551615ull};
    return v;
}

// A header `alg` or `kid` of any other type than a string, correctly signed, through the auth
// message and the upgrade URL: refused as unauthenticated like any bad token, and the engine and
// its other clients carry on.
TEST_F(serve_auth_test,
       header_fields_of_the_wrong_json_type_are_refused_and_the_server_carries_on) {
    start();
    auto watcher = connect(alice());
    EXPECT_EQ(subscribe(*watcher, "w", rooms_above(1100)), json::array());
    const std::string good = token(alice());
    for (const char* field : {"alg", "kid", "typ"}) {
        for (const json& value : not_strings()) {
            json header = {{"alg", "HS256"}, {"typ", "JWT"}};
            header[field] = value;
            const std::string t = signed_raw(header, alice());
            SCOPED_TRACE(std::string(field) + " = " + value.dump());
            expect_refused(t, good);
            ws_client by_url(port(), "/ws?token=" + t);
            auto m = by_url.next();
            ASSERT_TRUE(m) << "no answer on the upgrade URL; closed=" << by_url.closed();
            EXPECT_EQ((*m)["type"], "error") << m->dump();
            EXPECT_EQ((*m)["code"], "unauthenticated") << m->dump();
        }
    }
    expect_still_serving(*watcher, 1100);
}

// With a JWKS the verifier reads `kid` to choose the key, before any signature check.
TEST_F(serve_auth_test, kid_of_the_wrong_json_type_is_refused_with_a_jwks) {
    start(default_rules(), {"--jwt-alg", "ES256", "--jwt-jwks", jwks_path_});
    const std::string good = make_token(alice(), ec1_.private_pem, "ES256", {{"kid", "k1"}});
    auto watcher = std::make_unique<ws_client>(port());
    auto ok = auth(*watcher, good);
    ASSERT_TRUE(ok && (*ok)["type"] == "authenticated") << (ok ? ok->dump() : "no reply");
    EXPECT_EQ(subscribe(*watcher, "w", rooms_above(1200)), json::array());
    for (const json& kid : not_strings()) {
        SCOPED_TRACE("kid = " + kid.dump());
        const std::string t = raw_token({{"alg", "ES256"}, {"kid", kid}}, alice(), "c2lnbmF0dXJl");
        expect_refused(t, good);
        ws_client by_url(port(), "/ws?token=" + t);
        auto m = by_url.next();
        ASSERT_TRUE(m) << "no answer on the upgrade URL; closed=" << by_url.closed();
        EXPECT_EQ((*m)["code"], "unauthenticated") << m->dump();
    }
    ASSERT_FALSE(server().wait(0ms)) << "the server exited:\n" << server().stderr_text();
    pg().exec("INSERT INTO rooms VALUES (1201, 'jwks')");
    auto ins = watcher->next();
    ASSERT_TRUE(ins);
    EXPECT_EQ((*ins)["row"], json({{"id", 1201}, {"name", "jwks"}})) << ins->dump();
}

TEST_F(serve_auth_test, claims_of_the_wrong_json_type_are_refused_and_the_server_carries_on) {
    start();
    auto watcher = connect(alice());
    EXPECT_EQ(subscribe(*watcher, "w", rooms_above(1300)), json::array());
    const std::string good = token(alice());
    for (const char* claim : {"exp", "nbf", "iat", "sub"}) {
        for (const json& value : {json("soon"), json(nullptr), json(true), json::array(),
                                  json::object(), json({1, 2})}) {
            if (value.is_string() && std::string(claim) == "sub") continue; // a valid subject
            SCOPED_TRACE(std::string(claim) + " = " + value.dump());
            expect_refused(signed_raw({{"alg", "HS256"}, {"typ", "JWT"}}, alice({{claim, value}})),
                           good);
        }
    }
    expect_still_serving(*watcher, 1300);
}

TEST_F(serve_auth_test, aud_without_a_configured_audience_is_refused) {
    start();
    const std::string good = token(alice());
    expect_refused(token(alice({{"aud", "pgpush-test"}})), good);
    expect_refused(token(alice({{"aud", {"pgpush-test", "other"}}})), good);
    expect_refused(token(alice({{"aud", ""}})), good);
}

TEST_F(serve_auth_test, crit_header_is_refused) {
    start();
    const std::string good = token(alice());
    for (const json& crit : {json({"exp"}), json({"b64"}), json({"urn:example:ext"}), json::array(),
                             json("b64"), json(nullptr)}) {
        SCOPED_TRACE("crit = " + crit.dump());
        json header = {{"alg", "HS256"}, {"typ", "JWT"}, {"crit", crit}, {"b64", true}};
        ws_client c(port());
        auto m = auth(c, signed_raw(header, alice()));
        ASSERT_TRUE(m);
        EXPECT_EQ((*m)["code"], "unauthenticated") << m->dump();
        EXPECT_NE((*m)["message"].get<std::string>().find("crit"), std::string::npos) << m->dump();
        expect_refused(signed_raw(header, alice()), good);
    }
}

TEST_F(serve_auth_test, nbf_in_the_far_future_is_refused) {
    start();
    const std::string good = token(alice());
    expect_refused(token(alice({{"nbf", 1e300}})), good);
    expect_refused(token(alice({{"nbf", std::numeric_limits<std::int64_t>::max()}})), good);
    expect_refused(token(alice({{"nbf", 32503680000.5}})), good); // year 3000, fractional
}

TEST_F(serve_auth_test, token_without_a_string_subject_is_refused) {
    start();
    const std::string good = token(alice());
    for (const json& claims :
         {json({{"uid", 10}, {"rooms", {1}}}), json({{"sub", 42}, {"rooms", {1}}}),
          json({{"sub", 42.0}, {"rooms", {1}}}), json({{"sub", ""}, {"rooms", {1}}}),
          json({{"sub", nullptr}, {"rooms", {1}}}), json({{"sub", {"alice"}}, {"rooms", {1}}})}) {
        SCOPED_TRACE(claims.dump());
        ws_client c(port());
        auto m = auth(c, token(claims));
        ASSERT_TRUE(m);
        EXPECT_EQ((*m)["code"], "unauthenticated") << m->dump();
        EXPECT_NE((*m)["message"].get<std::string>().find("sub"), std::string::npos) << m->dump();
        expect_refused(token(claims), good);
    }
    // "42" is a subject, and it is what the server says the connection belongs to.
    ws_client c(port());
    auto m = auth(c, token({{"sub", "42"}, {"rooms", {1}}}));
    ASSERT_TRUE(m);
    EXPECT_EQ(*m, json({{"type", "authenticated"}, {"sub", "42"}}));
}

// An `exp` beyond the year 2262 does not fit a steady_clock deadline in nanoseconds: the verifier
// reports dates up to the year 9999 (jwt_verifier::max_expires_at) and the session caps the
// timer's duration. An overflowing timer fired at once and closed the connection as expired.
TEST_F(serve_auth_test, token_expiring_in_the_far_future_keeps_its_connection_open) {
    start();
    int id = 1400;
    for (const json& exp : {json(32503680000), json(1e300)}) { // the year 3000; beyond 9999
        SCOPED_TRACE("exp = " + exp.dump());
        ws_client c(port());
        auto m = auth(c, token(alice({{"exp", exp}})));
        ASSERT_TRUE(m);
        ASSERT_EQ((*m)["type"], "authenticated") << m->dump();
        EXPECT_EQ(subscribe(c, "r", rooms_above(id)), json::array());
        c.send(json{{"type", "ping"}, {"data", "open"}});
        auto pong = c.next();
        ASSERT_TRUE(pong) << "closed: " << c.close_code() << " " << c.close_reason();
        EXPECT_EQ(*pong, json({{"type", "pong"}, {"data", "open"}}));
        pg().exec("INSERT INTO rooms VALUES (" + std::to_string(id + 1) + ", 'far future')");
        auto ins = c.next();
        ASSERT_TRUE(ins) << "closed: " << c.close_code() << " " << c.close_reason();
        EXPECT_EQ((*ins)["type"], "insert") << ins->dump();
        EXPECT_EQ((*ins)["row"], json({{"id", id + 1}, {"name", "far future"}}));
        id += 100;
    }
}

// ---- accepted tokens: public keys ----

TEST_F(serve_auth_test, rs256_with_a_public_key_file) {
    start_rs256();
    pg().exec("INSERT INTO messages (id, room_id, sender_id, body) VALUES (2001, 1, 10, 'rsa')");
    ws_client c(port());
    const auto exp = now() + 3600;
    auto m = auth(c, make_token(alice({{"exp", exp}}), rsa_.private_pem, "RS256"));
    ASSERT_TRUE(m);
    EXPECT_EQ(*m, json({{"type", "authenticated"}, {"sub", "alice"}, {"exp", exp}}));
    // The claims are what the rules see: room 1 only.
    auto rows = subscribe(c, "m", "SELECT id, body FROM messages WHERE id = 2001");
    EXPECT_EQ(rows, json::array({{{"id", 2001}, {"body", "rsa"}}}));
}

TEST_F(serve_auth_test, es256_from_a_jwks_chooses_the_key_by_kid) {
    start(default_rules(), {"--jwt-alg", "ES256", "--jwt-jwks", jwks_path_});
    for (const auto& [kid, key] : {std::pair{"k1", &ec1_}, std::pair{"k2", &ec2_}}) {
        SCOPED_TRACE(kid);
        ws_client c(port());
        auto m = auth(c, make_token(alice(), key->private_pem, "ES256", {{"kid", kid}}));
        ASSERT_TRUE(m);
        EXPECT_EQ((*m)["type"], "authenticated") << m->dump();
        EXPECT_EQ(subscribe(c, "r", "SELECT id, name FROM rooms WHERE id = 3"),
                  json::array({{{"id", 3}, {"name", "private"}}}));
    }
    const std::string good = make_token(alice(), ec1_.private_pem, "ES256", {{"kid", "k1"}});
    // Signed by k2 but naming k1: checked against k1, so refused.
    expect_refused(make_token(alice(), ec2_.private_pem, "ES256", {{"kid", "k1"}}), good);
    // A kid the JWKS does not have, and no kid with several keys to choose from.
    expect_refused(make_token(alice(), ec1_.private_pem, "ES256", {{"kid", "k3"}}), good);
    expect_refused(make_token(alice(), ec1_.private_pem, "ES256"), good);
    // A key outside the JWKS, naming a kid that is in it.
    expect_refused(make_token(alice(), ec_other_.private_pem, "ES256", {{"kid", "k2"}}), good);
    // RS256 is not the pinned algorithm, whatever its key.
    expect_refused(make_token(alice(), rsa_.private_pem, "RS256", {{"kid", "k1"}}), good);
}

// ---- lifetimes ----

TEST_F(serve_auth_test, expiring_token_closes_the_connection_unless_refreshed) {
    start();
    // exp is whole seconds: a few of them leave time to refresh the second connection first.
    const auto exp = now() + 5;
    auto short_lived = connect(alice({{"exp", exp}}));
    auto refreshed = connect(alice({{"exp", exp}}));
    EXPECT_EQ(subscribe(*refreshed, "r", "SELECT id, name FROM rooms WHERE id > 2100"),
              json::array());
    auto m = auth(*refreshed, token(alice({{"exp", now() + 3600}})));
    ASSERT_TRUE(m);
    ASSERT_EQ((*m)["type"], "authenticated") << m->dump();
    ASSERT_GT((*m)["exp"].get<std::int64_t>(), exp);

    // The event: the first connection is told, then closed by the server (the close code is
    // checked in expired_token_closes_with_1008_token_expired).
    auto e = short_lived->next(30s);
    ASSERT_TRUE(e) << "not told before the close";
    EXPECT_EQ((*e)["type"], "error") << e->dump();
    EXPECT_EQ((*e)["code"], "unauthenticated") << e->dump();
    EXPECT_FALSE(short_lived->next(15s)) << "a message after the expiry error";
    EXPECT_FALSE(short_lived->timed_out()) << "still open after its token expired";
    EXPECT_GE(now(), exp - 1) << "closed before its token expired";

    // The refreshed one is past the first token's exp and still open, with its subscription.
    refreshed->send(json{{"type", "ping"}, {"data", "still here"}});
    auto pong = refreshed->next();
    ASSERT_TRUE(pong) << "the refreshed connection was closed";
    EXPECT_EQ(*pong, json({{"type", "pong"}, {"data", "still here"}}));
    pg().exec("INSERT INTO rooms VALUES (2101, 'after expiry')");
    auto ins = refreshed->next();
    ASSERT_TRUE(ins);
    EXPECT_EQ((*ins)["type"], "insert") << ins->dump();
    EXPECT_EQ((*ins)["id"], "r");
    EXPECT_EQ((*ins)["row"], json({{"id", 2101}, {"name", "after expiry"}}));
}

TEST_F(serve_auth_test, connection_without_auth_is_closed_after_the_auth_timeout) {
    start(default_rules(), {"--auth-timeout", "1"});
    ws_client silent(port());
    ws_client refused(port());
    auto m = auth(refused, "garbage");
    ASSERT_TRUE(m);
    EXPECT_EQ((*m)["code"], "unauthenticated") << m->dump();
    auto authed = connect(alice());

    // The close code is checked in auth_timeout_closes_with_1008.
    for (ws_client* c : {&silent, &refused}) {
        auto e = c->next(30s);
        ASSERT_TRUE(e) << "not told before the close";
        EXPECT_EQ((*e)["type"], "error") << e->dump();
        EXPECT_EQ((*e)["code"], "unauthenticated") << e->dump();
        EXPECT_FALSE(c->next(15s)) << "a message after the timeout error";
        EXPECT_FALSE(c->timed_out()) << "still open after the auth timeout";
    }
    // The authenticated one is past the timeout and still open.
    authed->send(json{{"type", "ping"}, {"data", 1}});
    auto pong = authed->next();
    ASSERT_TRUE(pong) << "an authenticated connection was closed by the auth timeout";
    EXPECT_EQ(*pong, json({{"type", "pong"}, {"data", 1}}));
}

// The close frame follows the error that explains it (docs/protocol.md#errors, close codes).
TEST_F(serve_auth_test, expired_token_closes_with_1008_token_expired) {
    start();
    auto c = connect(alice({{"exp", now() + 2}}));
    auto e = c->next(30s);
    ASSERT_TRUE(e);
    EXPECT_EQ((*e)["code"], "unauthenticated") << e->dump();
    EXPECT_FALSE(c->next(15s));
    EXPECT_FALSE(c->timed_out());
    EXPECT_EQ(c->close_code(), 1008);
    EXPECT_EQ(c->close_reason(), "token expired");
}

TEST_F(serve_auth_test, auth_timeout_closes_with_1008) {
    start(default_rules(), {"--auth-timeout", "1"});
    ws_client c(port());
    auto e = c.next(30s);
    ASSERT_TRUE(e);
    EXPECT_EQ((*e)["code"], "unauthenticated") << e->dump();
    EXPECT_FALSE(c.next(15s));
    EXPECT_FALSE(c.timed_out());
    EXPECT_EQ(c.close_code(), 1008);
    EXPECT_FALSE(c.close_reason().empty());
}

// ---- claims feed the rules ----

std::string claims_rules() {
    return R"(
tables:
  messages:
    allow: "auth.sub is not null"
    rows: "row.room_id in auth.rooms"
    columns: [id, room_id, body]
  audit:
    allow: "auth.role = 'admin'"
    rows: "true"
    columns: "*"
  rooms:
    rows: "true"
    columns: [id, name]
)";
}

TEST_F(serve_auth_test, reauth_with_new_claims_plans_subscriptions_again) {
    start(claims_rules());
    pg().exec("INSERT INTO messages (id, room_id, sender_id, body) VALUES "
              "(3001, 1, 10, 'in one'), (3002, 2, 10, 'in two')");
    auto c = connect({{"sub", "alice"}, {"role", "admin"}, {"rooms", {1}}});
    EXPECT_EQ(subscribe(*c, "audit", "SELECT id, what FROM audit WHERE id > 3000"), json::array());
    EXPECT_EQ(subscribe(*c, "msgs", "SELECT id, body FROM messages WHERE id > 3000"),
              json::array({{{"id", 3001}, {"body", "in one"}}}));
    EXPECT_EQ(subscribe(*c, "rooms", "SELECT id, name FROM rooms WHERE id > 3000"), json::array());

    // Same user, new claims: no longer an admin, in room 2 instead of room 1.
    c->send(json{{"type", "auth"},
                 {"token", token({{"sub", "alice"}, {"role", "user"}, {"rooms", {2}}})}});
    bool authenticated = false;
    std::optional<json> audit_end, msgs_end;
    while (!(authenticated && audit_end && msgs_end)) {
        auto m = c->next();
        ASSERT_TRUE(m) << "authenticated=" << authenticated << " audit=" << bool(audit_end)
                       << " msgs=" << bool(msgs_end);
        if ((*m)["type"] == "authenticated") {
            authenticated = true;
        } else if ((*m)["type"] == "error" && (*m)["id"] == "audit") {
            audit_end = m;
        } else if ((*m)["type"] == "error" && (*m)["id"] == "msgs") {
            msgs_end = m;
        } else {
            FAIL() << "unexpected: " << m->dump();
        }
    }
    // The rules no longer allow the audit subscription at all.
    EXPECT_EQ((*audit_end)["code"], "forbidden") << audit_end->dump();
    // The messages one may see other rows now: the client's copy is stale, subscribe again.
    EXPECT_EQ((*msgs_end)["code"], "resync_required") << msgs_end->dump();

    // The ended subscriptions get nothing more; the unaffected one carries on. One transaction,
    // rooms last: anything still sent for the others would come first.
    pg().exec("BEGIN; INSERT INTO audit VALUES (3001, 'x'); "
              "INSERT INTO messages (id, room_id, sender_id, body) VALUES "
              "(3003, 1, 10, 'one again'), (3004, 2, 10, 'two again'); "
              "INSERT INTO rooms VALUES (3001, 'marker'); COMMIT");
    auto ins = c->next();
    ASSERT_TRUE(ins);
    EXPECT_EQ(*ins, json({{"type", "insert"},
                          {"id", "rooms"},
                          {"row", {{"id", 3001}, {"name", "marker"}}},
                          {"position", (*ins)["position"]},
                          {"commit_time", (*ins)["commit_time"]}}));

    // New subscriptions see with the new claims.
    EXPECT_EQ(
        subscribe(*c, "msgs2", "SELECT id, body FROM messages WHERE id > 3000"),
        json::array({{{"id", 3002}, {"body", "in two"}}, {{"id", 3004}, {"body", "two again"}}}));
    c->send(json{{"type", "subscribe"}, {"id", "audit2"}, {"query", "SELECT id FROM audit"}});
    auto e = c->next();
    ASSERT_TRUE(e);
    EXPECT_EQ((*e)["type"], "error") << e->dump();
    EXPECT_EQ((*e)["code"], "forbidden") << e->dump();
    EXPECT_EQ((*e)["id"], "audit2") << e->dump();
}

TEST_F(serve_auth_test, reauth_cannot_change_the_user_or_fall_back_to_a_bad_token) {
    start();
    auto c = connect(alice());
    EXPECT_EQ(subscribe(*c, "r", "SELECT id, name FROM rooms WHERE id > 4000"), json::array());

    // Another user's valid token: a connection belongs to one user.
    auto m = auth(*c, token({{"sub", "bob"}, {"uid", 11}, {"rooms", {1, 2, 3}}}));
    ASSERT_TRUE(m);
    EXPECT_EQ((*m)["type"], "error") << m->dump();
    EXPECT_EQ((*m)["code"], "forbidden") << m->dump();
    // A refused token: the connection keeps the token it had.
    m = auth(*c, token(alice({{"exp", now() - 3600}})));
    ASSERT_TRUE(m);
    EXPECT_EQ((*m)["type"], "error") << m->dump();
    EXPECT_EQ((*m)["code"], "unauthenticated") << m->dump();

    // Still alice, still subscribed.
    pg().exec("INSERT INTO rooms VALUES (4001, 'still alice')");
    auto ins = c->next();
    ASSERT_TRUE(ins);
    EXPECT_EQ((*ins)["type"], "insert") << ins->dump();
    EXPECT_EQ((*ins)["row"], json({{"id", 4001}, {"name", "still alice"}}));
}

TEST_F(serve_auth_test, refused_tokens_are_counted) {
    start();
    auto metric = [&] {
        auto [status, body] = http_get(port(), "/metrics");
        EXPECT_EQ(status, 200);
        auto at = body.find("\npgpush_auth_failures_total ");
        if (at == std::string::npos) return -1L;
        return std::stol(body.substr(at + 28));
    };
    const long before = metric();
    ws_client c(port());
    for (int i = 0; i < 3; ++i) {
        auto m = auth(c, "garbage");
        ASSERT_TRUE(m);
        EXPECT_EQ((*m)["code"], "unauthenticated");
    }
    EXPECT_EQ(metric(), before + 3);
}

} // namespace
} // namespace pgpush::testing
