// pgpush-watch: a minimal command-line client of `pgpush serve`, for the demo and for poking at a
// running engine by hand. It signs an HS256 token with the given claims (as your auth service
// would), subscribes to one query and/or listens on channels, and prints every message the
// engine sends, one JSON object per line, prefixed with the client's name.
//
//   pgpush-watch --port 8080 --secret S --claims '{"sub":"alice","rooms":[1,2]}'
//       --subscribe 'SELECT id, room_id, body FROM messages' --listen typing --name alice
//
// (one command line).

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <vector>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <jwt.h>
#include <nlohmann/json.hpp>

namespace net = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using nlohmann::json;

namespace {

struct options {
    std::string host = "127.0.0.1";
    std::string port = "8080";
    std::string secret;
    std::string claims = R"({"sub":"demo"})";
    std::vector<std::string> queries;
    std::vector<std::string> channels;
    std::string name = "watch";
};

[[noreturn]] void usage(const char* why) {
    std::fprintf(stderr,
                 "pgpush-watch: %s\nusage: pgpush-watch --port P --secret S [--host H] "
                 "[--claims JSON] [--subscribe SQL]... [--listen CHANNEL]... [--name NAME]\n",
                 why);
    std::exit(2);
}

options parse(int argc, char** argv) {
    options o;
    for (int i = 1; i < argc; ++i) {
        const std::string k = argv[i];
        if (i + 1 >= argc) usage(("missing value for " + k).c_str());
        const std::string v = argv[++i];
        if (k == "--host")
            o.host = v;
        else if (k == "--port")
            o.port = v;
        else if (k == "--secret")
            o.secret = v;
        else if (k == "--claims")
            o.claims = v;
        else if (k == "--subscribe")
            o.queries.push_back(v);
        else if (k == "--listen")
            o.channels.push_back(v);
        else if (k == "--name")
            o.name = v;
        else
            usage(("unknown option " + k).c_str());
    }
    if (o.secret.empty()) usage("--secret is required");
    return o;
}

// An HS256 token carrying `claims`, valid for an hour.
std::string sign(const std::string& claims, const std::string& secret) {
    auto parsed = json::parse(claims, nullptr, false);
    if (parsed.is_discarded() || !parsed.is_object()) usage("--claims must be a JSON object");
    parsed["exp"] = std::time(nullptr) + 3600;
    jwt_t* jwt = nullptr;
    jwt_new(&jwt);
    jwt_add_grants_json(jwt, parsed.dump().c_str());
    jwt_set_alg(jwt, JWT_ALG_HS256, reinterpret_cast<const unsigned char*>(secret.data()),
                static_cast<int>(secret.size()));
    char* encoded = jwt_encode_str(jwt);
    std::string token = encoded ? encoded : "";
    std::free(encoded);
    jwt_free(jwt);
    if (token.empty()) usage("could not sign the token");
    return token;
}

} // namespace

int main(int argc, char** argv) {
    const options o = parse(argc, argv);
    try {
        net::io_context io;
        net::ip::tcp::resolver resolver(io);
        websocket::stream<net::ip::tcp::socket> ws(io);
        net::connect(ws.next_layer(), resolver.resolve(o.host, o.port));
        ws.handshake(o.host + ":" + o.port, "/ws");
        ws.text(true);
        auto send = [&](const json& m) { ws.write(net::buffer(m.dump())); };

        send({{"type", "auth"}, {"token", sign(o.claims, o.secret)}});
        for (std::size_t i = 0; i < o.queries.size(); ++i)
            send({{"type", "subscribe"},
                  {"id", "q" + std::to_string(i + 1)},
                  {"query", o.queries[i]}});
        for (std::size_t i = 0; i < o.channels.size(); ++i)
            send({{"type", "listen"},
                  {"id", "n" + std::to_string(i + 1)},
                  {"channel", o.channels[i]}});

        beast::flat_buffer buffer;
        for (;;) {
            ws.read(buffer);
            const auto data = buffer.cdata();
            std::printf("%s <- %.*s\n", o.name.c_str(), static_cast<int>(data.size()),
                        static_cast<const char*>(data.data()));
            std::fflush(stdout);
            buffer.consume(buffer.size());
        }
    } catch (const beast::system_error& e) {
        if (e.code() == websocket::error::closed) {
            std::fprintf(stderr, "%s: the server closed the connection\n", o.name.c_str());
            return 0;
        }
        std::fprintf(stderr, "%s: %s\n", o.name.c_str(), e.what());
        return 1;
    }
}
