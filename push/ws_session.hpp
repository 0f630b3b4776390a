#pragma once

// One client connection: a WebSocket on one I/O thread (its own io_context, so no strand is
// needed). It reads JSON messages, answers or forwards them to the hub, and writes frames with
// exactly one async_write outstanding, from a queue bounded in bytes: a client that lets its
// queue pass the budget is cut off with a reason, and nobody else notices.

#include <array>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <nlohmann/json.hpp>

#include "push/client.hpp"
#include "push/frame.hpp"
#include "push/protocol.hpp"
#include "push/session_context.hpp"

namespace pgpush::push {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
namespace websocket = boost::beast::websocket;

class ws_session final : public client, public std::enable_shared_from_this<ws_session> {
public:
    ws_session(net::ip::tcp::socket&& socket, session_context& ctx);
    ~ws_session() override;

    // Completes the WebSocket handshake for `request` (a token may come as ?token=).
    void run(http::request<http::string_body> request);

    void post_frames(std::vector<frame> frames) override;
    boost::asio::any_io_executor executor() const override { return executor_; }
    void enqueue_frames(std::vector<frame>& frames) override {
        for (auto& f : frames)
            enqueue(std::move(f));
    }
    std::uint64_t connection_id() const override { return id_; }
    flow_gate& flow() override { return flow_; }

    // From any thread: a close frame with `reason` after what is queued (server shutdown).
    void shut_down(std::string reason);

private:
    void on_accept(beast::error_code ec, std::optional<std::string> token);
    void read();
    void on_read(beast::error_code ec, std::size_t bytes);
    void handle(std::string_view text);
    void authenticate(std::string_view token);
    bool take_token();
    void reply(std::string text);
    void error(protocol::error_code code, std::string_view message, std::string_view id = {});
    // `counted`: its bytes are in flow_.queued already (post_frames counts them when posting).
    void enqueue(frame f, bool counted = false);
    void write();
    void on_write(beast::error_code ec, std::size_t bytes);
    void close(websocket::close_code code, std::string reason);
    void arm_timer(std::chrono::steady_clock::time_point when, std::string reason);
    void release_queue();
    // The connection is closing or gone: nothing more is queued, and waiters hear it.
    void mark_closed();

    websocket::stream<beast::tcp_stream> ws_;
    const net::any_io_executor executor_; // the socket's: this connection's thread
    session_context& ctx_;
    const std::uint64_t id_;
    beast::flat_buffer in_;
    std::deque<frame> queue_;
    std::array<net::const_buffer, 3> out_;
    bool writing_ = false;
    bool closing_ = false;     // a close is under way or done
    bool close_after_ = false; // close once the queue is written, with:
    websocket::close_code close_code_ = websocket::close_code::going_away;
    std::string close_reason_;
    flow_gate flow_;
    std::shared_ptr<const nlohmann::json> claims_;
    std::string user_;
    bool user_counted_ = false;
    std::optional<net::steady_timer> timer_;
    double tokens_;
    std::chrono::steady_clock::time_point refilled_;
};

} // namespace pgpush::push
