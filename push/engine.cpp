#include "push/engine.hpp"

#include <csignal>
#include <filesystem>
#include <mutex>
#include <set>
#include <sys/resource.h>
#include <thread>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <pqxx/pqxx>
#include <spdlog/spdlog.h>

#include "cdc/backoff.hpp"
#include "cdc/catalog_loader.hpp"
#include "cdc/db.hpp"
#include "cdc/notify_listener.hpp"
#include "cdc/pg_async.hpp"
#include "cdc/replication_stream.hpp"
#include "cdc/setup.hpp"
#include "cdc/table_catalog.hpp"
#include "push/db_worker.hpp"
#include "push/listener.hpp"
#include "push/publication.hpp"
#include "push/rules_store.hpp"
#include "push/snapshot_pool.hpp"

namespace pgpush::push {

namespace {

using clock = std::chrono::steady_clock;

// SIGTERM/SIGINT while starting (before the event loop handles them): stop waiting, exit 0.
volatile std::sig_atomic_t startup_stop = 0;
extern "C" void on_startup_signal(int) {
    startup_stop = 1;
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

void raise_fd_limit() {
    rlimit r{};
    if (getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < r.rlim_max) {
        r.rlim_cur = r.rlim_max;
        setrlimit(RLIMIT_NOFILE, &r);
    }
}

cdc::lsn slot_confirmed_lsn(pqxx::connection_base& conn, const std::string& slot) {
    pqxx::nontransaction tx(conn);
    auto r = tx.exec_params(
        "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1", slot);
    if (r.empty() || r[0][0].is_null()) return {};
    return cdc::parse_lsn(r[0][0].as<std::string>()).value_or(cdc::lsn{});
}

// Every table the engine streams: those the rules serve and those their lookups read.
std::vector<std::string> rule_tables(const rules::rule_set& rules) {
    return rules::streamed_tables(rules);
}

// Everything `id` needs from a catalog (itself, elements, bases, fields), as type_infos.
void collect_types(const cdc::type_catalog& from, cdc::oid id, std::vector<cdc::type_info>& out,
                   std::set<cdc::oid>& seen) {
    if (cdc::type_catalog::is_builtin(id) || !seen.insert(id).second) return;
    const cdc::type_info* t = from.find(id);
    if (!t) return;
    out.push_back(*t);
    if (t->element) collect_types(from, t->element, out, seen);
    for (const auto& f : t->fields)
        collect_types(from, f.type, out, seen);
}

// Tables described on the catalog worker, answered on the hub's thread.
class catalog_describer final : public table_describer {
public:
    catalog_describer(db_worker& worker, std::string conninfo, net::any_io_executor hub)
        : worker_(worker), conninfo_(std::move(conninfo)), hub_(std::move(hub)) {}

    void describe(const std::string& qualified, callback done) override {
        auto shared = std::make_shared<callback>(std::move(done));
        worker_.post(
            [this, qualified, shared](cdc::db::connection& conn) {
                auto found = cdc::describe_tables(conn.get(), {qualified});
                std::optional<described_table> d;
                if (!found.empty()) {
                    d.emplace();
                    d->table = std::move(found[0]);
                    std::vector<cdc::oid> missing;
                    for (const auto& c : d->table.columns) {
                        for (auto m : types_.missing(c.type))
                            missing.push_back(m);
                    }
                    if (!missing.empty()) {
                        if (!loader_) loader_ = std::make_unique<cdc::catalog_loader>(conninfo_);
                        loader_->load(types_, missing);
                    }
                    std::set<cdc::oid> seen;
                    for (const auto& c : d->table.columns)
                        collect_types(types_, c.type, d->types, seen);
                }
                net::post(hub_, [shared, d = std::move(d)]() mutable {
                    (*shared)(std::move(d), std::nullopt);
                });
            },
            [this, qualified, shared](const std::exception& e) {
                spdlog::warn("describing table {}: {}", qualified, cdc::db::first_line(e.what()));
                loader_.reset();
                net::post(hub_,
                          [shared, why = std::string(e.what())] { (*shared)(std::nullopt, why); });
            });
    }

private:
    db_worker& worker_;
    std::string conninfo_;
    net::any_io_executor hub_;
    // The worker thread's own: types learnt there are copied to the hub's catalog.
    cdc::type_catalog types_;
    std::unique_ptr<cdc::catalog_loader> loader_;
};

std::string join(const std::set<std::string>& names) {
    std::string out;
    for (const auto& n : names)
        out += (out.empty() ? "" : ", ") + n;
    return out;
}

} // namespace

// The parts, in the order they depend on each other: each may use those above it, so the reverse
// order (destruction) never leaves one calling a part that is gone. Threads are stopped in
// stop_threads() before anything is destroyed.
struct engine::parts {
    explicit parts(const serve_config& c) : config(c) {}

    const serve_config& config;
    metrics stats;
    std::optional<jwt_verifier> jwt;
    std::unique_ptr<rules_store> store;
    std::unique_ptr<log::change_log> change_log;
    std::unique_ptr<change_log_source> log_source;
    net::io_context cdc_io{1};
    cdc::type_catalog types;
    std::unique_ptr<cdc::catalog_loader> stream_types; // the stream's rare type lookups
    std::unique_ptr<db_worker> catalog_worker;         // describes tables for the hub
    std::unique_ptr<db_worker> ddl_worker;             // publication and replica identity
    std::unique_ptr<catalog_describer> describer;
    std::unique_ptr<snapshot_pool> snapshots;
    std::unique_ptr<hub> the_hub;
    std::unique_ptr<cdc::replication_stream> stream;
    std::unique_ptr<cdc::notify_listener> notifications;
    std::unique_ptr<rules_watcher> watcher;
    std::unique_ptr<net::steady_timer> sample_timer;
    std::unique_ptr<net::steady_timer> ddl_retry_timer;
    std::unique_ptr<net::signal_set> signals;
    std::unique_ptr<session_context> sessions;
    std::vector<std::unique_ptr<net::io_context>> ios;
    std::vector<std::thread> io_threads;
    std::shared_ptr<listener> accept;
    std::thread prober;
    std::atomic<bool> prober_stop{false};

    // ---- the CDC thread's state ----
    bool stopping = false;
    exit_code exit = exit_code::stopped;
    std::set<std::string> present;   // the rules' tables that exist (last DDL run)
    std::set<std::string> published; // what the publication carries (last DDL run or check)
    std::set<std::string> alarmed;   // present but not published: logged, in /healthz
    bool ddl_running = false;
    bool ddl_again = false;                               // a run was asked for while one ran
    std::shared_ptr<const rules::rule_set> ddl_rules;     // rules to apply when the run is done
    std::shared_ptr<const rules::rule_set> the_hub_rules; // the rules the hub has
    // Bumped when a DDL run starts and ends: a publication check that overlaps one is stale.
    std::atomic<std::uint64_t> ddl_generation{0};

    // ---- for /healthz (any thread) ----
    mutable std::mutex health_mu;
    std::string log_problem;                // empty: the log is fine (or off)
    std::string log_state = "ok";           // ok, stalled, failed, off
    std::set<std::string> unhealthy_tables; // copy of `alarmed`
    std::vector<lookup_status> lookups;     // copied from the hub by sample()

    void stop(const std::string& why, exit_code code);
    void run_prepare(std::shared_ptr<const rules::rule_set> rules);
    void on_prepared(const publication_state& st);
    void on_publication_check(std::set<std::string> tables, std::uint64_t generation);
    void update_publication_health();
    void on_log_health(const log::log_health& h);
    void sample();
    std::pair<bool, std::string> health() const;
    void probe_loop();
    void stop_threads();
};

void engine::parts::stop(const std::string& why, exit_code code) {
    if (code != exit_code::stopped && exit == exit_code::stopped) exit = code;
    if (stopping) return;
    stopping = true;
    spdlog::info("shutting down ({})", why);
    if (accept) accept->stop();
    if (sessions) sessions->close_all("server shutting down");
    if (watcher) watcher->stop();
    if (notifications) notifications->stop();
    if (signals) signals->cancel();
    if (sample_timer) sample_timer->cancel();
    if (ddl_retry_timer) ddl_retry_timer->cancel();
    stream->stop(); // it confirms what is durable, then its run() ends and so does the loop
}

// ---- the publication ----

void engine::parts::run_prepare(std::shared_ptr<const rules::rule_set> rules) {
    if (rules) ddl_rules = rules;
    if (ddl_running) {
        ddl_again = true;
        return;
    }
    ddl_running = true;
    ++ddl_generation;
    auto target = ddl_rules ? ddl_rules : store->current();
    publication_options o{config.publication, config.manage_publication,
                          config.replica_identity_full, std::chrono::milliseconds(5000)};
    auto tables = rule_tables(*target);
    auto expected = present;
    ddl_worker->post(
        [this, o, tables, expected](cdc::db::connection& conn) {
            auto st = prepare_tables(conn.get(), o, tables, expected);
            net::post(cdc_io, [this, st = std::move(st)] { on_prepared(st); });
        },
        [this, tables](const std::exception& e) {
            const std::string why = cdc::db::first_line(e.what());
            net::post(cdc_io, [this, tables, why] {
                spdlog::error("updating the publication for the rules failed ({}); retrying", why);
                ++ddl_generation;
                ddl_running = false;
                // New rules still apply: revocations must not wait for the database. A table the
                // publication is not known to carry stays closed to subscriptions meanwhile.
                if (ddl_rules && !stopping) {
                    the_hub->set_unpublished([&] {
                        std::set<std::string> u;
                        for (const auto& t : tables)
                            if (!published.count(t)) u.insert(t);
                        return u;
                    }());
                    the_hub->set_rules(std::exchange(ddl_rules, nullptr));
                    for (const auto& ch : the_hub->channels())
                        notifications->listen(ch);
                }
                if (stopping) return;
                ddl_retry_timer->expires_after(std::chrono::seconds(5));
                ddl_retry_timer->async_wait([this](boost::system::error_code ec) {
                    if (!ec) run_prepare(nullptr);
                });
            });
        });
}

void engine::parts::on_prepared(const publication_state& st) {
    ++ddl_generation;
    ddl_running = false;
    present = st.present;
    published = st.published;
    if (!st.missing_before.empty()) {
        spdlog::error("publication {} lacked {}: changes committed meanwhile were not streamed; "
                      "subscriptions to them end with resync_required",
                      config.publication, join(st.missing_before));
        stats.publication_gaps += st.missing_before.size();
        // Mark the hole (subscriptions end, resumes from before it resync) before it is mended.
        auto marked = the_hub->unpublished();
        marked.insert(st.missing_before.begin(), st.missing_before.end());
        the_hub->set_unpublished(std::move(marked));
    }
    auto rules = ddl_rules ? std::exchange(ddl_rules, nullptr) : store->current();
    std::set<std::string> unpublished;
    for (const auto& t : rule_tables(*rules)) {
        if (!published.count(t)) unpublished.insert(t);
    }
    the_hub->set_unpublished(std::move(unpublished));
    if (rules != the_hub_rules) {
        the_hub->set_rules(rules);
        the_hub_rules = rules;
        for (const auto& ch : the_hub->channels())
            notifications->listen(ch);
    }
    update_publication_health();
    if (!st.identity_waits.empty()) {
        spdlog::warn("waiting for a lock on {} to set REPLICA IDENTITY FULL (a long transaction "
                     "holds it); retrying in 30 s",
                     [&] {
                         std::set<std::string> s(st.identity_waits.begin(),
                                                 st.identity_waits.end());
                         return join(s);
                     }());
    }
    if (stopping) return;
    if (ddl_again) {
        ddl_again = false;
        run_prepare(nullptr);
    } else if (!st.identity_waits.empty() || st.publication_waits) {
        ddl_retry_timer->expires_after(st.publication_waits ? std::chrono::seconds(5)
                                                            : std::chrono::seconds(30));
        ddl_retry_timer->async_wait([this](boost::system::error_code ec) {
            if (!ec) run_prepare(nullptr);
        });
    }
}

void engine::parts::on_publication_check(std::set<std::string> tables, std::uint64_t generation) {
    if (stopping || ddl_running || generation != ddl_generation) return; // overlapped a DDL run
    published = std::move(tables);
    std::set<std::string> unpublished;
    for (const auto& t : rule_tables(*store->current())) {
        if (!published.count(t)) unpublished.insert(t);
    }
    std::set<std::string> newly;
    for (const auto& t : unpublished) {
        if (present.count(t) && !alarmed.count(t)) newly.insert(t);
    }
    if (!newly.empty()) {
        spdlog::error("publication {} no longer carries {} (altered from outside?): changes to "
                      "{} are not streamed; their subscriptions end with resync_required{}",
                      config.publication, join(newly), newly.size() == 1 ? "it" : "them",
                      config.manage_publication ? "; adding them back"
                                                : " (--no-manage-publication: add them back)");
        stats.publication_gaps += newly.size();
    }
    the_hub->set_unpublished(std::move(unpublished));
    update_publication_health();
    if (config.manage_publication && !alarmed.empty()) run_prepare(nullptr);
}

void engine::parts::update_publication_health() {
    std::set<std::string> now;
    for (const auto& t : the_hub->unpublished()) {
        if (present.count(t)) now.insert(t);
    }
    for (const auto& t : alarmed) {
        if (!now.count(t)) spdlog::info("publication {} carries {} again", config.publication, t);
    }
    alarmed = now;
    stats.publication_missing_tables = alarmed.size();
    std::lock_guard lock(health_mu);
    unhealthy_tables = alarmed;
}

// ---- the change log's health ----

void engine::parts::on_log_health(const log::log_health& h) {
    switch (h.state) {
    case log::log_state::ok:
        spdlog::info("change log: writing again; the stream reads on");
        stream->pause(false);
        stats.stream_paused = false;
        break;
    case log::log_state::stalled:
        ++stats.log_stalls;
        spdlog::error("change log stalled: {}; the stream stops reading (WAL waits in "
                      "PostgreSQL, nothing is confirmed) and resumes by itself when the log can "
                      "write again",
                      h.reason);
        stream->pause(true);
        stats.stream_paused = true;
        break;
    case log::log_state::failed:
        // After a failed fsync the page cache cannot be trusted (PostgreSQL's "fsyncgate"):
        // stop without confirming anything more; on restart the log is cut back to what the slot
        // confirmed and the rest is read again from the slot.
        spdlog::critical("change log failed: {}; stopping (nothing past the last successful sync "
                         "was confirmed; a restart re-reads it from the slot)",
                         h.reason);
        stop("the change log failed", exit_code::failed);
        break;
    }
    // Published after the stream is paused (or reading again), so /healthz never shows a stalled
    // log with a stream that still reads.
    {
        std::lock_guard lock(health_mu);
        log_state = h.state == log::log_state::ok        ? "ok"
                    : h.state == log::log_state::stalled ? "stalled"
                                                         : "failed";
        log_problem = h.reason;
    }
    stats.log_state = static_cast<int>(h.state);
}

// ---- observing ----

void engine::parts::sample() {
    stats.stream_connected = stream->stats().connected.load();
    stats.received_lsn = stream->stats().received_lsn.load();
    stats.flushed_lsn = stream->stats().flushed_lsn.load();
    stats.stream_reconnects = stream->stats().reconnects.load();
    if (change_log) {
        // A slow disk: stop reading while the writer is far behind, so memory stays bounded.
        const auto backlog = change_log->unwritten_bytes();
        const bool stalled = change_log->health().state != log::log_state::ok;
        if (!stalled) {
            if (backlog > config.log_backlog_bytes && !stream->paused()) {
                spdlog::warn("change log is {} MiB behind: pausing the stream until it catches up",
                             backlog >> 20);
                stream->pause(true);
            } else if (backlog < config.log_backlog_bytes / 4 && stream->paused()) {
                stream->pause(false);
            }
        }
    }
    stats.stream_paused = stream->paused();
    {
        auto now = the_hub->lookups();
        std::lock_guard lock(health_mu);
        lookups = std::move(now);
    }
    sample_timer->expires_after(std::chrono::milliseconds(100));
    sample_timer->async_wait([this](boost::system::error_code ec) {
        if (!ec) sample();
    });
}

std::pair<bool, std::string> engine::parts::health() const {
    std::string log_state_now, log_why;
    std::set<std::string> tables;
    {
        std::lock_guard lock(health_mu);
        log_state_now = change_log ? log_state : "off";
        log_why = log_problem;
        tables = unhealthy_tables;
    }
    const bool log_ok = log_state_now == "ok" || log_state_now == "off";
    const bool ok =
        stats.db_up && stats.stream_connected && stats.slot_ok && log_ok && tables.empty();
    nlohmann::json log_json = {{"state", log_state_now}};
    if (!log_why.empty()) log_json["reason"] = log_why;
    nlohmann::json j = {
        {"status", ok ? "ok" : "degraded"},
        {"database", stats.db_up.load() ? "up" : "down"},
        {"replication", stats.stream_paused.load()      ? "paused"
                        : stats.stream_connected.load() ? "streaming"
                                                        : "disconnected"},
        {"slot", {{"name", config.slot}, {"ok", stats.slot_ok.load()}}},
        {"log", log_json},
        {"publication",
         {{"name", config.publication},
          {"missing", nlohmann::json(std::vector<std::string>(tables.begin(), tables.end()))}}},
        {"connections", stats.connections.load()},
        {"subscriptions", stats.subscriptions.load()}};
    std::vector<lookup_status> looked;
    {
        std::lock_guard lock(health_mu);
        looked = lookups;
    }
    bool lookups_ok = true;
    nlohmann::json lj = nlohmann::json::object();
    for (const auto& l : looked) {
        nlohmann::json one = {{"state", l.state}, {"rows", l.rows}, {"keys", l.keys}};
        if (!l.problem.empty()) one["problem"] = l.problem;
        lj[l.name] = one;
        if (l.state == "failed") lookups_ok = false;
    }
    j["lookups"] = lj;
    if (!lookups_ok) {
        j["status"] = "degraded";
        return {false, j.dump()};
    }
    return {ok, j.dump()};
}

// The prober: its own thread and connection, so a slow or unreachable database never holds up
// the event loops. Slot health and lag, heartbeats, and the publication's tables.
void engine::parts::probe_loop() {
    std::unique_ptr<cdc::db::connection> conn;
    auto next_heartbeat = clock::now() + config.heartbeat_interval;
    bool retained_alarm = false;
    bool was_up = true;
    while (!prober_stop) {
        try {
            if (!conn || !conn->is_open()) {
                conn.reset();
                conn = std::make_unique<cdc::db::connection>(config.db, "pgpush-probe");
            }
            pqxx::result r;
            {
                pqxx::nontransaction tx(conn->get());
                r = tx.exec_params(
                    "SELECT pg_current_wal_lsn()::text, (SELECT confirmed_flush_lsn::text FROM "
                    "pg_replication_slots WHERE slot_name = $1), (SELECT wal_status FROM "
                    "pg_replication_slots WHERE slot_name = $1), (SELECT restart_lsn::text FROM "
                    "pg_replication_slots WHERE slot_name = $1)",
                    config.slot);
                if (!r[0][3].is_null()) {
                    if (auto l = cdc::parse_lsn(r[0][3].as<std::string>()))
                        stats.slot_restart_lsn = l->value;
                }
                // A heartbeat: a logical message the stream sees even when the published tables
                // are idle, so the slot (and the WAL it holds) moves on once the log has it.
                if (change_log && clock::now() >= next_heartbeat) {
                    tx.exec("SELECT pg_logical_emit_message(false, 'pgpush', 'heartbeat')");
                    ++stats.heartbeats;
                    next_heartbeat = clock::now() + config.heartbeat_interval;
                }
            }
            stats.db_up = true;
            if (!was_up) spdlog::info("the database is reachable again");
            was_up = true;
            if (auto l = cdc::parse_lsn(r[0][0].as<std::string>())) stats.server_lsn = l->value;
            if (!r[0][1].is_null()) {
                if (auto l = cdc::parse_lsn(r[0][1].as<std::string>()))
                    stats.slot_confirmed_lsn = l->value;
            }
            const bool was_ok = stats.slot_ok;
            stats.slot_ok = !r[0][2].is_null() && r[0][2].as<std::string>() != "lost";
            if (was_ok && !stats.slot_ok) {
                spdlog::error("replication slot \"{}\" is {}", config.slot,
                              r[0][2].is_null() ? "gone" : "invalidated (wal_status lost)");
            }
            const auto server = stats.server_lsn.load(), restart = stats.slot_restart_lsn.load();
            const bool over = config.max_retained_wal_bytes && restart && server > restart &&
                              server - restart > config.max_retained_wal_bytes;
            if (over && !retained_alarm) {
                spdlog::warn("replication slot \"{}\" retains {} MiB of WAL (over "
                             "--max-retained-wal {} MiB): is pgpush keeping up?",
                             config.slot, (server - restart) >> 20,
                             config.max_retained_wal_bytes >> 20);
            }
            retained_alarm = over;
            // The publication, as it is now: altered from outside, a table's changes stop.
            const auto generation = ddl_generation.load();
            auto tables = published_tables(conn->get(), config.publication);
            net::post(cdc_io, [this, tables = std::move(tables), generation]() mutable {
                on_publication_check(std::move(tables), generation);
            });
            if (change_log) {
                auto ls = change_log->statistics();
                stats.log_bytes = ls.bytes_on_disk;
                stats.log_segments = ls.segments;
                stats.log_syncs = ls.syncs;
            }
        } catch (const std::exception& e) {
            if (was_up) {
                spdlog::warn("database probe failed: {}", cdc::db::first_line(e.what()));
            }
            was_up = false;
            stats.db_up = false;
            conn.reset();
        }
        const auto period =
            std::min<std::chrono::milliseconds>(std::chrono::seconds(5), config.heartbeat_interval);
        for (auto slept = std::chrono::milliseconds(0); slept < period && !prober_stop;
             slept += std::chrono::milliseconds(50))
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
}

void engine::parts::stop_threads() {
    prober_stop = true;
    if (prober.joinable()) prober.join();
    if (ddl_worker) ddl_worker->stop();
    if (catalog_worker) catalog_worker->stop();
    if (snapshots) snapshots->stop();
    // Sessions got their close frames when stopping began (ahead of anything still queued);
    // clients have a few seconds to read what the kernel already holds and answer the close.
    if (sessions) sessions->wait_closed(std::chrono::seconds(5));
    for (auto& io : ios)
        io->stop();
    for (auto& t : io_threads) {
        if (t.joinable()) t.join();
    }
}

// ---- start-up ----

engine::engine(serve_config config) : config_(std::move(config)) {}

engine::~engine() {
    if (parts_) parts_->stop_threads();
}

namespace {

// Whether a start-up failure is the database being away (retry) rather than a refusal.
bool transient(const std::exception& e) {
    if (const auto* s = dynamic_cast<const cdc::setup_error*>(&e)) {
        if (s->code() != cdc::setup_error_code::connection_failed) return false;
        const std::string m = s->what();
        for (const char* fatal :
             {"password authentication failed", "authentication failed", "does not exist",
              "pg_hba.conf", "invalid connection option", "invalid URI", "missing \"=\"",
              "could not translate host name"}) {
            if (m.find(fatal) != std::string::npos) return false;
        }
        return true;
    }
    return cdc::db::is_transient(e);
}

// Runs `step` until it succeeds; while the database is unreachable or restarting, waits with
// backoff (as the stream does). False when a signal asked to stop meanwhile.
template <class F>
bool with_retries(const serve_config& c, F&& step) {
    cdc::backoff delay(std::chrono::milliseconds(200), std::chrono::milliseconds(5000));
    const auto started = clock::now();
    for (int attempt = 1;; ++attempt) {
        if (startup_stop) return false;
        try {
            step();
            return true;
        } catch (const std::exception& e) {
            if (!transient(e)) throw;
            const auto waited =
                std::chrono::duration_cast<std::chrono::seconds>(clock::now() - started);
            if (c.startup_timeout.count() && waited >= c.startup_timeout) {
                throw engine_error("connection_failed",
                                   "the database was not reachable for " +
                                       std::to_string(waited.count()) +
                                       " s (--startup-timeout): " + cdc::db::first_line(e.what()),
                                   exit_code::setup);
            }
            const auto d = delay.next();
            spdlog::warn("the database is not reachable yet ({}); retrying in {} ms (attempt {})",
                         cdc::db::first_line(e.what()), d.count(), attempt);
            for (auto slept = std::chrono::milliseconds(0); slept < d && !startup_stop;
                 slept += std::chrono::milliseconds(20))
                std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
    }
}

} // namespace

exit_code engine::run() {
    const serve_config& c = config_;
    parts_ = std::make_unique<parts>(c);
    parts& p = *parts_;
    std::signal(SIGPIPE, SIG_IGN);
    startup_stop = 0;
    std::signal(SIGTERM, on_startup_signal);
    std::signal(SIGINT, on_startup_signal);
    raise_fd_limit();

    auto endpoint = parse_endpoint(c.listen);
    if (!endpoint) {
        throw engine_error("bad_option", "--listen \"" + c.listen + "\" is not HOST:PORT",
                           exit_code::bad_config);
    }
    try {
        p.jwt.emplace(c.jwt);
    } catch (const jwt_config_error& e) {
        throw engine_error("bad_jwt_config", e.what(), exit_code::bad_config);
    }
    p.store = std::make_unique<rules_store>(c.rules_path);
    if (auto first = p.store->reload(); !first.replaced) {
        std::string all;
        for (const auto& e : first.errors)
            all += e + "\n";
        throw engine_error("bad_rules",
                           all + c.rules_path + " has " + std::to_string(first.errors.size()) +
                               " error(s); fix them (pgpush check " + c.rules_path + ")",
                           exit_code::bad_config);
    }

    // The database: what the engine needs of it, retried while it is down or restarting.
    cdc::source_config source;
    source.conninfo = c.db;
    source.slot = c.slot;
    source.publication = c.publication;
    publication_state prepared;
    cdc::lsn confirmed;
    try {
        const bool started = with_retries(c, [&] {
            cdc::preflight(c.db); // reachable, wal_level, privileges
            cdc::db::connection conn(c.db, "pgpush-setup");
            const auto tables = rule_tables(*p.store->current());
            // Every table of the rules counts as expected: one the publication lacks now may
            // have missed changes while pgpush was away.
            prepared = prepare_tables(conn.get(),
                                      {c.publication, c.manage_publication, c.replica_identity_full,
                                       std::chrono::milliseconds(5000)},
                                      tables, std::set<std::string>(tables.begin(), tables.end()));
            cdc::prepare_source(source); // the publication exists; the slot is made
            confirmed = slot_confirmed_lsn(conn.get(), c.slot);
        });
        if (!started) return exit_code::stopped;
    } catch (const engine_error&) {
        throw;
    } catch (const cdc::setup_error& e) {
        throw engine_error(std::string(cdc::to_string(e.code())), e.what(), exit_code::setup);
    } catch (const std::exception& e) {
        throw engine_error("setup_failed", cdc::db::first_line(e.what()), exit_code::setup);
    }

    // The change log, recovered, cut back to what the slot confirmed (the rest is read again
    // from the slot: after a failed sync the page cache cannot be trusted), and checked against
    // the slot: if the slot was confirmed past what the log holds, the log lost history (a
    // different disk, a restore, damage) and its positions cannot be trusted for resumes.
    if (c.log_enabled) {
        log::log_options lo;
        lo.dir = std::filesystem::path(c.data_dir) / (c.slot + ".log");
        lo.segment_bytes = c.log_segment_bytes;
        lo.retain_bytes = c.log_retain_bytes;
        lo.retain_age = c.log_retain_age;
        lo.fsync = c.log_fsync;
        lo.sync_delay = c.log_sync_delay;
        lo.start = confirmed;
        try {
            p.change_log = std::make_unique<log::change_log>(lo);
            auto& log = *p.change_log;
            const auto& rec = log.recovered();
            if (!rec.damage.empty()) {
                spdlog::error("change log {}: {}; it was set aside and a new epoch begins: "
                              "clients resuming from before get resync_required",
                              lo.dir.string(), rec.damage);
            } else if (!rec.fresh && confirmed.valid()) {
                log.cut_back_to(confirmed);
            }
            if (!log.recovered().fresh && confirmed > log.recovered().covered) {
                log.reset("the slot was confirmed to " + cdc::to_string(confirmed) +
                              " but the log reaches only " +
                              cdc::to_string(log.recovered().covered),
                          confirmed);
                spdlog::error("change log {}: {}; it was set aside and a new epoch begins",
                              lo.dir.string(), log.recovered().damage);
            }
            const auto& r = log.recovered();
            spdlog::info("change log {} (epoch {:016x}){}{}", lo.dir.string(), r.epoch,
                         r.fresh ? ": new" : ": resumes after " + cdc::to_string(r.last),
                         r.truncated_bytes ? fmt::format(", cut {} byte(s) of unconfirmed tail",
                                                         r.truncated_bytes)
                                           : "");
        } catch (const std::exception& e) {
            throw engine_error("bad_data_dir", e.what(), exit_code::resources);
        }
        p.log_source = std::make_unique<change_log_source>(*p.change_log);
        p.stats.log_enabled = true;
    } else {
        spdlog::warn("running without a change log (--no-log): the slot is confirmed as changes "
                     "are sent, a crash can lose them for clients, and resumes are refused");
    }
    p.stats.retained_wal_alarm_bytes = c.max_retained_wal_bytes;

    // ---- the parts ----
    p.stream_types = std::make_unique<cdc::catalog_loader>(c.db);
    p.catalog_worker = std::make_unique<db_worker>(c.db, "catalog");
    p.ddl_worker = std::make_unique<db_worker>(c.db, "ddl");
    p.describer =
        std::make_unique<catalog_describer>(*p.catalog_worker, c.db, p.cdc_io.get_executor());
    snapshot_options so;
    so.workers = c.snapshot_workers;
    so.timeout = c.snapshot_timeout;
    p.snapshots = std::make_unique<snapshot_pool>(c.db, so, p.stats);
    p.the_hub = std::make_unique<hub>(p.cdc_io.get_executor(), p.types, p.stats, *p.snapshots,
                                      *p.describer, c.hub);
    hub& h = *p.the_hub;
    h.set_log(p.log_source.get());
    p.present = prepared.present;
    p.published = prepared.published;
    {
        std::set<std::string> unpublished;
        for (const auto& t : rule_tables(*p.store->current())) {
            if (!p.published.count(t)) unpublished.insert(t);
        }
        if (!prepared.missing_before.empty()) {
            // Missing before this start: resumes from before now must resync for these tables.
            auto marked = unpublished;
            marked.insert(prepared.missing_before.begin(), prepared.missing_before.end());
            h.set_unpublished(std::move(marked));
        }
        h.set_unpublished(std::move(unpublished));
    }
    h.set_rules(p.store->current());
    p.the_hub_rules = p.store->current();
    // A lookup that cannot be loaded at start (its table too large, a column gone) is a start-up
    // error, never a silent deny-all.
    h.when_lookups_settled([&p] {
        // Posted: it may run now, before the rest of the engine exists.
        net::post(p.cdc_io, [&p] {
            for (const auto& l : p.the_hub->lookups()) {
                if (l.state != "failed") continue;
                spdlog::critical("lookup {} cannot be loaded: {}", l.name, l.problem);
                p.stop("a lookup cannot be loaded", exit_code::setup);
            }
        });
    });

    cdc::stream_config sc;
    sc.conninfo = c.db;
    sc.slot = c.slot;
    sc.publications = {c.publication};
    sc.status_interval = c.status_interval;
    sc.follow_keepalives = !p.change_log; // with a log, only what it holds is confirmed
    p.stream = std::make_unique<cdc::replication_stream>(
        p.cdc_io.get_executor(), sc, p.types, h, [&p](std::span<const cdc::oid> ids) {
            try {
                p.stream_types->load(p.types, ids);
            } catch (const std::exception& e) {
                throw cdc::pg::error(std::string("loading type info: ") + e.what());
            }
        });
    auto& stream = *p.stream;
    if (p.change_log) {
        // What the log already has is not handed over again.
        const auto& r = p.change_log->recovered();
        if (r.last_commit.valid()) stream.skip_through(r.last_commit);
        p.change_log->on_durable([&p](cdc::lsn l) {
            p.stats.log_durable_lsn = l.value;
            net::post(p.cdc_io, [&p, l] { p.stream->confirm(l); });
        });
        p.change_log->on_health([&p](const log::log_health& health) {
            net::post(p.cdc_io, [&p, health] { p.on_log_health(health); });
        });
        h.on_stopping = [&p] {
            // Leaving on purpose: everything handed over is made durable and confirmed, unless
            // the log failed (then only what was durable before the failure is).
            p.change_log->drain();
            if (auto l = p.change_log->durable(); l.valid()) p.stream->confirm(l);
        };
    } else {
        h.confirm = [&p](cdc::lsn l) { p.stream->confirm(l); };
    }

    p.notifications = std::make_unique<cdc::notify_listener>(
        p.cdc_io.get_executor(), c.db,
        cdc::notify_listener::handlers{
            [&h](const cdc::notification& n) { h.on_notify(n); },
            [] {
                spdlog::warn("notify listener reconnected: notifications sent while it was down "
                             "are lost");
            }});
    for (const auto& ch : h.channels())
        p.notifications->listen(ch);

    p.ddl_retry_timer = std::make_unique<net::steady_timer>(p.cdc_io);
    p.watcher = std::make_unique<rules_watcher>(p.cdc_io, *p.store, [&p](const reload_result& r) {
        // The publication first (on the DDL worker: it may wait for locks), then the rules.
        if (r.replaced) p.run_prepare(p.store->current());
    });
    p.watcher->start();

    // I/O threads, one io_context each: a session lives on one thread and needs no strand.
    const std::size_t n = c.threads ? c.threads : std::max(1u, std::thread::hardware_concurrency());
    std::vector<net::io_context*> workers;
    for (std::size_t i = 0; i < n; ++i) {
        p.ios.push_back(std::make_unique<net::io_context>(1));
        workers.push_back(p.ios.back().get());
    }
    p.sessions = std::make_unique<session_context>(c.limits, p.stats, *p.jwt, h);
    listener_options lo;
    lo.max_connections = c.max_connections ? c.max_connections
                                           : default_max_connections(64 + c.snapshot_workers * 2);
    try {
        p.accept = std::make_shared<listener>(
            *p.ios[0], workers, *endpoint, *p.sessions, [&p] { return p.health(); }, lo);
    } catch (const std::exception& e) {
        throw engine_error("listen_failed", "cannot listen on " + c.listen + ": " + e.what(),
                           exit_code::resources);
    }
    p.accept->run();
    const auto bound = p.accept->local_endpoint();
    spdlog::info("listening on {}:{} ({} I/O thread(s), up to {} connections); WebSocket on /ws, "
                 "/healthz, /metrics",
                 bound.address().to_string(), bound.port(), n, lo.max_connections);

    p.sample_timer = std::make_unique<net::steady_timer>(p.cdc_io);
    p.sample();
    p.prober = std::thread([&p] { p.probe_loop(); });

    p.signals = std::make_unique<net::signal_set>(p.cdc_io, SIGINT, SIGTERM);
    if (startup_stop)
        net::post(p.cdc_io, [&p] { p.stop("a signal during start-up", exit_code::stopped); });
    p.signals->async_wait([&p](beast::error_code ec, int sig) {
        if (!ec) p.stop(sig == SIGTERM ? "SIGTERM" : "SIGINT", exit_code::stopped);
    });
    net::co_spawn(p.cdc_io, stream.run(), [&p](std::exception_ptr e, cdc::stop_result r) {
        if (e) {
            try {
                std::rethrow_exception(e);
            } catch (const std::exception& ex) {
                spdlog::error("replication stream failed: {}", ex.what());
            }
            p.stop("replication stream failed", exit_code::failed);
        } else if (r.reason != cdc::stop_reason::requested) {
            spdlog::error("replication stream stopped: {}: {}", cdc::to_string(r.reason),
                          r.message);
            p.stop("replication stream ended", exit_code::failed);
        }
        // The stream confirmed what is durable on its way out: nothing else on this thread
        // matters any more (replays waiting for a disk, timers).
        p.cdc_io.stop();
    });
    net::co_spawn(p.cdc_io, p.notifications->run(), [](std::exception_ptr) {});

    for (auto& io : p.ios) {
        p.io_threads.emplace_back([&io] {
            auto guard = net::make_work_guard(*io);
            io->run();
        });
    }
    p.cdc_io.run();
    p.stop_threads();
    spdlog::info("stopped");
    return p.exit;
}

} // namespace pgpush::push
