#pragma once

#include "push/engine.hpp"

namespace CLI {
class App;
}

namespace pgpush {

struct serve_options {
    push::serve_config config;
    std::string jwt_public_key_file;
    std::string jwt_jwks_file;
    int jwt_leeway_seconds = 30;
    int auth_timeout_seconds = 10;
    int status_interval_ms = 10'000;
    double log_retain_hours = 24;
    int heartbeat_interval_ms = 10'000;
    int log_sync_delay_ms = 0;
    double snapshot_timeout_seconds = 120;
    int startup_timeout_seconds = 0;
};

// `pgpush serve`: the engine (docs/protocol.md, docs/serve.md).
CLI::App* add_serve_command(CLI::App& app, serve_options& options);
int run_serve(serve_options& options);

} // namespace pgpush
