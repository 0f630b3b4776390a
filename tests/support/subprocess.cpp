#include "tests/support/subprocess.hpp"

#include <cstdlib>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdexcept>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

namespace pgpush::testing {

using clock = std::chrono::steady_clock;

std::string pgpush_binary() {
    return PGPUSH_BINARY;
}

subprocess::subprocess(std::vector<std::string> argv,
                       std::vector<std::pair<std::string, std::string>> env,
                       subprocess_limits limits) {
    int out[2], err[2];
    if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) {
        throw std::runtime_error("pipe failed");
    }
    std::vector<char*> args;
    for (auto& a : argv)
        args.push_back(a.data());
    args.push_back(nullptr);
    const pid_t parent = ::getpid();
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {
        // Die with the test, and do not outlive a parent that is already gone.
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (::getppid() != parent) _exit(127);
        ::dup2(out[1], 1);
        ::dup2(err[1], 2);
        if (limits.open_files) {
            ::close_range(3, ~0U, 0);
            const rlimit r{*limits.open_files, *limits.open_files};
            if (::setrlimit(RLIMIT_NOFILE, &r) != 0) _exit(126);
        }
        for (const auto& [k, v] : env)
            ::setenv(k.c_str(), v.c_str(), 1);
        ::execv(args[0], args.data());
        _exit(127);
    }
    ::close(out[1]);
    ::close(err[1]);
    out_ = out[0];
    err_ = err[0];
}

subprocess::~subprocess() {
    if (!status_) {
        ::kill(pid_, SIGKILL);
        int st = 0;
        ::waitpid(pid_, &st, 0);
    }
    if (out_ >= 0) ::close(out_);
    if (err_ >= 0) ::close(err_);
}

bool subprocess::pump(std::chrono::milliseconds timeout) {
    pollfd fds[2];
    int n = 0;
    if (out_ >= 0) fds[n++] = {out_, POLLIN, 0};
    if (err_ >= 0) fds[n++] = {err_, POLLIN, 0};
    if (n == 0) return false;
    int r = ::poll(fds, static_cast<nfds_t>(n), static_cast<int>(timeout.count()));
    if (r <= 0) return false;
    for (int i = 0; i < n; ++i) {
        if (fds[i].revents == 0) continue;
        char buf[65536];
        ssize_t got = ::read(fds[i].fd, buf, sizeof buf);
        bool is_out = fds[i].fd == out_;
        if (got <= 0) {
            ::close(fds[i].fd);
            (is_out ? out_ : err_) = -1;
            continue;
        }
        if (is_out) {
            out_buf_.append(buf, static_cast<std::size_t>(got));
        } else {
            err_all_.append(buf, static_cast<std::size_t>(got));
        }
    }
    return true;
}

std::optional<std::string> subprocess::read_line(std::chrono::milliseconds timeout) {
    const auto deadline = clock::now() + timeout;
    while (true) {
        if (auto nl = out_buf_.find('\n'); nl != std::string::npos) {
            std::string line = out_buf_.substr(0, nl);
            out_buf_.erase(0, nl + 1);
            return line;
        }
        if (out_ < 0) return std::nullopt;
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now());
        if (left.count() <= 0) return std::nullopt;
        pump(left);
    }
}

bool subprocess::wait_for_stderr(const std::string& needle, int count,
                                 std::chrono::milliseconds timeout) {
    const auto deadline = clock::now() + timeout;
    while (true) {
        int seen = 0;
        for (auto at = err_all_.find(needle); at != std::string::npos;
             at = err_all_.find(needle, at + needle.size())) {
            ++seen;
        }
        if (seen >= count) return true;
        if (err_ < 0) return false;
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now());
        if (left.count() <= 0) return false;
        pump(left);
    }
}

void subprocess::signal(int sig) {
    ::kill(pid_, sig);
}

std::optional<int> subprocess::wait(std::chrono::milliseconds timeout) {
    if (status_) return status_;
    const auto deadline = clock::now() + timeout;
    while (true) {
        int st = 0;
        pid_t r = ::waitpid(pid_, &st, WNOHANG);
        if (r == pid_) {
            while (pump(std::chrono::milliseconds(0))) {
            }
            status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
            return status_;
        }
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now());
        if (left.count() <= 0) return std::nullopt;
        // Keep the pipes drained so the child never blocks writing; poll wakes on output or EOF.
        if (!pump(std::min(left, std::chrono::milliseconds(50))) && out_ < 0 && err_ < 0) {
            // Both pipes closed: the child is exiting; waitpid above will see it.
            ::usleep(1000);
        }
    }
}

} // namespace pgpush::testing
