#include "main/common.hpp"

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include <spdlog/spdlog.h>

namespace pgpush {

int fail(std::string_view command, std::string_view code, const std::string& message,
         int exit_code) {
    spdlog::default_logger()->flush();
    std::fprintf(stderr, "pgpush %.*s: %.*s: %s\n", static_cast<int>(command.size()),
                 command.data(), static_cast<int>(code.size()), code.data(), message.c_str());
    return exit_code;
}

void die(std::string_view command, std::string_view code, const std::string& message,
         int exit_code) {
    std::exit(fail(command, code, message, exit_code));
}

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error("cannot read " + path);
    std::stringstream ss;
    ss << in.rdbuf();
    if (in.bad()) throw std::runtime_error("cannot read " + path);
    return ss.str();
}

} // namespace pgpush
