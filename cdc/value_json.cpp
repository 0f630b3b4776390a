#include "cdc/value_json.hpp"

#include <array>
#include <charconv>
#include <cmath>

#include "cdc/json_writer.hpp"

namespace pgpush::cdc {

namespace {

// Arrays of composites of arrays... nest; Postgres bounds it, this bounds a hostile catalog.
constexpr int max_depth = 16;

bool is_digit(char c) {
    return c >= '0' && c <= '9';
}

struct decimal {
    bool negative = false;
    std::string digits; // no leading or trailing zeros; empty for zero
    int exponent = 0;   // value = 0.digits * 10^exponent
    bool operator==(const decimal&) const = default;
};

// Normalises a decimal number in JSON/Postgres syntax ("-012.3400", "1.5e-05") so that two
// spellings of the same value compare equal.
decimal normalise(std::string_view s) {
    decimal d;
    std::size_t i = 0;
    if (i < s.size() && (s[i] == '-' || s[i] == '+')) d.negative = s[i++] == '-';
    int point = -1;
    int count = 0;
    for (; i < s.size(); ++i) {
        if (is_digit(s[i])) {
            d.digits.push_back(s[i]);
            ++count;
        } else if (s[i] == '.') {
            point = count;
        } else {
            break;
        }
    }
    int exp10 = 0;
    if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
        std::string_view e = s.substr(i + 1);
        if (!e.empty() && e[0] == '+') e.remove_prefix(1);
        std::from_chars(e.data(), e.data() + e.size(), exp10);
    }
    d.exponent = (point < 0 ? count : point) + exp10;
    std::size_t lead = d.digits.find_first_not_of('0');
    if (lead == std::string::npos) return decimal{}; // zero, whatever its sign or scale
    d.digits.erase(0, lead);
    d.exponent -= static_cast<int>(lead);
    d.digits.erase(d.digits.find_last_not_of('0') + 1);
    return d;
}

void append_raw_or_string(std::string& out, std::string_view text, bool ok) {
    if (ok) {
        out.append(text);
    } else {
        json::append_string(out, text);
    }
}

// "YYYY-MM-DD HH:MM:SS" at the start of `s`.
bool iso_datetime_prefix(std::string_view s) {
    if (s.size() < 19) return false;
    for (int i : {0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18}) {
        if (!is_digit(s[static_cast<std::size_t>(i)])) return false;
    }
    return s[4] == '-' && s[7] == '-' && s[10] == ' ' && s[13] == ':' && s[16] == ':';
}

// Index past an optional ".ffffff" fraction at s[i].
std::size_t skip_fraction(std::string_view s, std::size_t i) {
    if (i < s.size() && s[i] == '.') {
        ++i;
        while (i < s.size() && is_digit(s[i]))
            ++i;
    }
    return i;
}

// "2024-01-02 03:04:05.5" -> "2024-01-02T03:04:05.5". Other forms (BC, infinity) stay as text.
void append_timestamp(std::string& out, std::string_view s) {
    if (!iso_datetime_prefix(s) || skip_fraction(s, 19) != s.size()) {
        json::append_string(out, s);
        return;
    }
    out.push_back('"');
    out.append(s.substr(0, 10));
    out.push_back('T');
    out.append(s.substr(11));
    out.push_back('"');
}

// "2024-01-02 03:04:05.5+00" -> "2024-01-02T03:04:05.5Z"; "+05:30" stays, "+05" -> "+05:00".
void append_timestamptz(std::string& out, std::string_view s) {
    if (!iso_datetime_prefix(s)) {
        json::append_string(out, s);
        return;
    }
    std::size_t i = skip_fraction(s, 19);
    std::string_view zone = s.substr(i);
    auto two_digits = [](std::string_view z, std::size_t at) {
        return z.size() >= at + 2 && is_digit(z[at]) && is_digit(z[at + 1]);
    };
    bool ok = zone.size() >= 3 && (zone[0] == '+' || zone[0] == '-') && two_digits(zone, 1) &&
              (zone.size() == 3 || (zone.size() == 6 && zone[3] == ':' && two_digits(zone, 4)) ||
               (zone.size() == 9 && zone[3] == ':' && two_digits(zone, 4) && zone[6] == ':' &&
                two_digits(zone, 7)));
    if (!ok) {
        json::append_string(out, s);
        return;
    }
    out.push_back('"');
    out.append(s.substr(0, 10));
    out.push_back('T');
    out.append(s.substr(11, i - 11));
    if (zone == "+00" || zone == "+00:00") {
        out.push_back('Z');
    } else {
        out.append(zone);
        if (zone.size() == 3) out.append(":00");
    }
    out.push_back('"');
}

void encode(std::string& out, const type_catalog& types, const type_info& t, std::string_view text,
            int depth);

bool is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

bool equals_null(std::string_view s) {
    return s.size() == 4 && (s[0] | 0x20) == 'n' && (s[1] | 0x20) == 'u' && (s[2] | 0x20) == 'l' &&
           (s[3] | 0x20) == 'l';
}

// Reads one element of an array or a field of a record, as array_in/record_in do: double quotes
// may wrap all or part of it, a backslash takes the next character literally, and (for arrays)
// unquoted leading and trailing whitespace is dropped. Stops before any of `stops` outside quotes.
// Returns false on a malformed element. `quoted` tells whether any quoting or escaping was seen
// (a quoted "NULL" is the string NULL). In records, a pair of quotes inside quotes is one quote.
struct element_reader {
    std::string_view s;
    std::size_t i = 0;

    bool read(std::string& value, bool& quoted, std::string_view stops, bool record) {
        value.clear();
        quoted = false;
        std::size_t keep = 0; // length up to the last character that must stay
        bool in_quotes = false;
        if (!record) {
            while (i < s.size() && is_space(s[i]))
                ++i;
        }
        while (i < s.size()) {
            char c = s[i];
            if (in_quotes) {
                if (c == '\\') {
                    if (++i >= s.size()) return false;
                    value.push_back(s[i++]);
                } else if (c == '"') {
                    if (record && i + 1 < s.size() && s[i + 1] == '"') {
                        value.push_back('"');
                        i += 2;
                    } else {
                        in_quotes = false;
                        ++i;
                    }
                } else {
                    value.push_back(c);
                    ++i;
                }
                keep = value.size();
                continue;
            }
            if (stops.find(c) != std::string_view::npos) break;
            if (c == '"') {
                in_quotes = true;
                quoted = true;
                ++i;
                keep = value.size();
                continue;
            }
            if (c == '\\') {
                if (++i >= s.size()) return false;
                value.push_back(s[i++]);
                quoted = true;
                keep = value.size();
                continue;
            }
            if (!record && (c == '{' || c == '}')) return false;
            value.push_back(c);
            ++i;
            if (record || !is_space(c)) keep = value.size();
        }
        if (in_quotes) return false;
        value.resize(keep);
        return true;
    }
};

bool append_array_level(std::string& out, const type_catalog& types, const type_info& element,
                        char delim, element_reader& r, int depth) {
    if (depth > max_depth || r.i >= r.s.size() || r.s[r.i] != '{') return false;
    ++r.i;
    out.push_back('[');
    auto skip_ws = [&] {
        while (r.i < r.s.size() && is_space(r.s[r.i]))
            ++r.i;
    };
    skip_ws();
    if (r.i < r.s.size() && r.s[r.i] == '}') {
        ++r.i;
        out.push_back(']');
        return true;
    }
    const char stops[] = {delim, '}', '\0'};
    std::string value;
    while (true) {
        skip_ws();
        if (r.i < r.s.size() && r.s[r.i] == '{') {
            if (!append_array_level(out, types, element, delim, r, depth + 1)) return false;
        } else {
            bool quoted = false;
            if (!r.read(value, quoted, std::string_view(stops, 2), false)) return false;
            if (!quoted && equals_null(value)) {
                out.append("null");
            } else if (!quoted && value.empty()) {
                return false; // "{1,,2}" is not an array
            } else {
                encode(out, types, element, value, depth + 1);
            }
        }
        skip_ws();
        if (r.i >= r.s.size()) return false;
        if (r.s[r.i] == delim) {
            ++r.i;
            out.push_back(',');
            continue;
        }
        if (r.s[r.i] == '}') {
            ++r.i;
            out.push_back(']');
            return true;
        }
        return false;
    }
}

// "{1,2}", "{{1,2},{3,4}}", "[0:1]={1,2}" -> nested JSON arrays; false if malformed.
bool append_array(std::string& out, const type_catalog& types, const type_info& t,
                  std::string_view text, int depth) {
    if (!text.empty() && text[0] == '[') {
        auto eq = text.find('=');
        if (eq == std::string_view::npos) return false;
        text.remove_prefix(eq + 1);
    }
    element_reader r{text};
    const type_info& element = types.resolve(t.element);
    if (!append_array_level(out, types, element, t.delimiter, r, depth)) return false;
    return r.i == text.size();
}

// "(1,\"a b\",)" -> {"f1":1,"f2":"a b","f3":null}; false if malformed or the field count
// differs from the catalog's.
bool append_composite(std::string& out, const type_catalog& types, const type_info& t,
                      std::string_view text, int depth) {
    if (depth > max_depth || text.size() < 2 || text.front() != '(' || text.back() != ')') {
        return false;
    }
    element_reader r{text};
    r.i = 1;
    out.push_back('{');
    std::string value;
    for (std::size_t f = 0; f < t.fields.size(); ++f) {
        if (f > 0) {
            if (r.i >= text.size() || text[r.i] != ',') return false;
            ++r.i;
        }
        bool quoted = false;
        if (!r.read(value, quoted, ",)", true)) return false;
        if (f > 0) out.push_back(',');
        json::append_key(out, t.fields[f].name);
        if (!quoted && value.empty()) {
            out.append("null");
        } else {
            encode(out, types, types.resolve(t.fields[f].type), value, depth + 1);
        }
    }
    if (r.i != text.size() - 1) return false;
    out.push_back('}');
    return true;
}

void encode(std::string& out, const type_catalog& types, const type_info& t, std::string_view text,
            int depth) {
    switch (t.kind) {
    case type_kind::text:
    case type_kind::domain: // resolve() never returns one; kept total for the compiler
        json::append_string(out, text);
        return;
    case type_kind::boolean:
        if (text == "t") {
            out.append("true");
        } else if (text == "f") {
            out.append("false");
        } else {
            json::append_string(out, text);
        }
        return;
    case type_kind::integer:
    case type_kind::floating: // "NaN", "Infinity", "-Infinity" are not JSON numbers: strings
        append_raw_or_string(out, text, json::is_number(text));
        return;
    case type_kind::numeric:
        append_raw_or_string(out, text, json::is_number(text) && numeric_round_trips(text));
        return;
    case type_kind::json:
        if (!json::append_minified(out, text)) json::append_string(out, text);
        return;
    case type_kind::timestamp:
        append_timestamp(out, text);
        return;
    case type_kind::timestamptz:
        append_timestamptz(out, text);
        return;
    case type_kind::array:
    case type_kind::composite: {
        const auto mark = out.size();
        bool ok = t.kind == type_kind::array ? append_array(out, types, t, text, depth)
                                             : append_composite(out, types, t, text, depth);
        if (!ok) {
            out.resize(mark);
            json::append_string(out, text);
        }
        return;
    }
    }
}

} // namespace

bool numeric_round_trips(std::string_view numeric) {
    double d = 0;
    auto [end, ec] = std::from_chars(numeric.data(), numeric.data() + numeric.size(), d);
    if (ec != std::errc{} || end != numeric.data() + numeric.size() || !std::isfinite(d)) {
        return false;
    }
    std::array<char, 32> buf;
    auto [pend, pec] = std::to_chars(buf.data(), buf.data() + buf.size(), d);
    if (pec != std::errc{}) return false;
    return normalise(numeric) == normalise(std::string_view(buf.data(), pend));
}

void append_value_json(std::string& out, const type_catalog& types, const type_info& type,
                       std::string_view text) {
    encode(out, types, type, text, 0);
}

void append_binary_json(std::string& out, std::string_view bytes) {
    static constexpr char hex[] = "0123456789abcdef";
    out.append("\"\\\\x");
    for (unsigned char c : bytes) {
        out.push_back(hex[c >> 4]);
        out.push_back(hex[c & 0xF]);
    }
    out.push_back('"');
}

} // namespace pgpush::cdc
