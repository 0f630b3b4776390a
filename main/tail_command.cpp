#include "main/tail_command.hpp"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <spdlog/spdlog.h>

#include "cdc/catalog_loader.hpp"
#include "cdc/change_json.hpp"
#include "cdc/json_writer.hpp"
#include "cdc/notify_listener.hpp"
#include "cdc/pg_async.hpp"
#include "cdc/pg_time.hpp"
#include "cdc/replication_stream.hpp"
#include "cdc/setup.hpp"
#include "main/common.hpp"

namespace pgpush {

namespace net = boost::asio;
using namespace pgpush::cdc;

CLI::App* add_tail_command(CLI::App& app, tail_options& o) {
    auto* cmd = app.add_subcommand(
        "tail", "Print every committed change as one JSON object per line (see docs/tail.md)");
    cmd->add_option("--db", o.db, "PostgreSQL URL or conninfo string")
        ->envname("PGPUSH_DB")
        ->required();
    cmd->add_option("--table", o.tables,
                    "Table to stream (repeatable); default: all tables of the publication");
    cmd->add_option("--slot", o.slot,
                    "Permanent replication slot to read (created if missing); default: a "
                    "temporary slot that lives as long as this command")
        ->envname("PGPUSH_SLOT");
    cmd->add_option("--publication", o.publication,
                    "Publication to stream; created over --table if missing. Default: "
                    "pgpush_tail_<hash of the tables>, created as needed")
        ->envname("PGPUSH_PUBLICATION");
    cmd->add_option("--listen", o.channels, "NOTIFY channel to print too (repeatable)");
    cmd->add_flag("--no-messages", o.no_messages,
                  "Do not print pg_logical_emit_message() messages");
    cmd->add_option("--start", o.start,
                    "LSN to start from (X/Y); default: where the slot left off");
    cmd->add_option("--endpos", o.endpos,
                    "Exit once the stream has passed this LSN (X/Y), like pg_recvlogical --endpos");
    cmd->add_option("--status-interval", o.status_interval_ms,
                    "Milliseconds between status updates to the server")
        ->check(CLI::Range(100, 3'600'000))
        ->capture_default_str();
    cmd->add_option("--capture", o.capture,
                    "Also write every raw replication message to FILE (4-byte big-endian length, "
                    "then the CopyData bytes), for benchmarks and fuzzing");
    return cmd;
}

namespace {

// What makes stdout fail (the reader went away) ends the command quietly, like any filter.
class output_closed : public std::runtime_error {
public:
    output_closed() : std::runtime_error("stdout closed") {}
};

void write_all(int fd, std::string_view data) {
    while (!data.empty()) {
        ssize_t n = ::write(fd, data.data(), data.size());
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EPIPE) throw output_closed();
            throw std::runtime_error(std::string("writing output: ") + std::strerror(errno));
        }
        data.remove_prefix(static_cast<std::size_t>(n));
    }
}

// Buffers JSON lines and writes them in large chunks; confirms a transaction to the slot only
// once all of its lines have been written to stdout.
class tail_sink final : public change_sink {
public:
    explicit tail_sink(const type_catalog& types) : types_(types) { buf_.reserve(flush_at * 2); }

    std::function<void(lsn)> confirm;

    void on_begin(const transaction_info& t) override {
        commit_time_.clear();
        append_rfc3339_json(commit_time_, t.commit_time);
    }

    void on_change(const change& c) override {
        append_change_json(buf_, types_, c, commit_time_);
        buf_.push_back('\n');
        if (buf_.size() >= flush_at) flush();
    }

    void on_message(const logical_message& m) override {
        buf_.append("{\"op\":\"message\",\"prefix\":");
        json::append_string(buf_, m.prefix);
        std::string_view content(reinterpret_cast<const char*>(m.content.data()), m.content.size());
        buf_.append(",\"content\":");
        json::append_string(buf_, content);
        buf_.append(",\"transactional\":");
        buf_.append(m.transactional ? "true" : "false");
        buf_.append(",\"position\":\"");
        append_position(buf_, m.pos);
        buf_.append("\",\"xid\":");
        if (m.txn) {
            json::append_uint(buf_, m.txn->xid);
            buf_.append(",\"commit_time\":");
            buf_.append(commit_time_);
        } else {
            buf_.append("null,\"commit_time\":null");
        }
        buf_.append("}\n");
        if (!m.transactional) flush();
    }

    void on_commit(const transaction_info&, lsn end_lsn) override { written_through_ = end_lsn; }

    void on_idle() override { flush(); }

    void on_relation(const relation_schema& r) override {
        spdlog::debug("relation {} ({} columns)", r.qualified_name, r.columns.size());
    }

    void on_notify(const notification& n) {
        buf_.append("{\"op\":\"notify\",\"channel\":");
        json::append_string(buf_, n.channel);
        buf_.append(",\"payload\":");
        json::append_string(buf_, n.payload);
        buf_.append(",\"pid\":");
        json::append_int(buf_, n.sender_pid);
        buf_.append("}\n");
        flush();
    }

    void flush() {
        if (!buf_.empty()) {
            write_all(STDOUT_FILENO, buf_);
            buf_.clear();
        }
        if (written_through_.valid() && confirm) confirm(written_through_);
    }

private:
    static constexpr std::size_t flush_at = 256 * 1024;
    const type_catalog& types_;
    std::string buf_;
    std::string commit_time_;
    lsn written_through_;
};

std::string short_hash(const std::vector<std::string>& items) {
    std::uint64_t h = 1469598103934665603ull; // FNV-1a
    for (const auto& s : items) {
        for (unsigned char c : s) {
            h ^= c;
            h *= 1099511628211ull;
        }
        h ^= 0xff;
        h *= 1099511628211ull;
    }
    char out[9];
    std::snprintf(out, sizeof out, "%08x", static_cast<unsigned>(h ^ (h >> 32)));
    return out;
}

[[noreturn]] void die(std::string_view code, const std::string& message) {
    pgpush::die("tail", code, message);
}

std::optional<lsn> lsn_option(const std::string& text, const char* flag) {
    if (text.empty()) return std::nullopt;
    auto l = parse_lsn(text);
    if (!l)
        die("bad_option", std::string(flag) + " \"" + text + "\" is not an LSN like 16/B374D848");
    return l;
}

} // namespace

int run_tail(const tail_options& o) {
    std::signal(SIGPIPE, SIG_IGN);

    source_config source;
    source.conninfo = o.db;
    source.tables = o.tables;
    source.temporary_slot = o.slot.empty();
    source.slot = o.slot.empty() ? "pgpush_tail_" + std::to_string(::getpid()) : o.slot;
    if (o.publication.empty()) {
        auto sorted = o.tables;
        std::sort(sorted.begin(), sorted.end());
        source.publication = "pgpush_tail_" + (sorted.empty() ? "all" : short_hash(sorted));
        source.create_publication = true;
    } else {
        source.publication = o.publication;
        source.create_publication = !o.tables.empty();
    }
    auto start = lsn_option(o.start, "--start");
    auto end = lsn_option(o.endpos, "--endpos");

    try {
        prepare_source(source);
    } catch (const setup_error& e) {
        die(to_string(e.code()), e.what());
    } catch (const std::exception& e) {
        die("setup_failed", e.what());
    }

    net::io_context io(1);
    type_catalog types;
    catalog_loader loader(o.db);
    tail_sink sink(types);

    stream_config config;
    config.conninfo = o.db;
    config.slot = source.slot;
    config.temporary_slot = source.temporary_slot;
    config.publications = {source.publication};
    config.messages = !o.no_messages;
    config.status_interval = std::chrono::milliseconds(o.status_interval_ms);
    if (start) config.start = *start;
    if (end) config.end = *end;
    std::unique_ptr<std::FILE, int (*)(std::FILE*)> capture(nullptr, &std::fclose);
    if (!o.capture.empty()) {
        capture.reset(std::fopen(o.capture.c_str(), "wb"));
        if (!capture) die("bad_option", "cannot write --capture file " + o.capture);
        config.on_raw_message = [f = capture.get()](std::span<const std::byte> bytes) {
            const auto n = static_cast<std::uint32_t>(bytes.size());
            const unsigned char len[4] = {
                static_cast<unsigned char>(n >> 24), static_cast<unsigned char>(n >> 16),
                static_cast<unsigned char>(n >> 8), static_cast<unsigned char>(n)};
            if (std::fwrite(len, 1, 4, f) != 4 || std::fwrite(bytes.data(), 1, n, f) != n) {
                throw std::runtime_error("writing the --capture file failed");
            }
        };
    }

    replication_stream stream(
        io.get_executor(), config, types, sink, [&](std::span<const oid> ids) {
            try {
                loader.load(types, ids);
            } catch (const std::exception& e) {
                // Retried like a lost connection: never guess a type.
                throw pg::error(std::string("loading type info: ") + e.what());
            }
        });
    sink.confirm = [&](lsn l) { stream.confirm(l); };

    std::optional<notify_listener> listener;
    if (!o.channels.empty()) {
        listener.emplace(
            io.get_executor(), o.db,
            notify_listener::handlers{[&](const notification& n) { sink.on_notify(n); },
                                      [] {
                                          spdlog::warn("notify listener reconnected: "
                                                       "notifications sent while it "
                                                       "was down are lost");
                                      }});
        for (const auto& ch : o.channels)
            listener->listen(ch);
    }

    net::signal_set signals(io, SIGINT, SIGTERM);
    signals.async_wait([&](const boost::system::error_code& ec, int) {
        if (ec) return;
        spdlog::info("stopping");
        stream.stop();
        if (listener) listener->stop();
    });

    stop_result result;
    std::exception_ptr failure;
    net::co_spawn(io, stream.run(), [&](std::exception_ptr e, stop_result r) {
        failure = e;
        result = r;
        signals.cancel();
        if (listener) listener->stop();
    });
    if (listener) {
        net::co_spawn(io, listener->run(), [&](std::exception_ptr e) {
            if (e && !failure) failure = e;
        });
    }
    io.run();

    if (failure) {
        try {
            std::rethrow_exception(failure);
        } catch (const output_closed&) {
            return 0;
        } catch (const std::exception& e) {
            die("failed", e.what());
        }
    }
    switch (result.reason) {
    case stop_reason::requested:
    case stop_reason::end_reached:
        spdlog::info("stopped ({}) at {}", to_string(result.reason), to_string(stream.flushed()));
        return 0;
    default:
        die(to_string(result.reason), result.message);
    }
}

} // namespace pgpush
