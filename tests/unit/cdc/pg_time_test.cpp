#include "cdc/pg_time.hpp"

#include <gtest/gtest.h>

namespace pgpush::cdc {
namespace {

constexpr pg_timestamp us_per_day = 86'400'000'000;

TEST(pg_time, formats_rfc_3339_in_utc_with_microseconds) {
    struct {
        const char* name;
        pg_timestamp t;
        const char* expected;
    } cases[] = {
        {"postgres epoch", 0, "2000-01-01T00:00:00.000000Z"},
        {"one microsecond after", 1, "2000-01-01T00:00:00.000001Z"},
        {"one microsecond before", -1, "1999-12-31T23:59:59.999999Z"},
        {"one day before", -us_per_day, "1999-12-31T00:00:00.000000Z"},
        {"unix epoch", -pg_epoch_offset_us, "1970-01-01T00:00:00.000000Z"},
        {"just before unix epoch", -pg_epoch_offset_us - 1, "1969-12-31T23:59:59.999999Z"},
        {"a day before unix epoch", -pg_epoch_offset_us - us_per_day,
         "1969-12-31T00:00:00.000000Z"},
        {"moon landing", -960'867'740'000'000, "1969-07-20T20:17:40.000000Z"},
        {"1900 is not a leap year (before)", -3'150'576'000'000'001, "1900-02-28T23:59:59.999999Z"},
        {"1900 is not a leap year (after)", -3'150'576'000'000'000, "1900-03-01T00:00:00.000000Z"},
        {"2000 is a leap year", 5'097'600'000'000, "2000-02-29T00:00:00.000000Z"},
        {"1600 leap day", -12'617'679'476'999'996, "1600-02-29T01:02:03.000004Z"},
        {"2024 leap day", 762'525'296'789'012, "2024-02-29T12:34:56.789012Z"},
        {"known instant", 848'743'200'123'456, "2026-11-23T10:00:00.123456Z"},
    };
    for (const auto& c : cases)
        EXPECT_EQ(format_rfc3339(c.t), c.expected) << c.name;
}

TEST(pg_time, append_rfc3339_json_quotes_the_same_text) {
    std::string out = "x:";
    append_rfc3339_json(out, 848'743'200'123'456);
    EXPECT_EQ(out, "x:\"2026-11-23T10:00:00.123456Z\"");
}

TEST(pg_time, converts_to_and_from_system_clock) {
    using namespace std::chrono;
    const sys_days day = year{2026} / November / 23;
    const auto t = time_point_cast<system_clock::duration>(day + hours{10} + microseconds{123456});
    EXPECT_EQ(to_pg_timestamp(t), 848'743'200'123'456);
    EXPECT_EQ(from_pg_timestamp(848'743'200'123'456), t);
    EXPECT_EQ(to_pg_timestamp(system_clock::time_point{}), -pg_epoch_offset_us);
    EXPECT_EQ(to_pg_timestamp(from_pg_timestamp(-1)), -1);
}

} // namespace
} // namespace pgpush::cdc
