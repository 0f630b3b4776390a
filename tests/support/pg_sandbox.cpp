// pg_sandbox: runs a command beside a throwaway PostgreSQL cluster.
//
//   pg_sandbox [--keep-going] -- COMMAND [ARGS...]
//
// Starts a cluster (temp dir, free port, wal_level=logical, loopback only), exports its URL as
// PGPUSH_DB and DATABASE_URL, runs COMMAND, and stops and deletes the cluster when COMMAND exits or
// this program is interrupted. Exits with COMMAND's status.

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <signal.h>
#include <string>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

#include "tests/support/pg_cluster.hpp"

namespace {
volatile sig_atomic_t child_pid = 0;
void forward(int sig) {
    if (child_pid > 0) ::kill(child_pid, sig);
}
} // namespace

int main(int argc, char** argv) {
    int first = 1;
    if (first < argc && std::strcmp(argv[first], "--") == 0) ++first;
    if (first >= argc) {
        std::fprintf(stderr, "usage: pg_sandbox -- COMMAND [ARGS...]\n");
        return 2;
    }
    try {
        pgpush::testing::pg_cluster pg;
        std::string url = pg.url();
        ::setenv("PGPUSH_DB", url.c_str(), 1);
        ::setenv("DATABASE_URL", url.c_str(), 1);
        std::fprintf(stderr, "pg_sandbox: PostgreSQL at %s (data in %s)\n", url.c_str(),
                     pg.data_dir().c_str());
        struct sigaction sa {};
        sa.sa_handler = forward;
        ::sigaction(SIGINT, &sa, nullptr);
        ::sigaction(SIGTERM, &sa, nullptr);
        pid_t pid = ::fork();
        if (pid == 0) {
            ::execvp(argv[first], argv + first);
            std::perror(argv[first]);
            _exit(127);
        }
        child_pid = pid;
        int status = 0;
        while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "pg_sandbox: %s\n", e.what());
        return 1;
    }
}
