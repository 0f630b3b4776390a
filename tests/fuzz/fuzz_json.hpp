#pragma once

// Arbitrary JSON values drawn from a fuzz input, for the structured fuzz targets (jwt_fuzz,
// protocol_fuzz): every JSON type, the numbers that overflow conversions, strings with the
// characters that need escaping or are multi-byte, and values the caller names as interesting
// (the right algorithm, a configured audience, a length at a limit). Strings are always valid
// UTF-8, so a value always serialises.

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fuzzer/FuzzedDataProvider.h>
#include <limits>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace pgpush::fuzz {

using nlohmann::json;

// A string of up to `max` characters from a small alphabet that covers what serialisers get
// wrong: quotes, backslashes, control characters, NUL, and 2-, 3- and 4-byte UTF-8.
inline std::string any_string(FuzzedDataProvider& in, std::size_t max = 24) {
    static const char* const pieces[] = {"a",
                                         "Z",
                                         "0",
                                         "-",
                                         ".",
                                         " ",
                                         "\"",
                                         "\\",
                                         "/",
                                         "\n",
                                         "\x01",
                                         "" /* NUL */,
                                         "\xc3\xa9",
                                         "\xe2\x82\xac",
                                         "\xf0\x9f\x98\x80",
                                         "=",
                                         "%"};
    std::string out;
    const auto n = in.ConsumeIntegralInRange<std::size_t>(0, max);
    for (std::size_t i = 0; i < n && in.remaining_bytes() > 0; ++i) {
        const auto k = in.ConsumeIntegralInRange<std::size_t>(0, std::size(pieces));
        if (k == std::size(pieces)) {
            out.push_back(static_cast<char>(in.ConsumeIntegralInRange<int>(0x20, 0x7e)));
        } else if (k == 11) {
            out.push_back('\0'); // the NUL entry (a C string cannot hold it)
        } else {
            out += pieces[k];
        }
    }
    return out;
}

// A number that stresses conversions: 64-bit bounds, beyond them, huge and tiny doubles.
inline json edge_number(FuzzedDataProvider& in) {
    switch (in.ConsumeIntegralInRange<int>(0, 13)) {
    case 0:
        return std::numeric_limits<std::int64_t>::max();
    case 1:
        return std::numeric_limits<std::int64_t>::min();
    case 2:
        return std::numeric_limits<std::uint64_t>::max();
    case 3:
        return 1e300;
    case 4:
        return -1e300;
    case 5:
        return std::numeric_limits<double>::max();
    case 6:
        return std::numeric_limits<double>::denorm_min();
    case 7:
        return 9007199254740993.0; // 2^53 + 1, not a double
    case 8:
        return 1e19; // just beyond int64, as a double
    case 9:
        return -0.0;
    case 10:
        return 0;
    case 11:
        return 0.5;
    case 12:
        return 9223372036854775808.0; // 2^63
    default:
        return -9223372036854775809.0;
    }
}

// Any JSON value. `interesting` supplies caller-specific values (may return a discarded value
// to decline). Nesting stops at `max_depth`.
template <typename Interesting>
json any_value(FuzzedDataProvider& in, Interesting&& interesting, int depth = 0,
               int max_depth = 3) {
    const int last = depth >= max_depth ? 10 : 12;
    switch (in.ConsumeIntegralInRange<int>(0, last)) {
    case 0:
        return nullptr;
    case 1:
        return in.ConsumeBool();
    case 2:
        return in.ConsumeIntegral<std::int64_t>();
    case 3:
        return in.ConsumeIntegral<std::uint64_t>();
    case 4: {
        const double d = in.ConsumeFloatingPoint<double>();
        return std::isfinite(d) ? json(d) : json(0.25);
    }
    case 5:
        return in.ConsumeIntegralInRange<int>(-3, 3);
    case 6:
        return edge_number(in);
    case 7:
        return any_string(in);
    case 8:
        return json::array();
    case 9:
        return json::object();
    case 10: {
        json v = interesting(in);
        return v.is_discarded() ? json("") : v;
    }
    case 11: {
        json a = json::array();
        const int n = in.ConsumeIntegralInRange<int>(0, 4);
        for (int i = 0; i < n; ++i)
            a.push_back(any_value(in, interesting, depth + 1, max_depth));
        return a;
    }
    default: {
        json o = json::object();
        const int n = in.ConsumeIntegralInRange<int>(0, 4);
        for (int i = 0; i < n; ++i)
            o[any_string(in, 8)] = any_value(in, interesting, depth + 1, max_depth);
        return o;
    }
    }
}

// Fails the fuzz run with a message (libFuzzer saves the input).
[[noreturn]] inline void fail(const char* what, const std::string& detail = {}) {
    std::fprintf(stderr, "property violated: %s\n%s\n", what, detail.c_str());
    std::abort();
}

} // namespace pgpush::fuzz
