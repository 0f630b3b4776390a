#include "main/logging.hpp"

#include <stdexcept>

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

namespace pgpush {

void configure_logging(const std::string& level) {
    auto parsed = spdlog::level::from_str(level);
    if (parsed == spdlog::level::off && level != "off") {
        throw std::invalid_argument("unknown log level \"" + level +
                                    "\" (trace, debug, info, warn, error, critical, off)");
    }
    auto logger = spdlog::stderr_logger_st("pgpush");
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%fZ %l %v", spdlog::pattern_time_type::utc);
    logger->set_level(parsed);
    logger->flush_on(spdlog::level::trace);
    spdlog::set_default_logger(logger);
}

} // namespace pgpush
