#pragma once

// A throwaway PostgreSQL cluster for integration tests: initdb in a fresh temp dir, a free port on
// 127.0.0.1, wal_level=logical, and always stopped. A reaper process stops and deletes it when
// this process ends, however it ends (kill -9 included). When run as root, the server runs as the
// `postgres` user, since PostgreSQL refuses to run as root.

#include <chrono>
#include <string>
#include <sys/types.h>
#include <utility>
#include <vector>

namespace pgpush::testing {

struct cluster_options {
    // Extra postgresql.conf lines, e.g. {"wal_level", "replica"}; later ones win.
    std::vector<std::pair<std::string, std::string>> settings;
};

class pg_cluster {
public:
    explicit pg_cluster(cluster_options options = {});
    ~pg_cluster();
    pg_cluster(const pg_cluster&) = delete;
    pg_cluster& operator=(const pg_cluster&) = delete;

    int port() const { return port_; }
    const std::string& data_dir() const { return data_dir_; }
    const std::string& log_file() const { return log_file_; }

    // postgresql://user@127.0.0.1:port/db
    std::string url(const std::string& db = "postgres", const std::string& user = "postgres") const;

    // pg_ctl stop/start/restart; mode is smart, fast or immediate.
    void stop(const std::string& mode = "fast");
    void start();
    void restart(const std::string& mode = "fast");

    // Runs one SQL string on a fresh connection (superuser); throws with the server's message.
    void exec(const std::string& sql, const std::string& db = "postgres") const;
    // First column of the first row, or "" when there is none / it is NULL.
    std::string query_value(const std::string& sql, const std::string& db = "postgres") const;

    // The directory the PostgreSQL binaries live in ($PGPUSH_PG_BINDIR or Debian's 15).
    static std::string bindir();

private:
    void pg_ctl(const std::vector<std::string>& args) const;

    std::string root_; // temp dir holding data/ and the log
    std::string data_dir_;
    std::string log_file_;
    int port_ = 0;
    int reaper_pipe_ = -1;
    pid_t reaper_ = -1;
};

} // namespace pgpush::testing
