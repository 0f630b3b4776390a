#pragma once

// What the subcommands share: how a command reports a failure and exits. The engine and the
// libraries throw; only main/ prints a one-line error with a stable code and picks the exit code.

#include <string>
#include <string_view>

namespace pgpush {

// Prints "pgpush <command>: <code>: <message>" to stderr (after flushing the log) and returns
// `exit_code`, for `return fail(...)` from a command.
int fail(std::string_view command, std::string_view code, const std::string& message,
         int exit_code);

// The same, then exits at once (for code paths that cannot return to main).
[[noreturn]] void die(std::string_view command, std::string_view code, const std::string& message,
                      int exit_code = 1);

// The whole file; throws std::runtime_error naming it when it cannot be read.
std::string read_file(const std::string& path);

} // namespace pgpush
