#include "push/snapshot_pool.hpp"

#include <algorithm>
#include <charconv>

#include <pqxx/pqxx>
#include <spdlog/spdlog.h>

#include "cdc/catalog_loader.hpp"
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

struct worker_state {
    std::unique_ptr<pqxx::connection> conn;
    cdc::type_catalog types;
    std::unique_ptr<cdc::catalog_loader> loader;
};

snapshot_pool::snapshot_pool(std::string conninfo, std::size_t threads, metrics& m,
                             std::size_t chunk_rows, std::size_t window_bytes)
    : conninfo_(std::move(conninfo)), metrics_(m), chunk_rows_(chunk_rows),
      window_bytes_(window_bytes) {
    for (std::size_t i = 0; i < std::max<std::size_t>(1, threads); ++i)
        threads_.emplace_back([this] { run(); });
}

snapshot_pool::~snapshot_pool() {
    {
        std::lock_guard lock(mu_);
        stopping_ = true;
        for (auto& j : jobs_)
            *j.cancelled = true;
    }
    cv_.notify_all();
    for (auto& t : threads_)
        t.join();
}

void snapshot_pool::submit(snapshot_job job) {
    {
        std::lock_guard lock(mu_);
        jobs_.push_back(std::move(job));
    }
    cv_.notify_one();
}

void snapshot_pool::run() {
    worker_state w;
    while (true) {
        snapshot_job job;
        {
            std::unique_lock lock(mu_);
            cv_.wait(lock, [&] { return stopping_ || !jobs_.empty(); });
            if (stopping_) return;
            job = std::move(jobs_.front());
            jobs_.pop_front();
        }
        ++metrics_.snapshots_running;
        snapshot_result r;
        try {
            r = take(job, w);
        } catch (const pqxx::broken_connection& e) {
            w.conn.reset();
            r = {job.key,
                 false,
                 protocol::error_code::unavailable,
                 "the database is unreachable; try again",
                 {},
                 0};
        } catch (const std::exception& e) {
            w.conn.reset();
            spdlog::warn("snapshot for subscription {} failed: {}", job.key, e.what());
            r = {job.key,
                 false,
                 protocol::error_code::unavailable,
                 std::string("snapshot failed: ") + e.what(),
                 {},
                 0};
        }
        --metrics_.snapshots_running;
        if (job.done) job.done(std::move(r));
    }
}

snapshot_result snapshot_pool::take(snapshot_job& job, worker_state& w) {
    snapshot_result r;
    r.key = job.key;
    if (!w.conn || !w.conn->is_open()) {
        w.conn = std::make_unique<pqxx::connection>(conninfo_);
        // The output settings the replication stream pins, so snapshot rows and streamed rows are
        // the same JSON.
        pqxx::nontransaction(*w.conn).exec(
            "SET DateStyle = ISO; SET TimeZone = 'UTC'; SET IntervalStyle = iso_8601; "
            "SET extra_float_digits = 3; SET bytea_output = hex; SET application_name = "
            "'pgpush-snapshot'");
        w.loader = std::make_unique<cdc::catalog_loader>(conninfo_);
    }
    if (job.rows) {
        std::vector<cdc::oid> missing;
        for (auto t : job.column_types) {
            for (auto m : w.types.missing(t))
                missing.push_back(m);
        }
        if (!missing.empty()) w.loader->load(w.types, missing);
        ++metrics_.snapshots;
        for (int attempt = 0;; ++attempt) {
            if (*job.cancelled) return r;
            pqxx::transaction<pqxx::repeatable_read, pqxx::read_only> tx(*w.conn);
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
            auto to = job.to.lock();
            while (to && !*job.cancelled) {
                auto rows =
                    tx.exec("FETCH " + std::to_string(chunk_rows_) + " FROM pgpush_snapshot");
                if (rows.empty()) break;
                r.rows += rows.size();
                if (r.rows > job.max_rows) {
                    r.code = protocol::error_code::snapshot_too_large;
                    r.message = "the result has more than " + std::to_string(job.max_rows) +
                                " rows: narrow the query";
                    return r;
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
                // Pace the snapshot to the client: never more than a window ahead of it.
                while (!to->flow().wait_below(window_bytes_, std::chrono::milliseconds(200))) {
                    if (*job.cancelled || to->flow().closed) break;
                }
                to->deliver({frame::of(std::move(msg))});
            }
            if (*job.cancelled) return r;
            tx.commit();
            r.meta = std::move(*meta);
            break;
        }
    }
    // After the snapshot, a marker in the WAL: when the stream reaches it, it has passed every
    // transaction the snapshot could contain.
    pqxx::nontransaction(*w.conn).exec_params("SELECT pg_logical_emit_message(false, 'pgpush', $1)",
                                              "sync:" + std::to_string(job.key));
    r.ok = true;
    return r;
}

} // namespace pgpush::push
