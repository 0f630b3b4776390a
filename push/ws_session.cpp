#include "push/ws_session.hpp"

#include <algorithm>

#include <boost/asio/post.hpp>
#include <spdlog/spdlog.h>

#include "push/hub.hpp"
#include "push/jwt_verifier.hpp"

namespace pgpush::push {

using protocol::error_code;

namespace {

std::int64_t unix_now() {
    return std::chrono::duration_cast<std::chrono::seconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// The `token` query parameter of a request target, percent-decoded.
std::optional<std::string> token_param(std::string_view target) {
    auto q = target.find('?');
    if (q == std::string_view::npos) return std::nullopt;
    std::string_view query = target.substr(q + 1);
    while (!query.empty()) {
        auto amp = query.find('&');
        auto pair = query.substr(0, amp);
        if (pair.rfind("token=", 0) == 0) {
            std::string out;
            auto v = pair.substr(6);
            for (std::size_t i = 0; i < v.size(); ++i) {
                if (v[i] == '%' && i + 2 < v.size() && hex_value(v[i + 1]) >= 0 &&
                    hex_value(v[i + 2]) >= 0) {
                    out.push_back(
                        static_cast<char>(hex_value(v[i + 1]) * 16 + hex_value(v[i + 2])));
                    i += 2;
                } else {
                    out.push_back(v[i] == '+' ? ' ' : v[i]);
                }
            }
            return out;
        }
        if (amp == std::string_view::npos) break;
        query.remove_prefix(amp + 1);
    }
    return std::nullopt;
}

} // namespace

ws_session::ws_session(net::ip::tcp::socket&& socket, session_context& ctx)
    : ws_(std::move(socket)), executor_(ws_.get_executor()), ctx_(ctx), id_(ctx.next_id++),
      tokens_(ctx.limits.subscribe_burst), refilled_(std::chrono::steady_clock::now()) {
    ++ctx_.stats.connections;
    ++ctx_.stats.connections_total;
}

ws_session::~ws_session() {
    flow_.closed = true;
    flow_.notify();
    release_queue();
    --ctx_.stats.connections;
    if (user_counted_) ctx_.release_user(user_);
    ctx_.remove(id_);
    hub& h = ctx_.the_hub;
    const auto id = id_;
    net::post(h.executor(), [&h, id] { h.disconnect(id); });
}

void ws_session::run(http::request<http::string_body> request) {
    auto timeouts = websocket::stream_base::timeout::suggested(beast::role_type::server);
    timeouts.idle_timeout = ctx_.limits.idle_timeout;
    timeouts.keep_alive_pings = true;
    ws_.set_option(timeouts);
    ws_.set_option(websocket::stream_base::decorator(
        [](websocket::response_type& res) { res.set(http::field::server, "pgpush"); }));
    ws_.read_message_max(ctx_.limits.max_message_bytes);
    auto token = token_param(request.target());
    ws_.async_accept(request, [self = shared_from_this(), token = std::move(token)](
                                  beast::error_code ec) { self->on_accept(ec, token); });
}

void ws_session::on_accept(beast::error_code ec, std::optional<std::string> token) {
    if (ec) return; // the handshake failed: nothing to clean up but this object
    ctx_.add(shared_from_this());
    if (token) {
        authenticate(*token);
    } else {
        arm_timer(std::chrono::steady_clock::now() + ctx_.limits.auth_timeout,
                  "no auth message within " + std::to_string(ctx_.limits.auth_timeout.count()) +
                      " s");
    }
    read();
}

void ws_session::read() {
    ws_.async_read(in_, beast::bind_front_handler(&ws_session::on_read, shared_from_this()));
}

void ws_session::on_read(beast::error_code ec, std::size_t) {
    if (ec) {
        if (ec == websocket::error::message_too_big) {
            ctx_.stats.count_error("message_too_large");
        }
        // Closed, failed or timed out: whoever waits on this client (a snapshot worker) stops
        // now; the destructor cleans up the rest when the last handler lets go.
        mark_closed();
        return;
    }
    if (!ws_.got_text()) {
        error(error_code::bad_message, "binary messages are not accepted: send JSON text");
    } else {
        const auto data = in_.cdata();
        handle(std::string_view(static_cast<const char*>(data.data()), data.size()));
    }
    in_.consume(in_.size());
    // Idle connections keep no large buffer around.
    if (in_.capacity() > 8 * 1024) in_.shrink_to_fit();
    if (!closing_) read();
}

bool ws_session::take_token() {
    const auto now = std::chrono::steady_clock::now();
    const double elapsed = std::chrono::duration<double>(now - refilled_).count();
    refilled_ = now;
    tokens_ =
        std::min(ctx_.limits.subscribe_burst, tokens_ + elapsed * ctx_.limits.subscribe_per_second);
    if (tokens_ < 1) return false;
    tokens_ -= 1;
    return true;
}

void ws_session::handle(std::string_view text) {
    auto parsed = protocol::parse(text);
    if (auto* e = std::get_if<protocol::parse_error>(&parsed)) {
        error(e->code, e->message, e->id ? std::string_view(*e->id) : std::string_view{});
        return;
    }
    auto& message = std::get<protocol::client_message>(parsed);
    if (auto* a = std::get_if<protocol::auth>(&message)) {
        authenticate(a->token);
        return;
    }
    if (auto* p = std::get_if<protocol::ping>(&message)) {
        reply(protocol::pong(p->data));
        return;
    }
    if (!claims_) {
        std::string id;
        std::visit(
            [&](const auto& m) {
                if constexpr (requires { m.id; }) id = m.id;
            },
            message);
        error(error_code::unauthenticated,
              "authenticate first: send {\"type\":\"auth\",\"token\":...}", id);
        return;
    }
    hub& h = ctx_.the_hub;
    std::weak_ptr<client> self = shared_from_this();
    if (auto* s = std::get_if<protocol::subscribe>(&message)) {
        if (!take_token()) {
            error(error_code::rate_limited, "too many subscribe requests: slow down", s->id);
            return;
        }
        new_subscription r{self,
                           id_,
                           std::make_shared<const std::string>(s->id),
                           std::move(s->query),
                           std::move(s->params),
                           s->snapshot,
                           std::move(s->after),
                           claims_,
                           s->transactions};
        net::post(h.executor(), [&h, r = std::move(r)]() mutable { h.subscribe(std::move(r)); });
    } else if (auto* u = std::get_if<protocol::unsubscribe>(&message)) {
        net::post(h.executor(),
                  [&h, conn = id_, id = u->id, self] { h.unsubscribe(conn, id, self); });
    } else if (auto* l = std::get_if<protocol::listen>(&message)) {
        if (!take_token()) {
            error(error_code::rate_limited, "too many listen requests: slow down", l->id);
            return;
        }
        net::post(h.executor(),
                  [&h, self, conn = id_, id = std::make_shared<const std::string>(l->id),
                   channel = l->channel,
                   claims = claims_] { h.listen(self, conn, id, channel, claims); });
    } else if (auto* ul = std::get_if<protocol::unlisten>(&message)) {
        net::post(h.executor(),
                  [&h, conn = id_, id = ul->id, self] { h.unlisten(conn, id, self); });
    }
}

void ws_session::authenticate(std::string_view token) {
    auto r = ctx_.jwt.verify(token, unix_now());
    if (!r.ok) {
        ++ctx_.stats.auth_failures;
        error(error_code::unauthenticated, r.error);
        if (!claims_ && !timer_) {
            arm_timer(std::chrono::steady_clock::now() + ctx_.limits.auth_timeout,
                      "not authenticated");
        }
        return;
    }
    // The verifier admits only tokens whose `sub` is a non-empty string: it names the user (the
    // per-user connection bucket, and who a re-authentication must be for).
    const std::string& user = r.subject;
    const bool first = !claims_;
    if (!first && user != user_) {
        error(error_code::forbidden,
              "a connection belongs to one user: the new token is for another");
        return;
    }
    if (first) {
        if (!ctx_.admit_user(user)) {
            error(error_code::too_many_connections,
                  "at most " + std::to_string(ctx_.limits.max_connections_per_user) +
                      " connections per user");
            close(websocket::close_code::policy_error, "too many connections for this user");
            return;
        }
        user_ = user;
        user_counted_ = true;
    }
    claims_ = std::make_shared<const nlohmann::json>(std::move(r.claims));
    if (r.expires_at) {
        // A far-future exp (year 3000, say) must not overflow the steady clock: a timer beyond
        // ten years is never going to fire anyway.
        constexpr std::int64_t ten_years = 10ll * 366 * 24 * 3600;
        const std::int64_t in = std::clamp<std::int64_t>(*r.expires_at - unix_now(), 0, ten_years);
        arm_timer(std::chrono::steady_clock::now() + std::chrono::seconds(in), "token expired");
    } else if (timer_) {
        timer_->cancel();
    }
    if (!first) {
        hub& h = ctx_.the_hub;
        net::post(h.executor(),
                  [&h, conn = id_, claims = claims_] { h.reauthenticate(conn, claims); });
    }
    reply(protocol::authenticated(*claims_));
}

void ws_session::arm_timer(std::chrono::steady_clock::time_point when, std::string reason) {
    if (!timer_) timer_.emplace(ws_.get_executor());
    timer_->expires_at(when);
    timer_->async_wait([weak = weak_from_this(), reason = std::move(reason)](beast::error_code ec) {
        if (ec) return; // re-armed or cancelled
        if (auto self = weak.lock()) {
            self->error(error_code::unauthenticated, reason);
            self->close(websocket::close_code::policy_error, reason);
        }
    });
}

void ws_session::reply(std::string text) {
    enqueue(frame::of(std::move(text)));
}

void ws_session::error(error_code code, std::string_view message, std::string_view id) {
    ctx_.stats.count_error(std::string(protocol::to_string(code)));
    reply(protocol::error(code, message, id));
}

void ws_session::post_frames(std::vector<frame> frames) {
    // Counted as queued from now, not from when this thread gets to them: a snapshot worker
    // paces itself by this count and must not post again before its last chunk is seen.
    std::size_t bytes = 0;
    for (const auto& f : frames)
        bytes += f.bytes();
    flow_.queued += bytes;
    net::post(ws_.get_executor(),
              [self = shared_from_this(), frames = std::move(frames)]() mutable {
                  for (auto& f : frames)
                      self->enqueue(std::move(f), true);
              });
}

void ws_session::enqueue(frame f, bool counted) {
    const auto bytes = f.bytes();
    if (closing_) {
        if (counted) flow_.queued -= bytes;
        return;
    }
    queue_.push_back(std::move(f));
    if (!counted) flow_.queued += bytes;
    ctx_.stats.queued_bytes += static_cast<std::int64_t>(bytes);
    if (flow_.queued > ctx_.limits.send_budget_bytes) {
        // A slow consumer: cut it off before it grows our memory. Its TCP window is full, so a
        // close frame may never reach it; say why if we can, and drop the connection either way.
        ++ctx_.stats.slow_consumer_disconnects;
        spdlog::info("connection {} (user {}) closed: slow consumer ({} bytes queued)", id_, user_,
                     flow_.queued.load());
        release_queue();
        if (writing_) {
            // The write in flight may never finish: drop the connection under it.
            mark_closed();
            beast::error_code ignored;
            beast::get_lowest_layer(ws_).socket().shutdown(net::ip::tcp::socket::shutdown_both,
                                                           ignored);
            beast::get_lowest_layer(ws_).close();
        } else {
            close(websocket::close_code::policy_error, "slow consumer: send queue over budget");
        }
        return;
    }
    if (!writing_) write();
}

void ws_session::mark_closed() {
    closing_ = true;
    flow_.closed = true;
    flow_.notify();
}

void ws_session::release_queue() {
    std::size_t bytes = 0;
    // The frame being written stays until its write completes.
    while (queue_.size() > (writing_ ? 1u : 0u)) {
        bytes += queue_.back().bytes();
        queue_.pop_back();
    }
    flow_.queued -= bytes;
    ctx_.stats.queued_bytes -= static_cast<std::int64_t>(bytes);
}

void ws_session::write() {
    writing_ = true;
    const frame& f = queue_.front();
    out_ = {net::const_buffer(f.head.data(), f.head.size()),
            f.id ? net::const_buffer(f.id->data(), f.id->size()) : net::const_buffer(),
            net::const_buffer(f.body->data(), f.body->size())};
    ws_.text(true);
    ws_.async_write(out_, beast::bind_front_handler(&ws_session::on_write, shared_from_this()));
}

void ws_session::on_write(beast::error_code ec, std::size_t bytes) {
    writing_ = false;
    if (!queue_.empty()) {
        const auto done = queue_.front().bytes();
        queue_.pop_front();
        flow_.queued -= done;
        ctx_.stats.queued_bytes -= static_cast<std::int64_t>(done);
        flow_.notify();
    }
    if (ec) {
        mark_closed();
        release_queue();
        return;
    }
    ++ctx_.stats.frames_out;
    ctx_.stats.bytes_out += bytes;
    if (!queue_.empty() && !closing_) {
        write();
    } else if (!queue_.empty() && close_after_) {
        write(); // flushing before a graceful close
    } else if (close_after_) {
        close_after_ = false;
        ws_.async_close(websocket::close_reason(close_code_, close_reason_),
                        [self = shared_from_this()](beast::error_code) {});
    } else if (closing_) {
        // A close was requested while writing: the socket is dropped now.
        beast::error_code ignored;
        beast::get_lowest_layer(ws_).socket().shutdown(net::ip::tcp::socket::shutdown_both,
                                                       ignored);
        beast::get_lowest_layer(ws_).close();
    }
}

void ws_session::close(websocket::close_code code, std::string reason) {
    if (closing_) return;
    closing_ = true;
    flow_.closed = true;
    flow_.notify();
    if (timer_) timer_->cancel();
    if (writing_) {
        // Beast allows one write at a time: the close frame follows what is queued (the error
        // that explains it, usually), sent by on_write.
        close_after_ = true;
        close_code_ = code;
        close_reason_ = std::move(reason);
        return;
    }
    ws_.async_close(websocket::close_reason(code, reason),
                    [self = shared_from_this()](beast::error_code) {});
}

void ws_session::shut_down(std::string reason) {
    net::post(ws_.get_executor(), [self = shared_from_this(), reason = std::move(reason)] {
        if (self->closing_) return;
        self->closing_ = true;
        if (self->timer_) self->timer_->cancel();
        // The close frame goes ahead of what is queued: a client resumes from the last position
        // it received, so nothing queued is lost by dropping it, and the server's stop does not
        // wait for a slow reader. Only the frame being written (Beast writes one message at a
        // time) goes first.
        self->release_queue();
        self->flow_.closed = true;
        self->flow_.notify();
        self->close_code_ = websocket::close_code::going_away;
        self->close_reason_ = reason;
        if (self->writing_) {
            self->close_after_ = true;
            return;
        }
        self->ws_.async_close(websocket::close_reason(websocket::close_code::going_away, reason),
                              [self](beast::error_code) {});
    });
}

} // namespace pgpush::push
