#include "push/snapshot_pool.hpp"

#include <algorithm>
#include <charconv>

#include <pqxx/pqxx>
#include <spdlog/spdlog.h>

#include "cdc/catalog_loader.hpp"
#include "cdc/db.hpp"
#include "cdc/json_writer.hpp"
#include "cdc/type_catalog.hpp"
#include "cdc/value_json.hpp"

namespace pgpush::push {

bool snapshot_meta::contains(cdc::transaction_id xid) const {
    if (!taken) return false;
    // Widen the stream's 32-bit xid to the snapshot's 64-bit (epoch-qualified) numbering: it is
    // the one nearest to xmax with the same low 32 bits (xids are compared modulo 2^32 within
    // 2^31 of each other, as Postgres compares them). At or above xmax: it began after the
    // snapshot, which cannot contain it.
    const auto delta = static_cast<std::int32_t>(xid - static_cast<std::uint32_t>(xmax));
    if (delta >= 0) return false;
    const std::uint64_t back = static_cast<std::uint64_t>(-static_cast<std::int64_t>(delta));
    if (back > xmax) return true; // before xid numbering began: long committed
    const std::uint64_t full = xmax - back;
    if (full < xmin) return true;
    return !std::binary_search(xip.begin(), xip.end(), full);
}

namespace {

// "xmin:xmax:xip1,xip2" as pg_current_snapshot() prints it.
std::optional<snapshot_meta> parse_snapshot(const std::string& text) {
    snapshot_meta m;
    auto a = text.find(':');
    auto b = text.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos) return std::nullopt;
    auto num = [](std::string_view s, std::uint64_t& out) {
        auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
        return ec == std::errc{} && end == s.data() + s.size();
    };
    std::string_view t(text);
    if (!num(t.substr(0, a), m.xmin) || !num(t.substr(a + 1, b - a - 1), m.xmax))
        return std::nullopt;
    std::string_view rest = t.substr(b + 1);
    while (!rest.empty()) {
        auto comma = rest.find(',');
        std::uint64_t x = 0;
        if (!num(rest.substr(0, comma), x)) return std::nullopt;
        m.xip.push_back(x);
        if (comma == std::string_view::npos) break;
        rest.remove_prefix(comma + 1);
    }
    std::sort(m.xip.begin(), m.xip.end());
    return m;
}

} // namespace

struct snapshot_pool::worker {
    std::unique_ptr<cdc::db::connection> conn;
    cdc::type_catalog types;
    std::unique_ptr<cdc::catalog_loader> loader;
    // The job this worker runs now (0: none) and whether it was cancelled; under the pool's mutex.
    std::uint64_t running = 0;
    bool cancelled = false;
    // Read by the worker between steps without the lock.
    std::atomic<bool> stop_now{false};
};

namespace {

// Why a snapshot ended early, to unwind out of take() from any depth.
struct snapshot_abort {
    protocol::error_code code;
    std::string message;
};

} // namespace

snapshot_pool::snapshot_pool(std::string conninfo, snapshot_options options, metrics& m)
    : conninfo_(std::move(conninfo)), options_(options), metrics_(m) {
    const std::size_t n = std::max<std::size_t>(1, options_.workers);
    for (std::size_t i = 0; i < n; ++i)
        workers_.push_back(std::make_unique<worker>());
    for (auto& w : workers_)
        threads_.emplace_back([this, wp = w.get()] { run(*wp); });
}

snapshot_pool::~snapshot_pool() {
    stop();
}

void snapshot_pool::stop() {
    {
        std::lock_guard lock(mu_);
        stopping_ = true;
        jobs_.clear();
        for (auto& w : workers_) {
            if (w->running) {
                w->cancelled = true;
                w->stop_now = true;
                if (w->conn) w->conn->cancel();
            }
        }
    }
    cv_.notify_all();
    for (auto& t : threads_) {
        if (t.joinable()) t.join();
    }
}

void snapshot_pool::submit(snapshot_job job) {
    {
        std::lock_guard lock(mu_);
        if (stopping_) return;
        jobs_.push_back(std::move(job));
    }
    cv_.notify_one();
}

void snapshot_pool::cancel(std::uint64_t key) {
    std::lock_guard lock(mu_);
    std::erase_if(jobs_, [&](const snapshot_job& j) { return j.key == key; });
    for (auto& w : workers_) {
        if (w->running == key) {
            w->cancelled = true;
            w->stop_now = true;
            // The worker may be inside a FETCH (or the query's first rows): cancel it there.
            if (w->conn) w->conn->cancel();
        }
    }
}

void snapshot_pool::run(worker& w) {
    while (true) {
        snapshot_job job;
        {
            std::unique_lock lock(mu_);
            cv_.wait(lock, [&] { return stopping_ || !jobs_.empty(); });
            if (stopping_) return;
            job = std::move(jobs_.front());
            jobs_.pop_front();
            w.running = job.key;
            w.cancelled = false;
            w.stop_now = false;
        }
        ++metrics_.snapshots_running;
        snapshot_result r;
        r.key = job.key;
        try {
            r = take(job, w);
        } catch (const snapshot_abort& a) {
            r.code = a.code;
            r.message = a.message;
        } catch (const std::exception& e) {
            const bool transient = cdc::db::is_transient(e);
            if (transient || !w.conn || !w.conn->is_open()) {
                std::lock_guard lock(mu_);
                w.conn.reset();
            }
            r.code = protocol::error_code::unavailable;
            if (w.stop_now) {
                r.message = "cancelled";
            } else if (transient) {
                r.message = "the database is unreachable; try again";
            } else {
                // The server's words may quote our SQL: they go to the log, not to the client.
                spdlog::warn("snapshot for subscription {} failed: {}", job.key,
                             cdc::db::first_line(e.what()));
                r.message = "the snapshot failed; try again (the server log says why)";
            }
        }
        --metrics_.snapshots_running;
        bool report = true;
        {
            std::lock_guard lock(mu_);
            report = !w.cancelled;
            w.running = 0;
        }
        if (report && job.done) job.done(std::move(r));
    }
}

snapshot_result snapshot_pool::take(snapshot_job& job, worker& w) {
    using clock = std::chrono::steady_clock;
    const auto deadline = clock::now() + options_.timeout;
    snapshot_result r;
    r.key = job.key;
    auto check = [&] {
        if (w.stop_now) throw snapshot_abort{protocol::error_code::unavailable, "cancelled"};
        if (clock::now() >= deadline) {
            throw snapshot_abort{protocol::error_code::unavailable,
                                 "the snapshot took longer than the server allows (" +
                                     std::to_string(options_.timeout.count() / 1000) +
                                     " s): narrow the query, or read the rows faster"};
        }
    };
    if (!w.conn || !w.conn->is_open()) {
        {
            std::lock_guard lock(mu_);
            w.conn.reset();
        }
        auto conn = std::make_unique<cdc::db::connection>(conninfo_, "pgpush-snapshot");
        // No statement may outlive a snapshot's deadline either (a slow query, a lock).
        pqxx::nontransaction(conn->get())
            .exec("SET statement_timeout = " + std::to_string(options_.timeout.count()));
        w.loader = std::make_unique<cdc::catalog_loader>(conninfo_);
        std::lock_guard lock(mu_);
        w.conn = std::move(conn);
    }
    auto& conn = w.conn->get();
    if (job.with_rows) {
        std::vector<cdc::oid> missing;
        for (auto t : job.column_types) {
            for (auto m : w.types.missing(t))
                missing.push_back(m);
        }
        if (!missing.empty()) w.loader->load(w.types, missing);
        ++metrics_.snapshots;
        for (int attempt = 0;; ++attempt) {
            check();
            pqxx::transaction<pqxx::repeatable_read, pqxx::read_only> tx(conn);
            auto head =
                tx.exec1("SELECT pg_current_snapshot()::text, pg_current_wal_insert_lsn()::text");
            auto meta = parse_snapshot(head[0].as<std::string>());
            auto lsn = cdc::parse_lsn(head[1].as<std::string>());
            if (!meta || !lsn)
                throw std::runtime_error("unreadable snapshot " + head[0].as<std::string>());
            meta->lsn = *lsn;
            meta->taken = true;
            // A transaction streamed before the subscription existed but not yet visible to
            // this snapshot (in progress to it, or at its xmax: its commit is written but not
            // yet visible) would reach the subscriber by neither path: take the snapshot again
            // (it finishes becoming visible within microseconds).
            const bool racing =
                std::any_of(job.recent_xids.begin(), job.recent_xids.end(),
                            [&](cdc::transaction_id x) { return x != 0 && !meta->contains(x); });
            if (racing) {
                tx.abort();
                ++metrics_.snapshot_retries;
                if (attempt > 200)
                    throw std::runtime_error("a transaction stayed between commit and visibility");
                std::this_thread::sleep_for(std::chrono::milliseconds(1));
                continue;
            }
            tx.exec_params(
                "DECLARE pgpush_snapshot NO SCROLL CURSOR FOR " + job.sql,
                pqxx::prepare::make_dynamic_params(job.params.begin(), job.params.end()));
            while (true) {
                check();
                auto rows = tx.exec("FETCH " + std::to_string(options_.chunk_rows) +
                                    " FROM pgpush_snapshot");
                if (rows.empty()) break;
                r.row_count += rows.size();
                if (r.row_count > job.max_rows) {
                    if (job.collect) {
                        throw snapshot_abort{protocol::error_code::snapshot_too_large,
                                             "the table has more than " +
                                                 std::to_string(job.max_rows) + " rows"};
                    }
                    throw snapshot_abort{protocol::error_code::snapshot_too_large,
                                         "the result has more than " +
                                             std::to_string(job.max_rows) +
                                             " rows: narrow the query"};
                }
                if (job.collect) {
                    for (const auto& row : rows) {
                        std::vector<std::optional<std::string>> values;
                        values.reserve(row.size());
                        for (const auto& f : row) {
                            if (f.is_null()) {
                                values.emplace_back();
                            } else {
                                values.emplace_back(std::string(f.c_str(), f.size()));
                            }
                        }
                        r.rows.push_back(std::move(values));
                    }
                    metrics_.snapshot_rows += rows.size();
                    continue;
                }
                std::string msg = protocol::rows_open(*job.id);
                for (std::size_t i = 0; i < rows.size(); ++i) {
                    if (i) msg.push_back(',');
                    msg.push_back('{');
                    for (std::size_t c = 0; c < job.column_names.size(); ++c) {
                        if (c) msg.push_back(',');
                        cdc::json::append_key(msg, job.column_names[c]);
                        const auto& f = rows[static_cast<pqxx::row::size_type>(i)]
                                            [static_cast<pqxx::row::size_type>(c)];
                        if (f.is_null()) {
                            msg += "null";
                        } else {
                            cdc::append_value_json(msg, w.types, job.column_types[c],
                                                   std::string_view(f.c_str(), f.size()));
                        }
                    }
                    msg.push_back('}');
                }
                msg += protocol::rows_close;
                metrics_.snapshot_rows += rows.size();
                // Pace the snapshot to the client: never more than a window ahead of it. The
                // client is only borrowed while a chunk is handed over, so a connection that
                // goes away is released at once (and its flow gate says it is closed).
                while (true) {
                    auto to = job.to.lock();
                    if (!to || to->flow().closed) {
                        throw snapshot_abort{protocol::error_code::unavailable,
                                             "the client went away"};
                    }
                    if (to->flow().wait_below(options_.window_bytes,
                                              std::chrono::milliseconds(100))) {
                        // Under the pool's lock, against cancel(): once cancel() returns, no
                        // chunk of this job reaches the client (the hub may reset it next).
                        std::lock_guard lock(mu_);
                        if (w.cancelled) {
                            throw snapshot_abort{protocol::error_code::unavailable, "cancelled"};
                        }
                        to->post_frames({frame::of(std::move(msg))});
                        break;
                    }
                    check();
                }
            }
            check();
            tx.commit();
            r.meta = std::move(*meta);
            break;
        }
    }
    // After the snapshot, a marker in the WAL: when the stream reaches it, it has passed every
    // transaction the snapshot could contain.
    pqxx::nontransaction(conn).exec_params("SELECT pg_logical_emit_message(false, 'pgpush', $1)",
                                           "sync:" + std::to_string(job.key));
    r.ok = true;
    return r;
}

} // namespace pgpush::push
