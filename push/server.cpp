#include "push/server.hpp"

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <sys/resource.h>
#include <thread>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <pqxx/pqxx>
#include <spdlog/spdlog.h>

#include "cdc/catalog_loader.hpp"
#include "cdc/notify_listener.hpp"
#include "cdc/pg_async.hpp"
#include "cdc/replication_stream.hpp"
#include "cdc/setup.hpp"
#include "cdc/table_catalog.hpp"
#include "push/rules_store.hpp"
#include "push/schema.hpp"
#include "push/snapshot_pool.hpp"

namespace pgpush::push {

namespace {

[[noreturn]] void die(std::string_view code, const std::string& message) {
    spdlog::default_logger()->flush();
    std::fprintf(stderr, "pgpush serve: %.*s: %s\n", static_cast<int>(code.size()), code.data(),
                 message.c_str());
    std::exit(1);
}

std::optional<net::ip::tcp::endpoint> parse_endpoint(const std::string& text) {
    auto colon = text.rfind(':');
    if (colon == std::string::npos) return std::nullopt;
    std::string host = text.substr(0, colon);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
        host = host.substr(1, host.size() - 2);
    if (host.empty() || host == "*") host = "0.0.0.0";
    beast::error_code ec;
    auto addr = net::ip::make_address(host, ec);
    if (ec) return std::nullopt;
    int port = 0;
    try {
        port = std::stoi(text.substr(colon + 1));
    } catch (...) {
        return std::nullopt;
    }
    if (port < 0 || port > 65535) return std::nullopt;
    return net::ip::tcp::endpoint(addr, static_cast<unsigned short>(port));
}

std::string sql_table(const std::string& qualified) {
    auto dot = qualified.find('.');
    return cdc::pg::quote_identifier(qualified.substr(0, dot)) + "." +
           cdc::pg::quote_identifier(qualified.substr(dot + 1));
}

// The tables the rules name, checked against the database: the publication's set, and REPLICA
// IDENTITY FULL so updates and deletes carry whole old rows (needed to tell a row leaving a
// result from one changing within it).
void prepare_tables(const serve_config& c, const rules::rule_set& rules) {
    std::vector<std::string> names;
    for (const auto& [name, rule] : rules.tables())
        names.push_back(name);
    auto tables = cdc::describe_tables(c.db, names);
    std::vector<std::string> present;
    for (const auto& t : tables)
        present.push_back(t.qualified());
    for (const auto& n : names) {
        if (std::find(present.begin(), present.end(), n) == present.end()) {
            spdlog::warn(
                "rules name table {}, which does not exist: nothing can be subscribed to it", n);
        }
    }
    pqxx::connection conn(c.db);
    pqxx::nontransaction tx(conn);
    if (c.replica_identity_full) {
        for (const auto& t : tables) {
            if (t.replica_identity == 'f') continue;
            try {
                tx.exec("ALTER TABLE " + sql_table(t.qualified()) + " REPLICA IDENTITY FULL");
                spdlog::info(
                    "set REPLICA IDENTITY FULL on {} (updates and deletes now carry the old row; "
                    "--no-replica-identity-full to leave tables alone)",
                    t.qualified());
            } catch (const std::exception& e) {
                spdlog::warn(
                    "cannot set REPLICA IDENTITY FULL on {} ({}): rows leaving a subscription's "
                    "result will not be sent as deletes",
                    t.qualified(), e.what());
            }
        }
    }
    if (c.manage_publication) {
        std::string list;
        for (const auto& t : present)
            list += (list.empty() ? "" : ", ") + sql_table(t);
        auto exists =
            tx.exec_params("SELECT 1 FROM pg_publication WHERE pubname = $1", c.publication);
        const std::string pub = cdc::pg::quote_identifier(c.publication);
        if (exists.empty()) {
            tx.exec("CREATE PUBLICATION " + pub + (list.empty() ? "" : " FOR TABLE " + list));
        } else if (!list.empty()) {
            tx.exec("ALTER PUBLICATION " + pub + " SET TABLE " + list);
        }
        spdlog::info("publication {} covers {}", c.publication,
                     list.empty() ? "no tables yet" : list);
    }
}

cdc::lsn slot_confirmed_lsn(const serve_config& c) {
    pqxx::connection conn(c.db);
    pqxx::nontransaction tx(conn);
    auto r = tx.exec_params(
        "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1", c.slot);
    if (r.empty() || r[0][0].is_null()) return {};
    return cdc::parse_lsn(r[0][0].as<std::string>()).value_or(cdc::lsn{});
}

void raise_fd_limit() {
    rlimit r{};
    if (getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < r.rlim_max) {
        r.rlim_cur = r.rlim_max;
        setrlimit(RLIMIT_NOFILE, &r);
    }
}

} // namespace

int serve(const serve_config& c) {
    std::signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();
    auto endpoint = parse_endpoint(c.listen);
    if (!endpoint) die("bad_option", "--listen \"" + c.listen + "\" is not HOST:PORT");

    std::optional<jwt_verifier> jwt;
    try {
        jwt.emplace(c.jwt);
    } catch (const jwt_config_error& e) {
        die("bad_jwt_config", e.what());
    }

    rules_store store(c.rules_path);
    auto first = store.reload();
    if (!first.replaced) {
        for (const auto& e : first.errors)
            std::fprintf(stderr, "%s\n", e.c_str());
        die("bad_rules", c.rules_path + " has " + std::to_string(first.errors.size()) +
                             " error(s); fix them (pgpush check " + c.rules_path + ")");
    }

    cdc::source_config source;
    source.conninfo = c.db;
    source.slot = c.slot;
    source.publication = c.publication;
    try {
        cdc::preflight(c.db);                // reachable, wal_level, privileges
        prepare_tables(c, *store.current()); // the publication and REPLICA IDENTITY FULL
        cdc::prepare_source(source);         // the publication exists; the slot is made
    } catch (const cdc::setup_error& e) {
        die(cdc::to_string(e.code()), e.what());
    } catch (const std::exception& e) {
        die("setup_failed", e.what());
    }

    metrics stats;
    // The change log, recovered, and checked against the slot: if the slot was confirmed past
    // what the log holds, the log lost history (a different disk, a restore, damage) and its
    // positions cannot be trusted for resumes any more.
    std::unique_ptr<log::change_log> change_log;
    if (c.log_enabled) {
        log::log_options lo;
        // One log per slot: it is the slot's history.
        lo.dir = std::filesystem::path(c.data_dir) / (c.slot + ".log");
        lo.segment_bytes = c.log_segment_bytes;
        lo.retain_bytes = c.log_retain_bytes;
        lo.retain_age = c.log_retain_age;
        lo.fsync = c.log_fsync;
        lo.sync_delay = c.log_sync_delay;
        try {
            change_log = std::make_unique<log::change_log>(lo);
            const auto confirmed = slot_confirmed_lsn(c);
            const auto& rec = change_log->recovered();
            if (!rec.damage.empty()) {
                spdlog::error("change log {}: {}; it was set aside and a new epoch begins: "
                              "clients resuming from before get resync_required",
                              lo.dir.string(), rec.damage);
            } else if (!rec.fresh && confirmed > rec.covered) {
                change_log->reset("the slot was confirmed to " + cdc::to_string(confirmed) +
                                      " but the log reaches only " + cdc::to_string(rec.covered),
                                  confirmed);
                spdlog::error("change log {}: {}; it was set aside and a new epoch begins",
                              lo.dir.string(), change_log->recovered().damage);
            }
            const auto& r = change_log->recovered();
            spdlog::info("change log {} (epoch {:016x}){}{}", lo.dir.string(), r.epoch,
                         r.fresh ? ": new" : ": resumes after " + cdc::to_string(r.last),
                         r.truncated_bytes
                             ? fmt::format(", cut {} byte(s) of unfinished tail", r.truncated_bytes)
                             : "");
        } catch (const std::exception& e) {
            die("bad_data_dir", e.what());
        }
        stats.log_enabled = true;
    } else {
        spdlog::warn("running without a change log (--no-log): the slot is confirmed as changes "
                     "are sent, a crash can lose them for clients, and resumes are refused");
    }
    stats.retained_wal_alarm_bytes = c.max_retained_wal_bytes;

    net::io_context cdc_io(1);
    cdc::type_catalog types;
    cdc::catalog_loader loader(c.db);
    snapshot_pool snapshots(c.db, c.snapshot_workers, stats);
    hub the_hub(
        cdc_io.get_executor(), types, stats, snapshots,
        [&](const std::string& table,
            std::vector<cdc::oid>& out) -> std::optional<rules::table_schema> {
            auto described = cdc::describe_tables(c.db, {table});
            if (described.empty()) return std::nullopt;
            std::vector<cdc::oid> missing;
            for (const auto& col : described[0].columns) {
                out.push_back(col.type);
                for (auto m : types.missing(col.type))
                    missing.push_back(m);
            }
            if (!missing.empty()) loader.load(types, missing);
            return rules_schema(described[0], types);
        },
        c.hub);
    the_hub.set_rules(store.current());
    the_hub.set_log(change_log.get());

    cdc::stream_config sc;
    sc.conninfo = c.db;
    sc.slot = c.slot;
    sc.publications = {c.publication};
    sc.status_interval = c.status_interval;
    sc.follow_keepalives = !change_log; // with a log, only what it holds is confirmed
    cdc::replication_stream stream(
        cdc_io.get_executor(), sc, types, the_hub, [&](std::span<const cdc::oid> ids) {
            try {
                loader.load(types, ids);
            } catch (const std::exception& e) {
                throw cdc::pg::error(std::string("loading type info: ") + e.what());
            }
        });
    the_hub.confirm = [&](cdc::lsn l) { stream.confirm(l); };
    if (change_log) {
        // What the log already has is not handed over again.
        const auto& r = change_log->recovered();
        if (r.last_commit.valid()) stream.skip_through(r.last_commit);
        change_log->on_durable([&](cdc::lsn l) {
            stats.log_durable_lsn = l.value;
            net::post(cdc_io, [&stream, l] { stream.confirm(l); });
        });
    }

    cdc::notify_listener notifications(cdc_io.get_executor(), c.db,
                                       {[&](const cdc::notification& n) { the_hub.on_notify(n); },
                                        [] {
                                            spdlog::warn(
                                                "notify listener reconnected: notifications sent "
                                                "while it was down are lost");
                                        }});
    for (const auto& ch : the_hub.channels())
        notifications.listen(ch);

    rules_watcher watcher(cdc_io, store, [&](const reload_result& r) {
        if (!r.replaced) return;
        try {
            prepare_tables(c, *store.current());
        } catch (const std::exception& e) {
            spdlog::error("updating the publication for the new rules failed: {}", e.what());
        }
        the_hub.set_rules(store.current());
        for (const auto& ch : the_hub.channels())
            notifications.listen(ch);
    });
    watcher.start();

    // I/O threads, one io_context each: a session lives on one thread and needs no strand.
    const std::size_t n = c.threads ? c.threads : std::max(1u, std::thread::hardware_concurrency());
    std::vector<std::unique_ptr<net::io_context>> ios;
    std::vector<net::io_context*> workers;
    for (std::size_t i = 0; i < n; ++i) {
        ios.push_back(std::make_unique<net::io_context>(1));
        workers.push_back(ios.back().get());
    }
    session_context ctx{c.limits, stats, *jwt, the_hub};
    auto health = [&]() -> std::pair<bool, std::string> {
        const bool ok = stats.db_up && stats.stream_connected && stats.slot_ok;
        nlohmann::json j = {
            {"status", ok ? "ok" : "degraded"},
            {"database", stats.db_up.load() ? "up" : "down"},
            {"replication", stats.stream_connected.load() ? "streaming" : "disconnected"},
            {"slot", {{"name", c.slot}, {"ok", stats.slot_ok.load()}}},
            {"connections", stats.connections.load()},
            {"subscriptions", stats.subscriptions.load()}};
        return {ok, j.dump()};
    };
    std::shared_ptr<listener> accept;
    try {
        accept = std::make_shared<listener>(*ios[0], workers, *endpoint, ctx, health);
    } catch (const std::exception& e) {
        die("listen_failed", "cannot listen on " + c.listen + ": " + e.what());
    }
    accept->run();
    const auto bound = accept->local_endpoint();
    spdlog::info("listening on {}:{} ({} I/O thread(s)); WebSocket on /ws, /healthz, /metrics",
                 bound.address().to_string(), bound.port(), n);

    // Stream state into metrics; a database probe for lag and slot health.
    net::steady_timer probe_timer(cdc_io);
    std::atomic<bool> stopping{false};
    std::thread prober([&] {
        std::unique_ptr<pqxx::connection> conn;
        auto next_heartbeat = std::chrono::steady_clock::now() + c.heartbeat_interval;
        bool retained_alarm = false;
        while (!stopping) {
            try {
                if (!conn || !conn->is_open()) conn = std::make_unique<pqxx::connection>(c.db);
                pqxx::nontransaction tx(*conn);
                auto r = tx.exec_params(
                    "SELECT pg_current_wal_lsn()::text, (SELECT confirmed_flush_lsn::text FROM "
                    "pg_replication_slots WHERE slot_name = $1), (SELECT wal_status FROM "
                    "pg_replication_slots WHERE slot_name = $1), (SELECT restart_lsn::text FROM "
                    "pg_replication_slots WHERE slot_name = $1)",
                    c.slot);
                if (!r[0][3].is_null()) {
                    if (auto l = cdc::parse_lsn(r[0][3].as<std::string>()))
                        stats.slot_restart_lsn = l->value;
                }
                // A heartbeat: a logical message the stream sees even when the published tables
                // are idle, so the slot (and the WAL it holds) moves on once the log has it.
                if (change_log && std::chrono::steady_clock::now() >= next_heartbeat) {
                    tx.exec("SELECT pg_logical_emit_message(false, 'pgpush', 'heartbeat')");
                    ++stats.heartbeats;
                    next_heartbeat = std::chrono::steady_clock::now() + c.heartbeat_interval;
                }
                stats.db_up = true;
                if (auto l = cdc::parse_lsn(r[0][0].as<std::string>())) stats.server_lsn = l->value;
                if (!r[0][1].is_null()) {
                    if (auto l = cdc::parse_lsn(r[0][1].as<std::string>()))
                        stats.slot_confirmed_lsn = l->value;
                }
                const bool was_ok = stats.slot_ok;
                stats.slot_ok = !r[0][2].is_null() && r[0][2].as<std::string>() != "lost";
                if (was_ok && !stats.slot_ok) {
                    spdlog::error("replication slot \"{}\" is {}", c.slot,
                                  r[0][2].is_null() ? "gone" : "invalidated (wal_status lost)");
                }
                const auto server = stats.server_lsn.load(),
                           restart = stats.slot_restart_lsn.load();
                const bool over = c.max_retained_wal_bytes && restart && server > restart &&
                                  server - restart > c.max_retained_wal_bytes;
                if (over && !retained_alarm) {
                    spdlog::warn("replication slot \"{}\" retains {} MiB of WAL (over "
                                 "--max-retained-wal {} MiB): is pgpush keeping up?",
                                 c.slot, (server - restart) >> 20, c.max_retained_wal_bytes >> 20);
                }
                retained_alarm = over;
                if (change_log) {
                    auto ls = change_log->statistics();
                    stats.log_bytes = ls.bytes_on_disk;
                    stats.log_segments = ls.segments;
                    stats.log_syncs = ls.syncs;
                }
            } catch (const std::exception&) {
                stats.db_up = false;
                conn.reset();
            }
            const auto period =
                std::min<std::chrono::milliseconds>(std::chrono::seconds(5), c.heartbeat_interval);
            for (auto slept = std::chrono::milliseconds(0); slept < period && !stopping;
                 slept += std::chrono::milliseconds(100))
                std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
    });
    std::function<void()> sample = [&] {
        stats.stream_connected = stream.stats().connected.load();
        stats.received_lsn = stream.stats().received_lsn.load();
        stats.flushed_lsn = stream.stats().flushed_lsn.load();
        stats.stream_reconnects = stream.stats().reconnects.load();
        probe_timer.expires_after(std::chrono::milliseconds(500));
        probe_timer.async_wait([&](beast::error_code ec) {
            if (!ec) sample();
        });
    };
    sample();

    int exit_code = 0;
    net::signal_set signals(cdc_io, SIGINT, SIGTERM);
    auto shut = [&](const std::string& why) {
        spdlog::info("shutting down ({})", why);
        accept->stop();
        ctx.close_all("server shutting down");
        watcher.stop();
        notifications.stop();
        stream.stop();
        probe_timer.cancel();
    };
    signals.async_wait([&](beast::error_code ec, int sig) {
        if (!ec) shut(sig == SIGTERM ? "SIGTERM" : "SIGINT");
    });
    net::co_spawn(cdc_io, stream.run(), [&](std::exception_ptr e, cdc::stop_result r) {
        if (e) {
            try {
                std::rethrow_exception(e);
            } catch (const std::exception& ex) {
                spdlog::error("replication stream failed: {}", ex.what());
            }
            exit_code = 1;
        } else if (r.reason != cdc::stop_reason::requested) {
            spdlog::error("replication stream stopped: {}: {}", cdc::to_string(r.reason),
                          r.message);
            exit_code = 1;
        }
        signals.cancel();
        if (exit_code) shut("replication stream ended");
    });
    net::co_spawn(cdc_io, notifications.run(), [](std::exception_ptr) {});

    std::vector<std::thread> io_threads;
    for (auto& io : ios) {
        io_threads.emplace_back([&io] {
            auto guard = net::make_work_guard(*io);
            io->run();
        });
    }
    cdc_io.run();
    // The stream has stopped (and confirmed what it handed over). Let sessions flush their close
    // frames, then stop the I/O threads.
    stopping = true;
    prober.join();
    for (auto& io : ios) {
        net::post(*io, [&io] {
            // Give close handshakes on this thread a moment to finish.
            auto t = std::make_shared<net::steady_timer>(*io, std::chrono::milliseconds(500));
            t->async_wait([t, &io](beast::error_code) { io->stop(); });
        });
    }
    for (auto& t : io_threads)
        t.join();
    spdlog::info("stopped");
    return exit_code;
}

} // namespace pgpush::push
