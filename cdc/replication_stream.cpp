#include "cdc/replication_stream.hpp"

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include "cdc/backoff.hpp"
#include "cdc/db.hpp"
#include "cdc/pg_async.hpp"
#include "cdc/pg_time.hpp"
#include "cdc/pgoutput_decoder.hpp"
#include "cdc/reconnect.hpp"
#include "cdc/walsender_protocol.hpp"

namespace pgpush::cdc {

using namespace boost::asio::experimental::awaitable_operators;
using clock = std::chrono::steady_clock;

std::string_view to_string(stop_reason r) {
    switch (r) {
    case stop_reason::requested:
        return "requested";
    case stop_reason::end_reached:
        return "end_reached";
    case stop_reason::slot_lost:
        return "slot_lost";
    case stop_reason::slot_invalidated:
        return "slot_invalidated";
    case stop_reason::temporary_slot_lost:
        return "temporary_slot_lost";
    case stop_reason::protocol_error:
        return "protocol_error";
    case stop_reason::server_error:
        return "server_error";
    }
    return "unknown";
}

namespace {

// An error that ends the stream: retrying would not help (or would hide a loss).
class fatal_stop : public std::runtime_error {
public:
    fatal_stop(stop_reason why, const std::string& message)
        : std::runtime_error(message), reason(why) {}
    stop_reason reason;
};

std::string start_replication_sql(const stream_config& c, lsn start) {
    std::string pubs;
    for (const auto& p : c.publications) {
        if (!pubs.empty()) pubs += ',';
        pubs += pg::quote_identifier(p);
    }
    std::string sql = "START_REPLICATION SLOT " + pg::quote_identifier(c.slot) + " LOGICAL " +
                      to_string(start) + " (proto_version " +
                      pg::quote_literal(std::to_string(c.proto_version)) + ", publication_names " +
                      pg::quote_literal(pubs);
    if (c.messages) sql += ", messages 'true'";
    sql += ")";
    return sql;
}

// Which START_REPLICATION failures are final. Everything else (connection trouble, the slot
// still held by a walsender that has not yet noticed our previous connection died, a server
// restarting) is retried.
void throw_if_fatal(const pg::error& e) {
    const std::string& state = e.sqlstate();
    const std::string msg = e.what();
    if (state == "42704") { // undefined_object
        if (msg.find("replication slot") != std::string::npos) {
            throw fatal_stop(stop_reason::slot_lost, msg);
        }
        throw fatal_stop(stop_reason::server_error, msg); // e.g. the publication was dropped
    }
    if (state == "55000") { // object_not_in_prerequisite_state
        if (msg.find("invalidated") != std::string::npos ||
            msg.find("can no longer get changes") != std::string::npos) {
            throw fatal_stop(stop_reason::slot_invalidated, msg);
        }
        throw fatal_stop(stop_reason::server_error, msg);
    }
    if (state == "42501" || state == "28000" || state == "28P01" || state == "3D000" ||
        state == "42601" || state == "22023") {
        throw fatal_stop(stop_reason::server_error, msg);
    }
}

std::span<const std::byte> bytes_of(const char* p, int n) {
    return {reinterpret_cast<const std::byte*>(p), static_cast<std::size_t>(n)};
}

struct copy_buffer {
    char* p = nullptr;
    ~copy_buffer() {
        if (p) PQfreemem(p);
    }
};

} // namespace

struct replication_stream::session {
    pg::connection conn;
    pg::socket_waiter socket;
    net::steady_timer status_timer;
    bool reply_due = false;

    session(pg::connection c, const net::any_io_executor& ex)
        : conn(std::move(c)), socket(ex, PQsocket(conn.get())), status_timer(ex) {}
};

replication_stream::replication_stream(net::any_io_executor ex, stream_config config,
                                       type_catalog& types, change_sink& sink,
                                       change_assembler::type_loader load_types)
    : ex_(std::move(ex)), config_(std::move(config)), sink_(sink),
      assembler_(types, sink, std::move(load_types)),
      feedback_(config_.start, config_.follow_keepalives),
      reconnect_(ex_, config_.reconnect_min, config_.reconnect_max, "replication stream") {}

replication_stream::~replication_stream() = default;

void replication_stream::skip_through(lsn commit_lsn) {
    assembler_.skip_through(commit_lsn);
}

void replication_stream::confirm(lsn l) {
    feedback_.confirm(l);
    stats_.flushed_lsn = feedback_.flushed().value;
}

void replication_stream::pause(bool paused) {
    if (paused_ == paused) return;
    paused_ = paused;
    // Wake the loop so it stops (or starts again) reading now.
    if (current_) {
        boost::system::error_code ignored;
        current_->socket.descriptor().cancel(ignored);
        current_->status_timer.cancel();
    }
}

void replication_stream::stop() {
    stopping_ = true;
    if (current_) {
        boost::system::error_code ignored;
        current_->socket.descriptor().cancel(ignored);
        current_->status_timer.cancel();
    }
    reconnect_.stop();
}

net::awaitable<stop_result> replication_stream::run() {
    try {
        const bool finished = co_await reconnect_.run(
            [&] { return stream_once(reconnect_.delay()); },
            [&](const std::string& why) {
                stats_.connected = false;
                if (config_.temporary_slot && temporary_slot_created_) {
                    throw fatal_stop(stop_reason::temporary_slot_lost,
                                     "the connection holding temporary slot \"" + config_.slot +
                                         "\" was lost (" + why +
                                         "); changes committed since cannot be recovered. Use a "
                                         "permanent slot to survive disconnects");
                }
                ++stats_.reconnects;
            });
        if (finished && end_reached_) co_return stop_result{stop_reason::end_reached, ""};
        co_return stop_result{stop_reason::requested, ""};
    } catch (const fatal_stop& f) {
        stats_.connected = false;
        co_return stop_result{f.reason, f.what()};
    } catch (const protocol_error& e) {
        stats_.connected = false;
        co_return stop_result{stop_reason::protocol_error, e.what()};
    }
}

net::awaitable<void> replication_stream::stream_once(backoff& delay) {
    pg::connect_options options;
    options.conninfo = config_.conninfo;
    options.replication = true;
    options.settings = db::output_settings();
    options.timeout = config_.connect_timeout;
    session s(co_await pg::async_connect(options), ex_);
    current_ = &s;
    struct clear_current {
        session** p;
        ~clear_current() { *p = nullptr; }
    } clear{&current_};
    if (stopping_) co_return;

    if (config_.temporary_slot) {
        if (temporary_slot_created_) {
            throw fatal_stop(stop_reason::temporary_slot_lost,
                             "temporary slot \"" + config_.slot +
                                 "\" was lost with its connection");
        }
        try {
            co_await pg::async_exec(s.conn.get(), s.socket,
                                    "CREATE_REPLICATION_SLOT " +
                                        pg::quote_identifier(config_.slot) +
                                        " TEMPORARY LOGICAL pgoutput (SNAPSHOT 'nothing')");
        } catch (const pg::error& e) {
            throw fatal_stop(stop_reason::server_error,
                             "cannot create temporary slot \"" + config_.slot + "\": " + e.what());
        }
        temporary_slot_created_ = true;
    }

    const lsn start = feedback_.flushed().valid() ? feedback_.flushed() : config_.start;
    try {
        co_await pg::async_exec(s.conn.get(), s.socket, start_replication_sql(config_, start));
    } catch (const pg::error& e) {
        throw_if_fatal(e);
        throw;
    }
    delay.reset();
    stats_.connected = true;
    // A new walsender starts at the slot's confirmed position, which may be before what was
    // handed over (even mid-transaction); the assembler drops what the sink already has.
    assembler_.restart();
    spdlog::info("streaming from slot \"{}\" at {}", config_.slot,
                 start.valid() ? to_string(start) : std::string("its confirmed position"));

    auto next_status = clock::now() + config_.status_interval;
    s.status_timer.expires_at(next_status);

    auto send_status = [&]() -> net::awaitable<void> {
        auto msg = walsender::encode_status_update(
            feedback_.received(), feedback_.flushed(), feedback_.flushed(),
            to_pg_timestamp(std::chrono::system_clock::now()), false);
        while (true) {
            int r = PQputCopyData(s.conn.get(), reinterpret_cast<const char*>(msg.data()),
                                  static_cast<int>(msg.size()));
            if (r == 1) break;
            if (r < 0) throw pg::error(pg::last_error(s.conn.get()));
            co_await pg::async_flush(s.conn.get(), s.socket); // 0: libpq's buffer is full
        }
        co_await pg::async_flush(s.conn.get(), s.socket);
        stats_.flushed_lsn = feedback_.flushed().value;
        s.reply_due = false;
        next_status = clock::now() + config_.status_interval;
        s.status_timer.expires_at(next_status);
    };

    while (true) {
        if (!paused_) drain(s);
        if (end_reached_ || stopping_) break;
        if (s.reply_due || clock::now() >= next_status) {
            co_await send_status();
            continue; // flushing may have read more input
        }
        if (paused_) {
            // Nothing is read; status updates go on (on the timer), pause(false) wakes us.
            boost::system::error_code ec;
            co_await s.status_timer.async_wait(net::redirect_error(net::use_awaitable, ec));
            continue;
        }
        if (s.socket.has_pending_input()) {
            if (PQconsumeInput(s.conn.get()) == 0) throw pg::error(pg::last_error(s.conn.get()));
            continue;
        }
        sink_.on_idle();
        try {
            co_await (s.socket.readable() || s.status_timer.async_wait(net::use_awaitable));
        } catch (...) {
            // stop() and pause() cancel both waits (Asio reports that as multiple_exceptions).
            if (stopping_) break;
            if (paused_) continue;
            throw;
        }
        if (PQconsumeInput(s.conn.get()) == 0) throw pg::error(pg::last_error(s.conn.get()));
    }

    // Leaving on purpose: let the consumer flush and confirm, then tell the server.
    sink_.on_stop();
    try {
        co_await send_status();
    } catch (const std::exception& e) {
        spdlog::warn("replication stream: final status update failed: {}", e.what());
    }
}

void replication_stream::drain(session& s) {
    while (!end_reached_ && !stopping_ && !paused_) {
        copy_buffer buf;
        int n = PQgetCopyData(s.conn.get(), &buf.p, /*async=*/1);
        if (n == 0) return; // a whole message is not in yet
        if (n == -2) throw pg::error(pg::last_error(s.conn.get()));
        if (n == -1) {
            // The server ended the copy: its reason is in the result that follows.
            pg::result r(PQgetResult(s.conn.get()));
            std::string msg = r ? PQresultErrorMessage(r.get()) : "";
            std::string state;
            if (r) {
                if (const char* st = PQresultErrorField(r.get(), PG_DIAG_SQLSTATE)) state = st;
            }
            while (!msg.empty() && msg.back() == '\n')
                msg.pop_back();
            pg::error e(msg.empty() ? "server ended the replication stream" : msg, state);
            throw_if_fatal(e);
            throw e;
        }
        stats_.messages.fetch_add(1, std::memory_order_relaxed);
        stats_.bytes.fetch_add(static_cast<std::uint64_t>(n), std::memory_order_relaxed);
        handle(s, bytes_of(buf.p, n));
    }
}

void replication_stream::handle(session& s, std::span<const std::byte> bytes) {
    if (config_.on_raw_message) config_.on_raw_message(bytes);
    auto msg = walsender::decode(bytes);
    if (auto* k = std::get_if<walsender::keepalive>(&msg)) {
        feedback_.on_keepalive(k->wal_end, assembler_.in_transaction());
        stats_.received_lsn = feedback_.received().value;
        if (k->reply_requested) s.reply_due = true;
        if (config_.end.valid() && !assembler_.in_transaction() && k->wal_end >= config_.end) {
            end_reached_ = true;
        }
        return;
    }
    auto& x = std::get<walsender::xlog_data>(msg);
    feedback_.on_data(x.wal_end);
    stats_.received_lsn = feedback_.received().value;
    auto m = pgoutput::decode(x.payload);

    if (config_.end.valid()) {
        // Stop at a transaction boundary, before anything past the end position.
        const auto* b = std::get_if<pgoutput::begin>(&m);
        const auto* lm = std::get_if<pgoutput::message>(&m);
        if ((b && b->final_lsn > config_.end) ||
            (lm && !lm->transactional && lm->message_lsn > config_.end)) {
            end_reached_ = true;
            return;
        }
    }
    // A commit is handed over as it is fed: the sink may confirm it from inside on_commit, and a
    // confirmation is never allowed past what was handed over.
    const auto* c = std::get_if<pgoutput::commit>(&m);
    if (c) feedback_.on_commit_handed_over(c->end_lsn);
    assembler_.feed(m);
    if (c) {
        stats_.transactions.fetch_add(1, std::memory_order_relaxed);
        stats_.last_commit_time = c->commit_time;
        if (config_.end.valid() && c->end_lsn >= config_.end) end_reached_ = true;
    } else if (const auto* lm = std::get_if<pgoutput::message>(&m);
               lm && !lm->transactional && !config_.follow_keepalives) {
        // Everything committed before a non-transactional message has been handed over: a
        // consumer that logs the message (a heartbeat) may confirm its LSN.
        feedback_.on_commit_handed_over(lm->message_lsn);
    }
}

} // namespace pgpush::cdc
