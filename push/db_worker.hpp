#pragma once

// A thread that runs database jobs one after another on its own connection, so that what may
// block (DDL waiting behind a long transaction, a catalog lookup while Postgres is down) never
// blocks an event loop. Jobs post their results back to whoever asked (Redis' bio.c: slow calls
// go to a worker, never the event loop).

#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "cdc/db.hpp"

namespace pgpush::push {

class db_worker {
public:
    using job = std::function<void(cdc::db::connection&)>;
    // Runs instead of the job when it throws or no connection can be made (on the worker thread).
    using failure = std::function<void(const std::exception&)>;

    db_worker(std::string conninfo, std::string name);
    ~db_worker(); // stop()
    db_worker(const db_worker&) = delete;
    db_worker& operator=(const db_worker&) = delete;

    // Queues `j`. A connection is made (again) when there is none or the last one broke.
    void post(job j, failure on_error);

    // Cancels the statement running now, drops queued jobs (their on_error hears "stopping") and
    // joins the thread. Idempotent.
    void stop();

    const std::string& name() const { return name_; }

private:
    void run();

    std::string conninfo_;
    std::string name_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<std::pair<job, failure>> jobs_;
    bool stopping_ = false;
    cdc::db::connection* running_ = nullptr; // the connection a job is using now (for cancel)
    std::thread thread_;
};

} // namespace pgpush::push
