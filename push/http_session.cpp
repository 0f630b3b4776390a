#include "push/http_session.hpp"

#include <algorithm>
#include <string_view>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/websocket.hpp>

#include "push/ws_session.hpp"

namespace pgpush::push {

namespace websocket = boost::beast::websocket;

// connection_budget / connection_slot

connection_budget::connection_budget(std::size_t limit, metrics& stats)
    : limit_(limit), stats_(stats) {}

std::size_t connection_budget::idle() const {
    std::lock_guard lock(mu_);
    return idle_.size();
}

connection_slot connection_budget::acquire(const std::shared_ptr<connection_budget>& budget) {
    connection_slot s;
    s.budget_ = budget;
    s.node_ = std::make_unique<node>();
    budget->open_.fetch_add(1, std::memory_order_relaxed);
    ++budget->stats_.tcp_connections;
    return s;
}

std::size_t connection_budget::evict_oldest(std::size_t n) {
    std::vector<std::function<void()>> chosen;
    {
        std::lock_guard lock(mu_);
        while (chosen.size() < n && !idle_.empty()) {
            node* victim = idle_.front();
            idle_.pop_front();
            victim->listed = false;
            victim->evicted = true;
            chosen.push_back(std::move(victim->evict));
        }
    }
    for (auto& evict : chosen)
        evict();
    stats_.connections_evicted += chosen.size();
    return chosen.size();
}

void connection_budget::on_release(std::function<void()> wake) {
    std::lock_guard lock(mu_);
    if (!waking_stopped_) wake_ = std::move(wake);
}

void connection_budget::stop_waking() {
    std::lock_guard lock(mu_);
    waking_stopped_ = true;
    wake_ = nullptr;
}

void connection_budget::release(node& n) {
    std::function<void()> wake;
    {
        std::lock_guard lock(mu_);
        if (n.listed) idle_.erase(n.at);
        n.listed = false;
        wake.swap(wake_);
    }
    open_.fetch_sub(1, std::memory_order_relaxed);
    --stats_.tcp_connections;
    if (wake) wake();
}

connection_slot& connection_slot::operator=(connection_slot&& other) noexcept {
    if (this != &other) {
        reset();
        budget_ = std::move(other.budget_);
        node_ = std::move(other.node_);
    }
    return *this;
}

void connection_slot::idle(std::function<void()> evict) {
    if (!node_) return;
    std::lock_guard lock(budget_->mu_);
    if (node_->evicted) return;
    node_->evict = std::move(evict);
    if (!node_->listed) {
        node_->at = budget_->idle_.insert(budget_->idle_.end(), node_.get());
        node_->listed = true;
    }
}

bool connection_slot::busy() {
    if (!node_) return true;
    std::lock_guard lock(budget_->mu_);
    if (node_->listed) budget_->idle_.erase(node_->at);
    node_->listed = false;
    node_->evict = nullptr;
    return !node_->evicted;
}

void connection_slot::reset() {
    if (node_) budget_->release(*node_);
    node_.reset();
    budget_.reset();
}

// http_session

namespace {

// The path of a request target in origin form ("/ws?token=...") or absolute form
// ("http://host/ws"); nullopt for anything else (RFC 9112 section 3.2).
std::optional<std::string_view> path_of(std::string_view target) {
    if (target.starts_with("http://") || target.starts_with("https://")) {
        target.remove_prefix(target.find("//") + 2);
        const auto slash = target.find('/');
        target = slash == std::string_view::npos ? std::string_view("/") : target.substr(slash);
    }
    if (target.empty() || target.front() != '/') return std::nullopt;
    return target.substr(0, target.find_first_of("?#"));
}

// Does any field `f` of `req` list `token` (a comma-separated, case-insensitive token list)?
bool lists_token(const http::request<http::string_body>& req, http::field f,
                 std::string_view token) {
    auto [from, to] = req.equal_range(f);
    return std::any_of(
        from, to, [&](const auto& field) { return http::token_list{field.value()}.exists(token); });
}

bool is_base64(char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

// RFC 6455 section 4.1: the key is a nonce of 16 bytes, base64-encoded: 22 characters of the
// alphabet and "==".
bool is_websocket_key(std::string_view key) {
    return key.size() == 24 && key.substr(22) == "==" &&
           std::all_of(key.begin(), key.begin() + 22, is_base64);
}

// Why a WebSocket upgrade request cannot be accepted, checked before Beast sees it (RFC 6455
// section 4.2.1); nullopt when it can.
struct handshake_error {
    http::status status;
    refusal why;
    std::string text;
};

std::optional<handshake_error> check_upgrade(const http::request<http::string_body>& req) {
    auto bad = [](std::string text) {
        return handshake_error{http::status::bad_request, refusal::bad_handshake, std::move(text)};
    };
    if (req.version() < 11) return bad("a WebSocket upgrade needs HTTP/1.1\n");
    if (!lists_token(req, http::field::upgrade, "websocket"))
        return bad("Upgrade must be websocket\n");
    if (!lists_token(req, http::field::connection, "upgrade"))
        return bad("Connection must include upgrade\n");
    if (req.count(http::field::sec_websocket_version) != 1 ||
        req[http::field::sec_websocket_version] != "13") {
        return handshake_error{http::status::upgrade_required, refusal::websocket_version,
                               "Sec-WebSocket-Version must be 13\n"};
    }
    if (req.count(http::field::sec_websocket_key) != 1 ||
        !is_websocket_key(req[http::field::sec_websocket_key])) {
        return bad("Sec-WebSocket-Key must be 16 bytes, base64-encoded\n");
    }
    return std::nullopt;
}

// Frees a WebSocket session, then gives back its connection slot: the connection counts until
// its socket is closed, which the session's destructor does.
struct release_slot_after {
    connection_slot slot;
    void operator()(ws_session* s) {
        delete s;
        slot.reset();
    }
};

bool is_http_error(const beast::error_code& ec) {
    return ec.category() == http::make_error_code(http::error::bad_method).category();
}

} // namespace

http_session::http_session(net::ip::tcp::socket&& socket, session_context& ctx, health_fn health,
                           connection_slot slot, const http_limits& limits, bool over_limit)
    : slot_(std::move(slot)), stream_(std::move(socket)),
      buffer_(limits.header_bytes + std::max<std::size_t>(limits.body_bytes, 4096)), ctx_(ctx),
      health_(std::move(health)), limits_(limits), over_limit_(over_limit) {}

void http_session::run() {
    // The listener calls this from its own thread: start on the connection's.
    net::dispatch(stream_.get_executor(),
                  beast::bind_front_handler(&http_session::read_header, shared_from_this()));
}

void http_session::read_header() {
    response_ = {};
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(limits_.header_bytes));
    parser_->body_limit(limits_.body_bytes);
    if (!over_limit_) {
        // Waiting for a request: at the limit, this connection may make room for a new one.
        slot_.idle([weak = weak_from_this(), ex = stream_.get_executor()] {
            net::post(ex, [weak] {
                if (auto self = weak.lock()) self->evict();
            });
        });
    }
    stream_.expires_after(over_limit_ ? limits_.over_limit_timeout : limits_.header_timeout);
    http::async_read_header(
        stream_, buffer_, *parser_,
        beast::bind_front_handler(&http_session::on_header, shared_from_this()));
}

void http_session::evict() {
    // The pending read ends with operation_aborted; on_header sees the slot evicted and closes.
    beast::error_code ignored;
    stream_.socket().close(ignored);
}

void http_session::on_header(beast::error_code ec, std::size_t) {
    if (!slot_.busy()) return; // chosen to make room for a new connection
    if (ec) return refuse(ec);
    const auto& req = parser_->get();
    const auto fields = static_cast<std::size_t>(std::distance(req.begin(), req.end()));
    if (fields > limits_.max_fields) {
        return error(http::status::request_header_fields_too_large, refusal::header_too_large,
                     "more than " + std::to_string(limits_.max_fields) + " header fields\n");
    }
    if (req.target().size() > limits_.target_bytes) {
        return error(http::status::uri_too_long, refusal::uri_too_long,
                     "request target longer than " + std::to_string(limits_.target_bytes) +
                         " bytes\n");
    }
    if (parser_->is_done()) return handle();
    http::async_read(stream_, buffer_, *parser_,
                     beast::bind_front_handler(&http_session::on_body, shared_from_this()));
}

void http_session::on_body(beast::error_code ec, std::size_t) {
    if (ec) return refuse(ec);
    handle();
}

// A request that could not be read whole.
void http_session::refuse(beast::error_code ec) {
    if (ec == http::error::header_limit || ec == http::error::buffer_overflow) {
        // 414 when the request line is too long (nginx: large_client_header_buffers): either it
        // was parsed with a long target, or it alone filled the header limit.
        const auto target = parser_->get().target();
        if (target.empty() || target.size() > limits_.target_bytes) {
            return error(http::status::uri_too_long, refusal::uri_too_long,
                         "request line longer than " + std::to_string(limits_.target_bytes) +
                             " bytes\n");
        }
        return error(http::status::request_header_fields_too_large, refusal::header_too_large,
                     "header section larger than " + std::to_string(limits_.header_bytes) +
                         " bytes\n");
    }
    if (ec == http::error::body_limit) {
        return error(http::status::payload_too_large, refusal::body_too_large,
                     "request body larger than " + std::to_string(limits_.body_bytes) + " bytes\n");
    }
    if (is_http_error(ec) && ec != http::error::end_of_stream &&
        ec != http::error::partial_message) {
        return error(http::status::bad_request, refusal::bad_request,
                     "bad request: " + ec.message() + "\n");
    }
    // Closed, reset, or timed out (the stream closed the socket): nothing to answer.
    if (ec == beast::error::timeout && parser_->got_some()) {
        ctx_.stats.count_refused(refusal::request_timeout);
    }
}

void http_session::handle() {
    auto req = parser_->release();
    const unsigned version = req.version();
    const auto path = path_of(req.target());
    if (!path) {
        return error(http::status::bad_request, refusal::bad_request,
                     "bad request target: use a path such as /healthz\n", version);
    }
    if (version >= 11 ? req.count(http::field::host) != 1 : req.count(http::field::host) > 1) {
        return error(http::status::bad_request, refusal::bad_request,
                     "an HTTP/1.1 request needs one Host field\n", version);
    }
    const bool head = req.method() == http::verb::head;
    const bool get = req.method() == http::verb::get || head;
    response_.version(version);
    if (*path == "/ws" || *path == "/") {
        if (req.method() != http::verb::get) {
            response_.set(http::field::allow, "GET");
            return error(http::status::method_not_allowed, refusal::method_not_allowed,
                         "the WebSocket endpoint takes GET with an upgrade\n", version);
        }
        if (req.count(http::field::upgrade) == 0 &&
            req.count(http::field::sec_websocket_key) == 0) {
            // An ordinary GET: say what this is and how to use it (RFC 9110 section 15.5.22).
            response_.set(http::field::upgrade, "websocket");
            response_.set(http::field::connection, "Upgrade");
            return error(http::status::upgrade_required, refusal::bad_handshake,
                         "WebSocket endpoint: connect with a WebSocket client; "
                         "/healthz and /metrics are plain HTTP\n",
                         version);
        }
        if (auto bad = check_upgrade(req)) {
            if (bad->status == http::status::upgrade_required)
                response_.set(http::field::sec_websocket_version, "13");
            return error(bad->status, bad->why, std::move(bad->text), version);
        }
        if (over_limit_) {
            response_.set(http::field::retry_after, std::to_string(limits_.retry_after.count()));
            return error(http::status::service_unavailable, refusal::connection_limit,
                         "pgpush is at its connection limit (" + std::to_string(slot_.limit()) +
                             " connections): retry later\n",
                         version);
        }
        return upgrade(std::move(req));
    }
    if (*path != "/healthz" && *path != "/metrics") {
        response_.result(http::status::not_found);
        response_.set(http::field::content_type, "text/plain");
        response_.body() = "not found: WebSocket on /ws; /healthz; /metrics\n";
        return send(req.keep_alive() && !over_limit_);
    }
    if (!get) {
        response_.set(http::field::allow, "GET, HEAD");
        return error(http::status::method_not_allowed, refusal::method_not_allowed,
                     std::string(*path) + " takes GET or HEAD\n", version);
    }
    if (*path == "/healthz") {
        auto [ok, body] = health_();
        response_.result(ok ? http::status::ok : http::status::service_unavailable);
        response_.set(http::field::content_type, "application/json");
        response_.body() = std::move(body);
    } else {
        response_.result(http::status::ok);
        response_.set(http::field::content_type, "text/plain; version=0.0.4");
        response_.body() = ctx_.stats.prometheus();
    }
    send(req.keep_alive() && !over_limit_, head);
}

void http_session::upgrade(http::request<http::string_body> req) {
    stream_.expires_never();
    std::shared_ptr<ws_session> ws(new ws_session(stream_.release_socket(), ctx_),
                                   release_slot_after{std::move(slot_)});
    ws->run(std::move(req));
}

// An error answer: `why` counted, a short text body, and the connection closed after it. Fields
// already set on response_ for it (Allow, Retry-After, Upgrade, ...) are kept.
void http_session::error(http::status status, refusal why, std::string text, unsigned version) {
    ctx_.stats.count_refused(why);
    response_.version(version);
    response_.result(status);
    response_.set(http::field::content_type, "text/plain");
    response_.body() = std::move(text);
    send(false);
}

void http_session::send(bool keep_alive, bool head) {
    response_.set(http::field::server, "pgpush");
    response_.keep_alive(keep_alive);
    response_.prepare_payload();
    // HEAD: the fields of the GET answer (Content-Length included), no body.
    if (head) response_.body().clear();
    stream_.expires_after(limits_.header_timeout);
    http::async_write(
        stream_, response_,
        beast::bind_front_handler(&http_session::on_write, shared_from_this(), keep_alive));
}

void http_session::on_write(bool keep_alive, beast::error_code ec, std::size_t) {
    if (ec) return;
    if (keep_alive) return read_header();
    linger();
}

// Closes after a response: no more from us (FIN), then read and drop what the client still sends
// until it closes too, or the linger deadline or byte budget runs out.
void http_session::linger() {
    beast::error_code ignored;
    stream_.socket().shutdown(net::ip::tcp::socket::shutdown_send, ignored);
    buffer_.clear();
    stream_.expires_after(limits_.linger_timeout);
    stream_.async_read_some(
        buffer_.prepare(16 * 1024),
        beast::bind_front_handler(&http_session::on_linger, shared_from_this()));
}

void http_session::on_linger(beast::error_code ec, std::size_t bytes) {
    lingered_ += bytes;
    if (ec || lingered_ > limits_.linger_bytes) return; // the destructor closes the socket
    stream_.async_read_some(
        buffer_.prepare(16 * 1024),
        beast::bind_front_handler(&http_session::on_linger, shared_from_this()));
}

} // namespace pgpush::push
