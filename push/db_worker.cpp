#include "push/db_worker.hpp"

#include <stdexcept>

#include <spdlog/spdlog.h>

namespace pgpush::push {

db_worker::db_worker(std::string conninfo, std::string name)
    : conninfo_(std::move(conninfo)), name_(std::move(name)) {
    thread_ = std::thread([this] { run(); });
}

db_worker::~db_worker() {
    stop();
}

void db_worker::post(job j, failure on_error) {
    {
        std::lock_guard lock(mu_);
        if (!stopping_) {
            jobs_.emplace_back(std::move(j), std::move(on_error));
            cv_.notify_one();
            return;
        }
    }
    if (on_error) on_error(std::runtime_error("the engine is stopping"));
}

void db_worker::stop() {
    std::deque<std::pair<job, failure>> dropped;
    {
        std::lock_guard lock(mu_);
        if (stopping_ && !thread_.joinable()) return;
        stopping_ = true;
        dropped.swap(jobs_);
        if (running_) running_->cancel();
    }
    cv_.notify_all();
    for (auto& [j, on_error] : dropped) {
        if (on_error) on_error(std::runtime_error("the engine is stopping"));
    }
    if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
}

void db_worker::run() {
    std::unique_ptr<cdc::db::connection> conn;
    for (;;) {
        std::pair<job, failure> next;
        {
            std::unique_lock lock(mu_);
            cv_.wait(lock, [&] { return stopping_ || !jobs_.empty(); });
            if (stopping_) return;
            next = std::move(jobs_.front());
            jobs_.pop_front();
        }
        try {
            if (!conn || !conn->is_open()) {
                conn.reset();
                conn = std::make_unique<cdc::db::connection>(conninfo_, "pgpush-" + name_);
            }
            {
                std::lock_guard lock(mu_);
                running_ = conn.get();
            }
            next.first(*conn);
        } catch (const std::exception& e) {
            if (cdc::db::is_transient(e)) conn.reset();
            try {
                if (next.second) next.second(e);
            } catch (const std::exception& inner) {
                spdlog::error("{} worker: a job's error handler failed: {}", name_, inner.what());
            }
        }
        std::lock_guard lock(mu_);
        running_ = nullptr;
    }
}

} // namespace pgpush::push
