// Fuzzes the text-to-JSON conversion of column values and the JSON minifier.
//
// Input: first byte picks a type (built-in scalars, arrays, a composite, a domain), the rest is
// the value's text. Properties: the output is always valid JSON (checked by re-minifying it,
// which must succeed and change nothing), and the minifier agrees with nlohmann::json on every
// document nlohmann accepts.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include <nlohmann/json.hpp>

#include "cdc/json_writer.hpp"
#include "cdc/value_json.hpp"

using namespace pgpush::cdc;

namespace {

const type_catalog& catalog() {
    static const type_catalog c = [] {
        type_catalog t;
        t.put(type_info{90001, "pair", type_kind::composite, 0, ',', {{"x", 23}, {"label", 25}}});
        t.put(type_info{90002, "_pair", type_kind::array, 90001, ',', {}});
        t.put(type_info{90003, "posint", type_kind::domain, 23, ',', {}});
        t.put(type_info{90004,
                        "nested",
                        type_kind::composite,
                        0,
                        ',',
                        {{"p", 90001}, {"tags", 1007}, {"doc", 3802}}});
        return t;
    }();
    return c;
}

constexpr oid types[] = {16,    20,    21,    23,    25,   114,  700,  701,  1007, 1009,
                         1016,  1020,  1022,  1114,  1184, 1185, 1231, 1700, 3802, 3807,
                         90001, 90002, 90003, 90004, 17,   1082, 2950, 99999};

void require_valid_json(const std::string& s) {
    std::string check;
    if (!json::append_minified(check, s) || check != s) std::abort();
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);

    std::string out;
    append_value_json(out, catalog(), types[data[0] % std::size(types)], text);
    require_valid_json(out);

    out.clear();
    json::append_string(out, text);
    require_valid_json(out);
    if (!nlohmann::json::accept(out)) std::abort(); // escaped strings are always valid UTF-8

    out.clear();
    const bool ours = json::append_minified(out, text);
    if (ours) require_valid_json(out);
    // nlohmann stops reading at a NUL byte, so it is no oracle for text containing one.
    if (text.find('\0') == std::string_view::npos && nlohmann::json::accept(text)) {
        if (!ours) std::abort();
        if (nlohmann::json::parse(text) != nlohmann::json::parse(out)) std::abort();
    }
    return 0;
}
