// An LD_PRELOAD library that makes file operations fail, for black-box tests of how pgpush meets a
// full disk, exhausted descriptors or a failing fsync. It applies faults only to files under the
// directory named by PGPUSH_FAULT_DIR (and to that directory itself), so the rest of the process
// (sockets, libpq, stderr) is untouched.
//
// Copies of such descriptors (dup, dup2, dup3, fcntl F_DUPFD) are followed. Only calls the program
// makes itself are seen: glibc's own stdio writes through an internal name, so fwrite is not.
//
// The faults are read from the file named by PGPUSH_FAULT_CONTROL, one `call=ERRNO` a line:
//
//     fdatasync=EIO      fdatasync of a file opened under the directory fails
//     fsync=EIO          fsync (of such a file, or of the directory) fails
//     write=ENOSPC       write, pwrite and pwrite64 fail, writing nothing
//     open=EMFILE        open/openat of a path under the directory fails
//     close=EIO          close closes, then reports the error
//
// ERRNO is a name (EIO, ENOSPC, EDQUOT, EMFILE, ENFILE, ENOMEM, EROFS, EACCES, EINTR, EAGAIN) or a
// number. An empty or missing file means no faults. The file is looked at (stat) on every call
// it could affect and read again when it changed, so a test switches faults on and off while the
// program runs; write it atomically (tests/support/fault_shim.hpp).
//
// No allocation and nothing that could open a file through these same functions: they run inside
// any call of the program, before main and on every thread.

// The fortified inline wrappers of open() would clash with the definitions below.
#undef _FORTIFY_SOURCE

#include <atomic>
#include <cerrno>
#include <cstdarg>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

namespace {

using open_fn = int (*)(const char*, int, ...);
using openat_fn = int (*)(int, const char*, int, ...);
using open2_fn = int (*)(const char*, int);
using write_fn = ssize_t (*)(int, const void*, size_t);
using pwrite_fn = ssize_t (*)(int, const void*, size_t, off_t);
using pwrite64_fn = ssize_t (*)(int, const void*, size_t, off64_t);
using sync_fn = int (*)(int);
using close_fn = int (*)(int);
using dup_fn = int (*)(int);
using dup2_fn = int (*)(int, int);
using dup3_fn = int (*)(int, int, int);
using fcntl_fn = int (*)(int, int, ...);

struct real_calls {
    open_fn open;
    open_fn open64;
    openat_fn openat;
    openat_fn openat64;
    open2_fn open_2;
    open2_fn open64_2;
    write_fn write;
    pwrite_fn pwrite;
    pwrite64_fn pwrite64;
    sync_fn fdatasync;
    sync_fn fsync;
    close_fn close;
    dup_fn dup;
    dup2_fn dup2;
    dup3_fn dup3;
    fcntl_fn fcntl;
    fcntl_fn fcntl64;
};

real_calls real;

enum fault_call { f_open, f_write, f_fdatasync, f_fsync, f_close, f_count };
const char* const call_names[f_count] = {"open", "write", "fdatasync", "fsync", "close"};

constexpr int max_fds = 1 << 16;
std::atomic<bool> tracked[max_fds]; // descriptors opened under the directory

char fault_dir[PATH_MAX];
std::size_t fault_dir_len = 0;
char control_path[PATH_MAX];
bool enabled = false;

pthread_once_t once = PTHREAD_ONCE_INIT;
pthread_mutex_t control_mu = PTHREAD_MUTEX_INITIALIZER;
struct stat control_seen;     // what the control file was when last read
bool control_present = false; // guarded by control_mu
std::atomic<int> faults[f_count];

template <typename F>
F next(const char* name) {
    return reinterpret_cast<F>(dlsym(RTLD_NEXT, name));
}

// Drops "." components and repeated slashes ("/a/./b//c" is "/a/b/c"), in place.
void tidy(char* p) {
    char* out = p;
    const char* in = p;
    while (*in) {
        if (in[0] == '/' && (in[1] == '/' || (in[1] == '.' && (in[2] == '/' || in[2] == '\0')))) {
            in += in[1] == '/' ? 1 : 2;
            continue;
        }
        *out++ = *in++;
    }
    *out = '\0';
    if (out == p) std::strcpy(p, "/");
}

// `path` relative to `dirfd` (AT_FDCWD: the working directory) as an absolute name, into
// `out` (PATH_MAX bytes). False when it does not fit or the base cannot be found.
bool absolute(int dirfd, const char* path, char* out) {
    int n = 0;
    if (path[0] == '/') {
        n = std::snprintf(out, PATH_MAX, "%s", path);
    } else {
        char base[PATH_MAX];
        if (dirfd == AT_FDCWD) {
            if (!getcwd(base, sizeof base)) return false;
        } else {
            char link[64];
            std::snprintf(link, sizeof link, "/proc/self/fd/%d", dirfd);
            const ssize_t len = ::readlink(link, base, sizeof base - 1);
            if (len < 0) return false;
            base[len] = '\0';
        }
        n = std::snprintf(out, PATH_MAX, "%s/%s", base, path);
    }
    if (n < 0 || n >= PATH_MAX) return false;
    tidy(out);
    return true;
}

void init() {
    real.open = next<open_fn>("open");
    real.open64 = next<open_fn>("open64");
    real.openat = next<openat_fn>("openat");
    real.openat64 = next<openat_fn>("openat64");
    real.open_2 = next<open2_fn>("__open_2");
    real.open64_2 = next<open2_fn>("__open64_2");
    real.write = next<write_fn>("write");
    real.pwrite = next<pwrite_fn>("pwrite");
    real.pwrite64 = next<pwrite64_fn>("pwrite64");
    real.fdatasync = next<sync_fn>("fdatasync");
    real.fsync = next<sync_fn>("fsync");
    real.close = next<close_fn>("close");
    real.dup = next<dup_fn>("dup");
    real.dup2 = next<dup2_fn>("dup2");
    real.dup3 = next<dup3_fn>("dup3");
    real.fcntl = next<fcntl_fn>("fcntl");
    real.fcntl64 = next<fcntl_fn>("fcntl64");
    const char* dir = std::getenv("PGPUSH_FAULT_DIR");
    const char* control = std::getenv("PGPUSH_FAULT_CONTROL");
    if (!dir || !*dir || !control || !*control) return;
    // The directory may not exist yet: its name is taken as given (symbolic links are not
    // followed, as the program does not follow them in the names it opens), made absolute.
    if (!absolute(AT_FDCWD, dir, fault_dir)) return;
    fault_dir_len = std::strlen(fault_dir);
    while (fault_dir_len > 1 && fault_dir[fault_dir_len - 1] == '/')
        fault_dir[--fault_dir_len] = '\0';
    if (std::snprintf(control_path, sizeof control_path, "%s", control) >=
        static_cast<int>(sizeof control_path)) {
        return;
    }
    enabled = true;
}

void ensure_init() {
    pthread_once(&once, init);
}

int parse_errno(const char* s) {
    static const struct {
        const char* name;
        int value;
    } names[] = {{"EIO", EIO},       {"ENOSPC", ENOSPC}, {"EDQUOT", EDQUOT}, {"EMFILE", EMFILE},
                 {"ENFILE", ENFILE}, {"ENOMEM", ENOMEM}, {"EROFS", EROFS},   {"EACCES", EACCES},
                 {"EINTR", EINTR},   {"EAGAIN", EAGAIN}, {"EPERM", EPERM},   {"EBADF", EBADF}};
    for (const auto& n : names) {
        if (std::strcmp(s, n.name) == 0) return n.value;
    }
    char* end = nullptr;
    const long v = std::strtol(s, &end, 10);
    return end != s && *end == '\0' && v > 0 ? static_cast<int>(v) : 0;
}

// Parses "call=ERRNO" lines into `out` (0: no fault).
void parse_control(const char* text, int* out) {
    for (int i = 0; i < f_count; ++i)
        out[i] = 0;
    const char* p = text;
    while (*p) {
        const char* eol = std::strchr(p, '\n');
        const std::size_t len = eol ? static_cast<std::size_t>(eol - p) : std::strlen(p);
        char line[128];
        if (len < sizeof line) {
            std::memcpy(line, p, len);
            line[len] = '\0';
            // Trim spaces and a trailing '\r'.
            std::size_t n = len;
            while (n > 0 && (line[n - 1] == ' ' || line[n - 1] == '\r' || line[n - 1] == '\t'))
                line[--n] = '\0';
            char* eq = std::strchr(line, '=');
            if (eq && line[0] != '#') {
                *eq = '\0';
                for (int i = 0; i < f_count; ++i) {
                    if (std::strcmp(line, call_names[i]) == 0) out[i] = parse_errno(eq + 1);
                }
            }
        }
        if (!eol) break;
        p = eol + 1;
    }
}

// Brings `faults` up to date with the control file when it changed since it was last read.
void refresh() {
    struct stat st;
    const bool present = ::stat(control_path, &st) == 0;
    pthread_mutex_lock(&control_mu);
    const bool changed =
        present != control_present ||
        (present && (st.st_ino != control_seen.st_ino || st.st_size != control_seen.st_size ||
                     st.st_mtim.tv_sec != control_seen.st_mtim.tv_sec ||
                     st.st_mtim.tv_nsec != control_seen.st_mtim.tv_nsec));
    if (changed) {
        int parsed[f_count] = {};
        if (present) {
            char text[4096];
            std::size_t got = 0;
            const int fd = real.open(control_path, O_RDONLY | O_CLOEXEC);
            if (fd >= 0) {
                for (;;) {
                    const ssize_t n = ::read(fd, text + got, sizeof text - 1 - got);
                    if (n <= 0) break;
                    got += static_cast<std::size_t>(n);
                }
                real.close(fd);
            }
            text[got] = '\0';
            parse_control(text, parsed);
        }
        for (int i = 0; i < f_count; ++i)
            faults[i].store(parsed[i]);
        control_present = present;
        if (present) control_seen = st;
    }
    pthread_mutex_unlock(&control_mu);
}

// The fault to inject for `call` now (0: none).
int fault(fault_call call) {
    refresh();
    return faults[call].load();
}

bool is_tracked(int fd) {
    return enabled && fd >= 0 && fd < max_fds && tracked[fd].load();
}

void track(int fd, bool on) {
    if (fd >= 0 && fd < max_fds) tracked[fd].store(on);
}

// Whether `path` (relative to `dirfd`) names the fault directory or something under it.
bool under_dir(int dirfd, const char* path) {
    if (!enabled || !path) return false;
    char full[PATH_MAX];
    if (!absolute(dirfd, path, full)) return false;
    if (std::strncmp(full, fault_dir, fault_dir_len) != 0) return false;
    const char after = full[fault_dir_len];
    return after == '\0' || after == '/';
}

// Opens through `call_real` unless a fault says otherwise; tracks what it opens under the
// directory.
template <typename Call>
int open_common(int dirfd, const char* path, Call call_real) {
    ensure_init();
    const bool ours = under_dir(dirfd, path);
    if (ours) {
        if (const int err = fault(f_open)) {
            errno = err;
            return -1;
        }
    }
    const int fd = call_real();
    if (fd >= 0) track(fd, ours);
    return fd;
}

// A copy of a descriptor is tracked as the original is (a shell redirects through dup2).
int copied(int from, int to) {
    if (to >= 0 && to != from) track(to, is_tracked(from));
    return to;
}

int fcntl_common(fcntl_fn call_real, int fd, int cmd, va_list ap) {
    // Every fcntl argument is an int, a long or a pointer: passed in one register either way.
    void* arg = va_arg(ap, void*);
    const int rc = call_real(fd, cmd, arg);
    if (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC) copied(fd, rc);
    return rc;
}

bool has_mode(int flags) {
    return (flags & O_CREAT) != 0 || (flags & O_TMPFILE) == O_TMPFILE;
}

ssize_t write_fault(int fd) {
    if (!is_tracked(fd)) return 0;
    return fault(f_write);
}

} // namespace

extern "C" {

int open(const char* path, int flags, ...) {
    mode_t mode = 0;
    if (has_mode(flags)) {
        va_list ap;
        va_start(ap, flags);
        mode = static_cast<mode_t>(va_arg(ap, int));
        va_end(ap);
    }
    return open_common(AT_FDCWD, path, [&] { return real.open(path, flags, mode); });
}

int open64(const char* path, int flags, ...) {
    mode_t mode = 0;
    if (has_mode(flags)) {
        va_list ap;
        va_start(ap, flags);
        mode = static_cast<mode_t>(va_arg(ap, int));
        va_end(ap);
    }
    return open_common(AT_FDCWD, path, [&] { return real.open64(path, flags, mode); });
}

int openat(int dirfd, const char* path, int flags, ...) {
    mode_t mode = 0;
    if (has_mode(flags)) {
        va_list ap;
        va_start(ap, flags);
        mode = static_cast<mode_t>(va_arg(ap, int));
        va_end(ap);
    }
    return open_common(dirfd, path, [&] { return real.openat(dirfd, path, flags, mode); });
}

int openat64(int dirfd, const char* path, int flags, ...) {
    mode_t mode = 0;
    if (has_mode(flags)) {
        va_list ap;
        va_start(ap, flags);
        mode = static_cast<mode_t>(va_arg(ap, int));
        va_end(ap);
    }
    return open_common(dirfd, path, [&] { return real.openat64(dirfd, path, flags, mode); });
}

int __open_2(const char* path, int flags) {
    return open_common(AT_FDCWD, path, [&] { return real.open_2(path, flags); });
}

int __open64_2(const char* path, int flags) {
    return open_common(AT_FDCWD, path, [&] { return real.open64_2(path, flags); });
}

ssize_t write(int fd, const void* buf, size_t n) {
    ensure_init();
    if (const auto err = write_fault(fd)) {
        errno = static_cast<int>(err);
        return -1;
    }
    return real.write(fd, buf, n);
}

ssize_t pwrite(int fd, const void* buf, size_t n, off_t offset) {
    ensure_init();
    if (const auto err = write_fault(fd)) {
        errno = static_cast<int>(err);
        return -1;
    }
    return real.pwrite(fd, buf, n, offset);
}

ssize_t pwrite64(int fd, const void* buf, size_t n, off64_t offset) {
    ensure_init();
    if (const auto err = write_fault(fd)) {
        errno = static_cast<int>(err);
        return -1;
    }
    return real.pwrite64(fd, buf, n, offset);
}

int fdatasync(int fd) {
    ensure_init();
    if (is_tracked(fd)) {
        if (const int err = fault(f_fdatasync)) {
            errno = err;
            return -1;
        }
    }
    return real.fdatasync(fd);
}

int fsync(int fd) {
    ensure_init();
    if (is_tracked(fd)) {
        if (const int err = fault(f_fsync)) {
            errno = err;
            return -1;
        }
    }
    return real.fsync(fd);
}

int close(int fd) {
    ensure_init();
    const bool ours = is_tracked(fd);
    if (ours) track(fd, false);
    const int rc = real.close(fd);
    if (ours && rc == 0) {
        if (const int err = fault(f_close)) {
            errno = err;
            return -1;
        }
    }
    return rc;
}

int dup(int fd) {
    ensure_init();
    return copied(fd, real.dup(fd));
}

int dup2(int fd, int to) {
    ensure_init();
    return copied(fd, real.dup2(fd, to));
}

int dup3(int fd, int to, int flags) {
    ensure_init();
    return copied(fd, real.dup3(fd, to, flags));
}

int fcntl(int fd, int cmd, ...) {
    ensure_init();
    va_list ap;
    va_start(ap, cmd);
    const int rc = fcntl_common(real.fcntl, fd, cmd, ap);
    va_end(ap);
    return rc;
}

int fcntl64(int fd, int cmd, ...) {
    ensure_init();
    va_list ap;
    va_start(ap, cmd);
    const int rc = fcntl_common(real.fcntl64 ? real.fcntl64 : real.fcntl, fd, cmd, ap);
    va_end(ap);
    return rc;
}

} // extern "C"
