#pragma once

#include <chrono>
#include <string>

#include "cdc/pgoutput.hpp"

namespace pgpush::cdc {

// Microseconds between the Unix epoch and Postgres' (2000-01-01 00:00:00 UTC).
constexpr std::int64_t pg_epoch_offset_us = 946'684'800'000'000;

inline pg_timestamp to_pg_timestamp(std::chrono::system_clock::time_point t) {
    auto us = std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
    return us - pg_epoch_offset_us;
}

inline std::chrono::system_clock::time_point from_pg_timestamp(pg_timestamp t) {
    return std::chrono::system_clock::time_point(
        std::chrono::duration_cast<std::chrono::system_clock::duration>(
            std::chrono::microseconds(t + pg_epoch_offset_us)));
}

// RFC 3339 in UTC with microseconds: "2026-11-23T10:00:00.123456Z".
std::string format_rfc3339(pg_timestamp t);

// Appends the same, quoted, to a JSON buffer.
void append_rfc3339_json(std::string& out, pg_timestamp t);

} // namespace pgpush::cdc
