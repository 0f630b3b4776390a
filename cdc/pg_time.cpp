#include "cdc/pg_time.hpp"

#include <fmt/format.h>

namespace pgpush::cdc {

std::string format_rfc3339(pg_timestamp t) {
    using namespace std::chrono;
    const std::int64_t unix_us = t + pg_epoch_offset_us;
    // Floor division so instants before 1970 land on the right day.
    std::int64_t days = unix_us / 86'400'000'000;
    std::int64_t rem = unix_us % 86'400'000'000;
    if (rem < 0) {
        rem += 86'400'000'000;
        days -= 1;
    }
    const year_month_day ymd{sys_days{std::chrono::days{days}}};
    const auto secs = rem / 1'000'000;
    return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z", static_cast<int>(ymd.year()),
                       static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                       secs / 3600, (secs / 60) % 60, secs % 60, rem % 1'000'000);
}

void append_rfc3339_json(std::string& out, pg_timestamp t) {
    out.push_back('"');
    out.append(format_rfc3339(t));
    out.push_back('"');
}

} // namespace pgpush::cdc
