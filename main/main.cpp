// pgpush: realtime pushes from PostgreSQL. This file only parses flags and wires modules.

#include <cstdio>
#include <exception>

#include <CLI/CLI.hpp>

#include "main/check_command.hpp"
#include "main/logging.hpp"
#include "main/serve_command.hpp"
#include "main/tail_command.hpp"

int main(int argc, char** argv) {
    CLI::App app{"pgpush: pushes PostgreSQL changes to subscribers in realtime"};
    app.require_subcommand(1);
    std::string log_level = "info";
    app.add_option("--log-level", log_level, "trace, debug, info, warn, error, off")
        ->envname("PGPUSH_LOG_LEVEL")
        ->capture_default_str();

    pgpush::tail_options tail;
    CLI::App* tail_cmd = pgpush::add_tail_command(app, tail);
    pgpush::check_options check;
    CLI::App* check_cmd = pgpush::add_check_command(app, check);
    pgpush::serve_options serve;
    CLI::App* serve_cmd = pgpush::add_serve_command(app, serve);

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    }
    try {
        pgpush::configure_logging(log_level);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "pgpush: bad_option: %s\n", e.what());
        return 2;
    }
    if (*tail_cmd) return pgpush::run_tail(tail);
    if (*check_cmd) return pgpush::run_check(check);
    if (*serve_cmd) return pgpush::run_serve(serve);
    return 2;
}
