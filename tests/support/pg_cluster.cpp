#include "tests/support/pg_cluster.hpp"

#include <arpa/inet.h>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sstream>
#include <stdexcept>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <libpq-fe.h>

namespace pgpush::testing {

namespace {

struct server_user {
    uid_t uid;
    gid_t gid;
    bool drop; // we are root: run server processes as this user
};

server_user the_server_user() {
    if (::geteuid() != 0) return {::getuid(), ::getgid(), false};
    const passwd* pw = ::getpwnam("postgres");
    if (pw == nullptr) {
        throw std::runtime_error("running as root but there is no \"postgres\" user to run "
                                 "PostgreSQL as (install postgresql-15)");
    }
    return {pw->pw_uid, pw->pw_gid, true};
}

// In a forked child: become the server user. Only async-signal-safe calls.
void become(const server_user& u) {
    if (!u.drop) return;
    if (::setgroups(0, nullptr) != 0 || ::setgid(u.gid) != 0 || ::setuid(u.uid) != 0) _exit(126);
}

std::vector<char*> c_argv(std::vector<std::string>& args) {
    std::vector<char*> v;
    for (auto& a : args)
        v.push_back(a.data());
    v.push_back(nullptr);
    return v;
}

// Runs a command as the server user; returns its exit status and captures its output.
int run(std::vector<std::string> args, const server_user& u, std::string& output) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
    auto argv = c_argv(args);
    pid_t pid = ::fork();
    if (pid < 0) throw std::runtime_error("fork failed");
    if (pid == 0) {
        ::dup2(fds[1], 1);
        ::dup2(fds[1], 2);
        become(u);
        ::execv(argv[0], argv.data());
        _exit(127);
    }
    ::close(fds[1]);
    char buf[4096];
    ssize_t n;
    while ((n = ::read(fds[0], buf, sizeof buf)) > 0)
        output.append(buf, static_cast<std::size_t>(n));
    ::close(fds[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int free_port() {
    int s = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    socklen_t len = sizeof a;
    if (::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
        ::close(s);
        throw std::runtime_error("cannot find a free port");
    }
    ::close(s);
    return ntohs(a.sin_port);
}

std::string read_file(const std::string& path) {
    std::ifstream f(path);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

std::string tail_of(const std::string& s, std::size_t n = 2000) {
    return s.size() <= n ? s : s.substr(s.size() - n);
}

} // namespace

std::string pg_cluster::bindir() {
    if (const char* d = std::getenv("PGPUSH_PG_BINDIR"); d && *d) return d;
    return "/usr/lib/postgresql/15/bin";
}

pg_cluster::pg_cluster(cluster_options options) {
    const auto user = the_server_user();
    const char* tmp = std::getenv("TMPDIR");
    std::string templ = std::string(tmp && *tmp ? tmp : "/tmp") + "/pgpush-pg-XXXXXX";
    if (::mkdtemp(templ.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    root_ = templ;
    data_dir_ = root_ + "/data";
    log_file_ = root_ + "/postgres.log";
    if (user.drop && ::chown(root_.c_str(), user.uid, user.gid) != 0) {
        throw std::runtime_error("chown " + root_ + " failed");
    }

    // The reaper: blocks reading a pipe whose only writer is this process. When we close it (the
    // destructor) or die, it stops the server and deletes the directory. Its own session keeps
    // it clear of a Ctrl-C aimed at the test.
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
    std::vector<std::string> reaper_args = {
        "/bin/sh",
        "-c",
        "trap '' INT TERM HUP; read -r _; \"$0\" -D \"$1\" -m immediate -w stop >/dev/null 2>&1; "
        "rm -rf \"$2\"",
        bindir() + "/pg_ctl",
        data_dir_,
        root_};
    auto argv = c_argv(reaper_args);
    reaper_ = ::fork();
    if (reaper_ < 0) throw std::runtime_error("fork failed");
    if (reaper_ == 0) {
        ::setsid();
        ::dup2(fds[0], 0);
        int devnull = ::open("/dev/null", O_WRONLY);
        ::dup2(devnull, 1);
        ::dup2(devnull, 2);
        become(user);
        ::execv(argv[0], argv.data());
        _exit(127);
    }
    ::close(fds[0]);
    reaper_pipe_ = fds[1];

    std::string out;
    if (run({bindir() + "/initdb", "-D", data_dir_, "-U", "postgres", "--auth=trust", "-E", "UTF8",
             "--no-locale", "--no-sync"},
            user, out) != 0) {
        throw std::runtime_error("initdb failed: " + tail_of(out));
    }
    for (int attempt = 0;; ++attempt) {
        port_ = free_port();
        {
            std::ofstream conf(data_dir_ + "/postgresql.auto.conf", std::ios::trunc);
            conf << "port = " << port_ << "\n"
                 << "listen_addresses = '127.0.0.1'\n"
                 << "unix_socket_directories = '" << root_ << "'\n"
                 << "wal_level = logical\n"
                 << "max_wal_senders = 20\n"
                 << "max_replication_slots = 20\n"
                 << "max_connections = 100\n"
                 << "shared_buffers = 64MB\n"
                 << "fsync = off\n"
                 << "full_page_writes = off\n"
                 << "log_min_messages = warning\n";
            for (const auto& [k, v] : options.settings)
                conf << k << " = '" << v << "'\n";
        }
        if (user.drop) {
            if (::chown((data_dir_ + "/postgresql.auto.conf").c_str(), user.uid, user.gid) != 0) {
                throw std::runtime_error("chown postgresql.auto.conf failed");
            }
        }
        try {
            start();
            return;
        } catch (const std::exception& e) {
            bool port_taken = read_file(log_file_).find("could not bind") != std::string::npos;
            if (!port_taken || attempt >= 5) throw;
        }
    }
}

pg_cluster::~pg_cluster() {
    if (reaper_pipe_ >= 0) ::close(reaper_pipe_);
    if (reaper_ > 0) {
        int status = 0;
        ::waitpid(reaper_, &status, 0);
    }
}

std::string pg_cluster::url(const std::string& db, const std::string& user) const {
    return "postgresql://" + user + "@127.0.0.1:" + std::to_string(port_) + "/" + db;
}

void pg_cluster::pg_ctl(const std::vector<std::string>& args) const {
    std::vector<std::string> full = {
        bindir() + "/pg_ctl", "-D", data_dir_, "-l", log_file_, "-w", "-t", "120"};
    full.insert(full.end(), args.begin(), args.end());
    std::string out;
    if (run(full, the_server_user(), out) != 0) {
        throw std::runtime_error("pg_ctl " + args.back() + " failed: " + tail_of(out) +
                                 "\nserver log:\n" + tail_of(read_file(log_file_)));
    }
}

void pg_cluster::start() {
    pg_ctl({"start"});
}
void pg_cluster::stop(const std::string& mode) {
    pg_ctl({"-m", mode, "stop"});
}
void pg_cluster::restart(const std::string& mode) {
    pg_ctl({"-m", mode, "restart"});
}

namespace {

struct conn_guard {
    PGconn* c;
    ~conn_guard() { PQfinish(c); }
};
struct result_guard {
    PGresult* r;
    ~result_guard() { PQclear(r); }
};

} // namespace

void pg_cluster::exec(const std::string& sql, const std::string& db) const {
    query_value(sql, db);
}

std::string pg_cluster::query_value(const std::string& sql, const std::string& db) const {
    conn_guard c{PQconnectdb(url(db).c_str())};
    if (PQstatus(c.c) != CONNECTION_OK) {
        throw std::runtime_error("connect: " + std::string(PQerrorMessage(c.c)));
    }
    result_guard r{PQexec(c.c, sql.c_str())};
    auto st = PQresultStatus(r.r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        throw std::runtime_error(sql.substr(0, 200) + ": " + PQresultErrorMessage(r.r));
    }
    if (st == PGRES_TUPLES_OK && PQntuples(r.r) > 0 && !PQgetisnull(r.r, 0, 0)) {
        return PQgetvalue(r.r, 0, 0);
    }
    return "";
}

} // namespace pgpush::testing
