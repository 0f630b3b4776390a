#pragma once

#include <string>

namespace CLI {
class App;
}

namespace pgpush {

struct check_options {
    std::string file;
    std::string db;
};

// `pgpush check rules.yaml [--db URL]`: every problem as file:line:col: message; exit 1 if any.
CLI::App* add_check_command(CLI::App& app, check_options& options);
int run_check(const check_options& options);

} // namespace pgpush
