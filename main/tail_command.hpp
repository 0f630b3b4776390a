#pragma once

#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace pgpush {

struct tail_options {
    std::string db;
    std::vector<std::string> tables;
    std::string slot;
    std::string publication;
    std::vector<std::string> channels;
    bool no_messages = false;
    std::string start;
    std::string endpos;
    int status_interval_ms = 10'000;
    std::string capture; // write the raw stream here (bench/ and fuzz seeds)
};

// `pgpush tail`: prints one JSON object per change per line. See docs/tail.md.
CLI::App* add_tail_command(CLI::App& app, tail_options& options);
int run_tail(const tail_options& options);

} // namespace pgpush
