#pragma once

#include <string>

namespace pgpush {

// Logs go to stderr (stdout belongs to `tail`'s output), one line each, UTC timestamps.
// Throws std::invalid_argument for an unknown level name.
void configure_logging(const std::string& level);

} // namespace pgpush
