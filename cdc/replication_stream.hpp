#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>

#include "cdc/change_assembler.hpp"
#include "cdc/feedback.hpp"
#include "cdc/lsn.hpp"
#include "cdc/reconnect.hpp"
#include "cdc/type_catalog.hpp"

namespace pgpush::cdc {

namespace net = boost::asio;

struct stream_config {
    std::string conninfo;
    std::string slot;
    bool temporary_slot = false; // created on the stream's own connection, gone with it
    std::vector<std::string> publications;
    int proto_version = 1;
    bool messages = true; // deliver pg_logical_emit_message() output
    std::chrono::milliseconds status_interval{10'000};
    std::chrono::milliseconds reconnect_min{100};
    std::chrono::milliseconds reconnect_max{10'000};
    std::chrono::milliseconds connect_timeout{10'000};
    // Let the flushed LSN follow keepalives while idle (see feedback.hpp). A consumer with a
    // durable log turns it off: it confirms only what it has recorded.
    bool follow_keepalives = true;
    lsn start; // invalid: where the slot's confirmed_flush_lsn is
    lsn end;   // valid: stop once the stream has passed it (pg_recvlogical's --endpos)
    // Sees every CopyData message from the server before it is decoded (captures for benchmarks
    // and fuzz seeds). Optional.
    std::function<void(std::span<const std::byte>)> on_raw_message;
};

enum class stop_reason {
    requested,           // stop() was called
    end_reached,         // stream_config::end passed
    slot_lost,           // the slot no longer exists
    slot_invalidated,    // Postgres removed WAL the slot needed (max_slot_wal_keep_size)
    temporary_slot_lost, // the connection holding the temporary slot dropped
    protocol_error,      // bytes we cannot decode: a bug, not something a retry fixes
    server_error,        // the server refused in a way a retry does not fix
};

std::string_view to_string(stop_reason r);

struct stop_result {
    stop_reason reason = stop_reason::requested;
    std::string message;
};

// Counters read by other threads (metrics); written only by the stream.
struct stream_stats {
    std::atomic<std::uint64_t> messages{0};
    std::atomic<std::uint64_t> bytes{0};
    std::atomic<std::uint64_t> transactions{0};
    std::atomic<std::uint64_t> reconnects{0};
    std::atomic<std::uint64_t> received_lsn{0};
    std::atomic<std::uint64_t> flushed_lsn{0};
    std::atomic<std::int64_t> last_commit_time{0}; // pg_timestamp
    std::atomic<bool> connected{false};
};

// Reads a logical replication slot with pgoutput and hands every committed change to a sink, in
// commit order. Runs on one thread (its executor must not be shared by several threads: the
// socket readiness check relies on it). Connection losses are retried with backoff from the last
// flushed position; what was already handed over is not handed over twice.
class replication_stream {
public:
    replication_stream(net::any_io_executor ex, stream_config config, type_catalog& types,
                       change_sink& sink, change_assembler::type_loader load_types);
    ~replication_stream();

    // Streams until stop(), the end position, or an error no retry fixes.
    net::awaitable<stop_result> run();

    // From the stream's own thread. run() returns soon after, having sent a last status update.
    void stop();

    // The consumer has made everything up to `l` (a commit's end LSN) durable.
    void confirm(lsn l);
    // From the stream's own thread: stop reading (the consumer cannot keep anything right now,
    // e.g. its disk is full) or read on. While paused the stream still sends status updates, so
    // the server keeps the connection, and WAL waits in Postgres.
    void pause(bool paused);
    bool paused() const { return paused_; }
    // Drop transactions committing at or before `commit_lsn` (the consumer has them from an
    // earlier run). Before run().
    void skip_through(lsn commit_lsn);

    lsn flushed() const { return feedback_.flushed(); }
    const stream_stats& stats() const { return stats_; }

private:
    struct session;
    net::awaitable<void> stream_once(backoff& delay);
    void drain(session& s);
    void handle(session& s, std::span<const std::byte> bytes);

    net::any_io_executor ex_;
    stream_config config_;
    change_sink& sink_;
    change_assembler assembler_;
    feedback feedback_;
    stream_stats stats_;
    bool stopping_ = false;
    bool paused_ = false;
    bool end_reached_ = false;
    bool temporary_slot_created_ = false;
    session* current_ = nullptr;
    reconnector reconnect_;
};

} // namespace pgpush::cdc
