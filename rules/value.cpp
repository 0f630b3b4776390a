#include "rules/value.hpp"

#include <array>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <locale.h>
#include <type_traits>
#include <utility>

#include <climits>

namespace pgpush::rules {

std::string_view to_string(column_family f) {
    switch (f) {
    case column_family::boolean:
        return "boolean";
    case column_family::integer:
        return "integer";
    case column_family::numeric:
        return "numeric";
    case column_family::floating:
        return "floating";
    case column_family::real:
        return "real";
    case column_family::text:
        return "text";
    case column_family::timestamp:
        return "timestamp";
    case column_family::date:
        return "date";
    case column_family::other:
        return "other";
    }
    return "other";
}

bool comparable_families(column_family a, column_family b) {
    auto numeric = [](column_family f) {
        return f == column_family::integer || f == column_family::numeric ||
               f == column_family::floating || f == column_family::real;
    };
    auto temporal = [](column_family f) {
        return f == column_family::timestamp || f == column_family::date;
    };
    return a == b || (numeric(a) && numeric(b)) || (temporal(a) && temporal(b));
}

namespace {

bool is_digit(char c) {
    return c >= '0' && c <= '9';
}

bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        char x = a[i], y = b[i];
        if (x >= 'A' && x <= 'Z') x = static_cast<char>(x + 32);
        if (y >= 'A' && y <= 'Z') y = static_cast<char>(y + 32);
        if (x != y) return false;
    }
    return true;
}

// isspace() in the C locale, as Postgres' input functions skip it.
bool is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && is_space(s.front()))
        s.remove_prefix(1);
    while (!s.empty() && is_space(s.back()))
        s.remove_suffix(1);
    return s;
}

bool is_hex(char c) {
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

// pg_strncasecmp(s, word, strlen(word)) == 0: `s` starts with `word`, any case.
bool istarts(std::string_view s, std::string_view word) {
    return s.size() >= word.size() && iequals(s.substr(0, word.size()), word);
}

// A decimal in plain notation, seen without copying: sign, integer digits without leading
// zeros, fraction digits without trailing zeros. Specials order as Postgres orders numerics:
// -Infinity < finite < Infinity < NaN.
struct decimal_view {
    enum cls_t { neg_inf = -2, finite = 0, pos_inf = 2, nan = 3 } cls = finite;
    bool negative = false;
    std::string_view int_digits;
    std::string_view frac_digits;
};

// Parses plain notation ("-012.340", ".5", "7."); exponents are expanded by canonical_decimal()
// before values get here. nullopt if malformed.
std::optional<decimal_view> view_decimal(std::string_view s) {
    decimal_view d;
    if (iequals(s, "NaN")) {
        d.cls = decimal_view::nan;
        return d;
    }
    if (iequals(s, "Infinity") || iequals(s, "+Infinity") || iequals(s, "inf")) {
        d.cls = decimal_view::pos_inf;
        return d;
    }
    if (iequals(s, "-Infinity") || iequals(s, "-inf")) {
        d.cls = decimal_view::neg_inf;
        return d;
    }
    std::size_t i = 0;
    if (i < s.size() && (s[i] == '-' || s[i] == '+')) d.negative = s[i++] == '-';
    std::size_t int_start = i;
    while (i < s.size() && is_digit(s[i]))
        ++i;
    std::string_view ip = s.substr(int_start, i - int_start);
    std::string_view fp;
    if (i < s.size() && s[i] == '.') {
        std::size_t f = ++i;
        while (i < s.size() && is_digit(s[i]))
            ++i;
        fp = s.substr(f, i - f);
    }
    if (i != s.size() || (ip.empty() && fp.empty())) return std::nullopt;
    while (!ip.empty() && ip.front() == '0')
        ip.remove_prefix(1);
    while (!fp.empty() && fp.back() == '0')
        fp.remove_suffix(1);
    d.int_digits = ip;
    d.frac_digits = fp;
    if (ip.empty() && fp.empty()) d.negative = false; // -0 is 0
    return d;
}

int compare_magnitude(const decimal_view& a, const decimal_view& b) {
    if (a.int_digits.size() != b.int_digits.size()) {
        return a.int_digits.size() < b.int_digits.size() ? -1 : 1;
    }
    if (int c = a.int_digits.compare(b.int_digits); c != 0) return c < 0 ? -1 : 1;
    // Fractions align at the point: compare digit by digit, the shorter padded with zeros.
    std::size_t n = std::max(a.frac_digits.size(), b.frac_digits.size());
    for (std::size_t i = 0; i < n; ++i) {
        char x = i < a.frac_digits.size() ? a.frac_digits[i] : '0';
        char y = i < b.frac_digits.size() ? b.frac_digits[i] : '0';
        if (x != y) return x < y ? -1 : 1;
    }
    return 0;
}

std::optional<int> compare_decimals(std::string_view x, std::string_view y) {
    auto a = view_decimal(x);
    auto b = view_decimal(y);
    if (!a || !b) return std::nullopt;
    if (a->cls != decimal_view::finite || b->cls != decimal_view::finite) {
        if (a->cls == b->cls) return 0;
        return a->cls < b->cls ? -1 : 1;
    }
    if (a->negative != b->negative) return a->negative ? -1 : 1;
    int m = compare_magnitude(*a, *b);
    return a->negative ? -m : m;
}

// Postgres orders float NaN above every other value and equal to itself.
int compare_doubles(double a, double b) {
    bool an = std::isnan(a), bn = std::isnan(b);
    if (an || bn) return an == bn ? 0 : (an ? 1 : -1);
    return a < b ? -1 : (a > b ? 1 : 0);
}

std::optional<double> to_double(const value& v) {
    switch (v.type()) {
    case value_type::integer:
        return static_cast<double>(v.as_int());
    case value_type::floating:
        return v.as_double();
    case value_type::decimal: {
        auto s = v.as_text();
        if (iequals(s, "NaN")) return std::numeric_limits<double>::quiet_NaN();
        if (iequals(s, "Infinity")) return std::numeric_limits<double>::infinity();
        if (iequals(s, "-Infinity")) return -std::numeric_limits<double>::infinity();
        double d = 0;
        auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), d);
        // Too large or too small for a double: Postgres refuses the cast ("value out of
        // range"), so the comparison cannot be made: unknown.
        if (ec != std::errc{} || end != s.data() + s.size()) return std::nullopt;
        return d;
    }
    default:
        return std::nullopt;
    }
}

std::string integer_text(std::int64_t i) {
    std::array<char, 24> buf;
    auto [end, ec] = std::to_chars(buf.data(), buf.data() + buf.size(), i);
    return std::string(buf.data(), end);
}

std::optional<int> compare_numbers(const value& a, const value& b) {
    if (a.type() == value_type::floating || b.type() == value_type::floating) {
        auto x = to_double(a), y = to_double(b);
        if (!x || !y) return std::nullopt;
        return compare_doubles(*x, *y);
    }
    if (a.type() == value_type::integer && b.type() == value_type::integer) {
        return a.as_int() < b.as_int() ? -1 : (a.as_int() > b.as_int() ? 1 : 0);
    }
    std::string ia, ib;
    std::string_view x = a.as_text(), y = b.as_text();
    if (a.type() == value_type::integer) x = ia = integer_text(a.as_int());
    if (b.type() == value_type::integer) y = ib = integer_text(b.as_int());
    return compare_decimals(x, y);
}

// boolin: a prefix of true/yes/false/no (at least "on"/"of" for on/off), or 1/0, any case,
// surrounded by whitespace.
std::optional<bool> parse_bool(std::string_view s) {
    s = trim(s);
    if (s.empty()) return std::nullopt;
    auto prefix_of = [&](std::string_view word, std::size_t min_len) {
        return s.size() >= min_len && s.size() <= word.size() &&
               iequals(s, word.substr(0, s.size()));
    };
    if (prefix_of("true", 1) || prefix_of("yes", 1) || prefix_of("on", 2) || s == "1") return true;
    if (prefix_of("false", 1) || prefix_of("no", 1) || prefix_of("off", 2) || s == "0") {
        return false;
    }
    return std::nullopt;
}

// pg_strtoint16/32/64: whitespace, a sign, at least one digit, whitespace; in [lo, hi].
std::optional<std::int64_t> read_integer(std::string_view s, std::int64_t lo, std::int64_t hi) {
    s = trim(s);
    bool negative = false;
    if (!s.empty() && (s[0] == '-' || s[0] == '+')) {
        negative = s[0] == '-';
        s.remove_prefix(1);
    }
    if (s.empty()) return std::nullopt;
    // Accumulate negatively: the most negative value has no positive counterpart.
    std::int64_t v = 0;
    for (char c : s) {
        if (!is_digit(c)) return std::nullopt;
        if (__builtin_mul_overflow(v, 10, &v) || __builtin_sub_overflow(v, c - '0', &v)) {
            return std::nullopt;
        }
    }
    if (!negative) {
        if (v == std::numeric_limits<std::int64_t>::min()) return std::nullopt;
        v = -v;
    }
    if (v < lo || v > hi) return std::nullopt;
    return v;
}

// oidin (strtoul): whitespace, a sign, digits, whitespace; 0..4294967295, and -2147483648..-1
// taken modulo 2^32 as Postgres does.
std::optional<std::int64_t> read_oid(std::string_view s) {
    s = trim(s);
    bool negative = false;
    if (!s.empty() && (s[0] == '-' || s[0] == '+')) {
        negative = s[0] == '-';
        s.remove_prefix(1);
    }
    if (s.empty()) return std::nullopt;
    std::uint64_t v = 0;
    for (char c : s) {
        if (!is_digit(c) || v > (std::uint64_t{1} << 33)) return std::nullopt;
        v = v * 10 + static_cast<std::uint64_t>(c - '0');
    }
    if (!negative) {
        if (v > 0xFFFF'FFFFu) return std::nullopt;
        return static_cast<std::int64_t>(v);
    }
    if (v > 0x8000'0000u) return std::nullopt;
    return v == 0 ? 0 : static_cast<std::int64_t>((std::uint64_t{1} << 32) - v);
}

locale_t c_locale() {
    static const locale_t l = newlocale(LC_ALL_MASK, "C", static_cast<locale_t>(nullptr));
    return l;
}

// float8in / float4in (PostgreSQL 15): strtod/strtof in the C locale, then its own spellings of
// NaN and the infinities, underflow to zero and overflow refused, whitespace around.
template <typename F>
std::optional<double> read_float(std::string_view s) {
    while (!s.empty() && is_space(s.front()))
        s.remove_prefix(1);
    if (s.empty()) return std::nullopt;
    const std::string z(s); // strtod needs a terminated string
    const char* num = z.c_str();
    char* end = nullptr;
    errno = 0;
    F val;
    if constexpr (std::is_same_v<F, float>) {
        val = strtof_l(num, &end, c_locale());
    } else {
        val = strtod_l(num, &end, c_locale());
    }
    const F huge = std::numeric_limits<F>::infinity();
    if (end == num || errno != 0) {
        const int err = errno;
        const std::string_view rest(num);
        if (istarts(rest, "NaN")) {
            val = std::numeric_limits<F>::quiet_NaN();
            end = const_cast<char*>(num) + 3;
        } else if (istarts(rest, "Infinity")) {
            val = huge;
            end = const_cast<char*>(num) + 8;
        } else if (istarts(rest, "+Infinity") || istarts(rest, "-Infinity")) {
            val = rest[0] == '-' ? -huge : huge;
            end = const_cast<char*>(num) + 9;
        } else if (istarts(rest, "inf")) {
            val = huge;
            end = const_cast<char*>(num) + 3;
        } else if (istarts(rest, "+inf") || istarts(rest, "-inf")) {
            val = rest[0] == '-' ? -huge : huge;
            end = const_cast<char*>(num) + 4;
        } else if (err == ERANGE) {
            // Denormals may report ERANGE; only zero and infinity are out of range.
            if (val == 0 || val >= huge || val <= -huge) return std::nullopt;
        } else {
            return std::nullopt;
        }
    }
    while (*end != '\0' && is_space(*end))
        ++end;
    if (end != num + z.size()) return std::nullopt;
    return static_cast<double>(val);
}

// uuid_in: an optional {}, 32 hex digits, a '-' allowed after any group of four; no whitespace.
// The canonical form (lower case, 8-4-4-4-12).
std::optional<std::string> read_uuid(std::string_view s) {
    bool braces = false;
    if (!s.empty() && s[0] == '{') {
        braces = true;
        s.remove_prefix(1);
    }
    std::string out;
    for (int i = 0; i < 16; ++i) {
        if (s.size() < 2 || !is_hex(s[0]) || !is_hex(s[1])) return std::nullopt;
        for (int k = 0; k < 2; ++k) {
            char c = s[static_cast<std::size_t>(k)];
            out += (c >= 'A' && c <= 'F') ? static_cast<char>(c + 32) : c;
        }
        s.remove_prefix(2);
        if (i == 3 || i == 5 || i == 7 || i == 9) out += '-';
        if (!s.empty() && s[0] == '-' && i % 2 == 1 && i < 15) s.remove_prefix(1);
    }
    if (braces) {
        if (s.empty() || s[0] != '}') return std::nullopt;
        s.remove_prefix(1);
    }
    if (!s.empty()) return std::nullopt;
    return out;
}

// A numeric as an integer when it is one that fits, else an exact decimal in `storage`.
std::optional<value> read_numeric(std::string_view s, std::string& storage) {
    auto canonical = canonical_decimal(s);
    if (!canonical) return std::nullopt;
    std::int64_t i = 0;
    auto [end, ec] = std::from_chars(canonical->data(), canonical->data() + canonical->size(), i);
    if (ec == std::errc{} && end == canonical->data() + canonical->size()) return value::integer(i);
    storage = std::move(*canonical);
    return value::decimal(storage);
}

} // namespace

std::optional<std::string> canonical_decimal(std::string_view s) {
    // numeric_in and set_var_from_str of PostgreSQL 15.
    while (!s.empty() && is_space(s.front()))
        s.remove_prefix(1);
    auto only_space = [](std::string_view rest) {
        for (char c : rest) {
            if (!is_space(c)) return false;
        }
        return true;
    };
    static constexpr std::pair<std::string_view, std::string_view> specials[] = {
        {"NaN", "NaN"},
        {"Infinity", "Infinity"},
        {"+Infinity", "Infinity"},
        {"-Infinity", "-Infinity"},
        {"inf", "Infinity"},
        {"+inf", "Infinity"},
        {"-inf", "-Infinity"}};
    for (const auto& [spelling, canonical] : specials) {
        if (istarts(s, spelling)) {
            if (!only_space(s.substr(spelling.size()))) return std::nullopt;
            return std::string(canonical);
        }
    }
    bool negative = false;
    std::size_t i = 0;
    if (i < s.size() && (s[i] == '-' || s[i] == '+')) negative = s[i++] == '-';
    // Digits without the point; `point` digits come before it.
    std::string digits;
    long point = -1;
    if (i < s.size() && s[i] == '.') {
        point = 0;
        ++i;
    }
    if (i >= s.size() || !is_digit(s[i])) return std::nullopt;
    for (; i < s.size(); ++i) {
        if (is_digit(s[i])) {
            digits.push_back(s[i]);
        } else if (s[i] == '.') {
            if (point >= 0) return std::nullopt;
            point = static_cast<long>(digits.size());
        } else {
            break;
        }
    }
    const long before = point < 0 ? static_cast<long>(digits.size()) : point;
    long dscale = static_cast<long>(digits.size()) - before;
    long exp10 = 0;
    if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
        // strtol: whitespace, a sign, digits.
        std::size_t k = i + 1;
        while (k < s.size() && is_space(s[k]))
            ++k;
        bool eneg = false;
        if (k < s.size() && (s[k] == '-' || s[k] == '+')) eneg = s[k++] == '-';
        const std::size_t first = k;
        long e = 0;
        bool huge = false;
        for (; k < s.size() && is_digit(s[k]); ++k) {
            if (e < 1'000'000'000'000L) {
                e = e * 10 + (s[k] - '0');
            } else {
                huge = true;
            }
        }
        if (k == first) return std::nullopt;
        if (huge || e >= INT_MAX / 2) return std::nullopt; // "value overflows numeric format"
        exp10 = eneg ? -e : e;
        dscale = std::max(0L, dscale - exp10);
        i = k;
    }
    if (!only_space(s.substr(i))) return std::nullopt;
    if (dscale > 16383) return std::nullopt; // NUMERIC_DSCALE_MAX
    const std::size_t lead = digits.find_first_not_of('0');
    if (lead == std::string::npos) return std::string("0");
    // Decimal exponent of the most significant digit: at most 131071 (NUMERIC_WEIGHT_MAX).
    const long msd = before - 1 - static_cast<long>(lead) + exp10;
    if (msd > 131071) return std::nullopt;
    // The point's position within `digits` after the exponent.
    const long pos = before + exp10;
    std::string int_part, frac_part;
    if (pos <= 0) {
        frac_part = std::string(static_cast<std::size_t>(-pos), '0') + digits;
    } else if (pos >= static_cast<long>(digits.size())) {
        int_part =
            digits +
            std::string(static_cast<std::size_t>(pos - static_cast<long>(digits.size())), '0');
    } else {
        int_part = digits.substr(0, static_cast<std::size_t>(pos));
        frac_part = digits.substr(static_cast<std::size_t>(pos));
    }
    int_part.erase(0, std::min(int_part.size(), int_part.find_first_not_of('0')));
    while (!frac_part.empty() && frac_part.back() == '0')
        frac_part.pop_back();
    std::string out = negative ? "-" : "";
    out += int_part.empty() ? "0" : int_part;
    if (!frac_part.empty()) out += "." + frac_part;
    return out;
}

input_type input_type_of(column_family family, std::string_view t) {
    switch (family) {
    case column_family::boolean:
        return input_type::boolean;
    case column_family::integer:
        if (t == "smallint" || t == "int2") return input_type::int2;
        if (t == "integer" || t == "int4" || t == "int") return input_type::int4;
        if (t == "oid") return input_type::oid;
        return input_type::int8; // bigint, int8, and domains: the widest
    case column_family::numeric:
        return input_type::numeric;
    case column_family::floating:
        return input_type::float8;
    case column_family::real:
        return input_type::float4;
    case column_family::text: {
        if (t == "uuid") return input_type::uuid;
        auto base = t.substr(0, t.find('('));
        if (base == "text" || base == "character varying" || base == "varchar" || base == "name") {
            return input_type::text;
        }
        if (base == "character" || base == "bpchar") return input_type::padded;
        return input_type::text_cast;
    }
    case column_family::timestamp:
        return input_type::timestamp;
    case column_family::date:
        return input_type::date;
    case column_family::other:
        return input_type::other;
    }
    return input_type::other;
}

std::optional<value> read_input(input_type type, std::string_view text, std::string& storage) {
    if (text.find('\0') != std::string_view::npos) return std::nullopt;
    auto integer = [](std::optional<std::int64_t> i) {
        return i ? std::optional<value>(value::integer(*i)) : std::nullopt;
    };
    switch (type) {
    case input_type::boolean: {
        auto b = parse_bool(text);
        return b ? std::optional<value>(value::boolean(*b)) : std::nullopt;
    }
    case input_type::int2:
        return integer(read_integer(text, INT16_MIN, INT16_MAX));
    case input_type::int4:
        return integer(read_integer(text, INT32_MIN, INT32_MAX));
    case input_type::int8:
        return integer(read_integer(text, INT64_MIN, INT64_MAX));
    case input_type::oid:
        return integer(read_oid(text));
    case input_type::numeric:
        return read_numeric(text, storage);
    case input_type::float4:
    case input_type::float8: {
        auto d = type == input_type::float4 ? read_float<float>(text) : read_float<double>(text);
        return d ? std::optional<value>(value::floating(*d)) : std::nullopt;
    }
    case input_type::uuid: {
        auto u = read_uuid(text);
        if (!u) return std::nullopt;
        storage = std::move(*u);
        return value::text(storage);
    }
    case input_type::timestamp:
    case input_type::date: {
        auto t = type == input_type::date ? parse_date(text) : parse_timestamp(text);
        return t ? std::optional<value>(value::timestamp(*t)) : std::nullopt;
    }
    case input_type::text:
    case input_type::padded:
    case input_type::text_cast:
    case input_type::other:
        return value::text(text);
    }
    return std::nullopt;
}

std::optional<int> compare(const value& a, const value& b) {
    if (a.is_null() || b.is_null()) return std::nullopt;
    if (a.type() == value_type::list || b.type() == value_type::list) return std::nullopt;

    // A text value meeting a typed one is read as a literal of that type, as Postgres reads an
    // untyped literal.
    if (a.type() == value_type::text && b.type() != value_type::text) {
        auto r = compare(b, a);
        if (!r) return std::nullopt;
        return -*r;
    }
    if (b.type() == value_type::text && a.type() != value_type::text) {
        std::string storage;
        input_type as = input_type::other;
        switch (a.type()) {
        case value_type::integer:
            as = input_type::int8;
            break;
        case value_type::decimal:
            as = input_type::numeric;
            break;
        case value_type::floating:
            as = input_type::float8;
            break;
        case value_type::timestamp:
            as = input_type::timestamp;
            break;
        case value_type::boolean:
            as = input_type::boolean;
            break;
        default:
            return std::nullopt;
        }
        auto v = read_input(as, b.as_text(), storage);
        if (!v) return std::nullopt;
        return compare(a, *v);
    }

    if (a.is_number() && b.is_number()) return compare_numbers(a, b);
    if (a.type() != b.type()) return std::nullopt;
    switch (a.type()) {
    case value_type::boolean:
        return static_cast<int>(a.as_bool()) - static_cast<int>(b.as_bool());
    case value_type::timestamp:
        return a.as_int() < b.as_int() ? -1 : (a.as_int() > b.as_int() ? 1 : 0);
    case value_type::text: {
        int c = a.as_text().compare(b.as_text()); // char_traits<char>: unsigned byte order
        return c < 0 ? -1 : (c > 0 ? 1 : 0);
    }
    default:
        return std::nullopt;
    }
}

value from_pg_text(column_family family, std::string_view text) {
    switch (family) {
    case column_family::boolean:
        if (text == "t") return value::boolean(true);
        if (text == "f") return value::boolean(false);
        return value::null();
    case column_family::integer: {
        std::int64_t i = 0;
        auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), i);
        if (ec == std::errc{} && end == text.data() + text.size()) return value::integer(i);
        return value::null();
    }
    case column_family::numeric:
        return view_decimal(text) ? value::decimal(text) : value::null();
    case column_family::floating:
    case column_family::real: {
        if (text == "NaN") return value::floating(std::numeric_limits<double>::quiet_NaN());
        if (text == "Infinity") return value::floating(std::numeric_limits<double>::infinity());
        if (text == "-Infinity") return value::floating(-std::numeric_limits<double>::infinity());
        if (family == column_family::real) {
            // float4 prints its shortest text; read it back as a float, then widen, as Postgres
            // does when it compares a real with anything wider.
            float f = 0;
            auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), f);
            if (ec == std::errc{} && end == text.data() + text.size()) {
                return value::floating(static_cast<double>(f));
            }
            return value::null();
        }
        double d = 0;
        auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), d);
        if (ec == std::errc{} && end == text.data() + text.size()) return value::floating(d);
        return value::null();
    }
    case column_family::timestamp: {
        auto t = parse_timestamp(text);
        return t ? value::timestamp(*t) : value::null();
    }
    case column_family::date: {
        auto t = parse_date(text);
        return t ? value::timestamp(*t) : value::null();
    }
    case column_family::text:
    case column_family::other:
        return value::text(text);
    }
    return value::null();
}

namespace {

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm), for any year
// Postgres accepts (its timestamps reach year 294276); nullopt for an impossible date.
std::optional<std::int64_t> days_from_civil(std::int64_t y, int m, int d) {
    static constexpr int month_days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m < 1 || m > 12 || d < 1) return std::nullopt;
    const bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (d > month_days[m - 1] + (m == 2 && leap ? 1 : 0)) return std::nullopt;
    y -= m <= 2;
    const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
    const std::int64_t yoe = y - era * 400;
    const std::int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const std::int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

} // namespace

std::optional<std::int64_t> parse_timestamp(std::string_view s) {
    s = trim(s);
    if (iequals(s, "infinity") || iequals(s, "+infinity")) {
        return std::numeric_limits<std::int64_t>::max();
    }
    if (iequals(s, "-infinity")) return std::numeric_limits<std::int64_t>::min();
    bool bc = false;
    if (s.size() > 3 && iequals(s.substr(s.size() - 3), " BC")) {
        bc = true;
        s.remove_suffix(3);
    }
    auto digits = [&](std::size_t at, std::size_t n, int& out) {
        if (at + n > s.size()) return false;
        int v = 0;
        for (std::size_t k = at; k < at + n; ++k) {
            if (!is_digit(s[k])) return false;
            v = v * 10 + (s[k] - '0');
        }
        out = v;
        return true;
    };
    // Year: 4 or more digits.
    std::size_t i = 0;
    while (i < s.size() && is_digit(s[i]))
        ++i;
    if (i < 4 || i > 7) return std::nullopt;
    int year = 0, month = 0, day = 0;
    digits(0, i, year);
    if (i >= s.size() || s[i] != '-' || !digits(i + 1, 2, month) || i + 3 >= s.size() + 0 ||
        s[i + 3] != '-' || !digits(i + 4, 2, day)) {
        return std::nullopt;
    }
    i += 6;
    if (bc) year = 1 - year;
    auto days = days_from_civil(year, month, day);
    if (!days) return std::nullopt;
    constexpr std::int64_t days_1970_to_2000 = 10'957;
    std::int64_t micros = 0;
    if (__builtin_mul_overflow(*days - days_1970_to_2000, std::int64_t{86'400'000'000}, &micros)) {
        return std::nullopt;
    }
    if (i == s.size()) return micros; // a date
    if (s[i] != ' ' && s[i] != 'T' && s[i] != 't') return std::nullopt;
    ++i;
    int hh = 0, mm = 0, ss = 0;
    if (!digits(i, 2, hh) || i + 2 >= s.size() || s[i + 2] != ':' || !digits(i + 3, 2, mm)) {
        return std::nullopt;
    }
    i += 5;
    if (i < s.size() && s[i] == ':') {
        if (!digits(i + 1, 2, ss)) return std::nullopt;
        i += 3;
    }
    if (hh > 24 || mm > 59 || ss > 60) return std::nullopt;
    const bool end_of_day = hh == 24; // 24:00:00 is the next midnight; past it is not a time
    std::int64_t frac = 0;
    if (i < s.size() && s[i] == '.') {
        ++i;
        int n = 0;
        while (i < s.size() && is_digit(s[i])) {
            // Postgres keeps microseconds and rounds the rest; so do we (half up).
            if (n < 6) {
                frac = frac * 10 + (s[i] - '0');
            } else if (n == 6 && s[i] >= '5') {
                frac += 1;
            }
            ++n;
            ++i;
        }
        for (int k = n; k < 6; ++k)
            frac *= 10;
    }
    if (end_of_day && (mm != 0 || ss != 0 || frac != 0)) return std::nullopt;
    if (__builtin_add_overflow(
            micros, ((static_cast<std::int64_t>(hh) * 60 + mm) * 60 + ss) * 1'000'000 + frac,
            &micros)) {
        return std::nullopt;
    }
    std::string_view zone = s.substr(i);
    if (zone.empty() || zone == "Z" || zone == "z") return micros; // no zone: UTC

    if (zone.front() == ' ') zone.remove_prefix(1);
    if (zone.empty() || (zone[0] != '+' && zone[0] != '-')) return std::nullopt;
    const int sign = zone[0] == '-' ? -1 : 1;
    zone.remove_prefix(1);
    int zh = 0, zm = 0, zs = 0;
    auto zdig = [&](std::string_view z, std::size_t at, int& out) {
        if (at + 2 > z.size() || !is_digit(z[at]) || !is_digit(z[at + 1])) return false;
        out = (z[at] - '0') * 10 + (z[at + 1] - '0');
        return true;
    };
    if (!zdig(zone, 0, zh)) return std::nullopt;
    std::size_t z = 2;
    if (z < zone.size()) {
        if (zone[z] == ':') ++z;
        if (!zdig(zone, z, zm)) return std::nullopt;
        z += 2;
        if (z < zone.size()) {
            if (zone[z] != ':' || !zdig(zone, z + 1, zs)) return std::nullopt;
            z += 3;
        }
    }
    if (z != zone.size()) return std::nullopt;
    std::int64_t out = 0;
    if (__builtin_sub_overflow(
            micros, sign * ((static_cast<std::int64_t>(zh) * 60 + zm) * 60 + zs) * 1'000'000,
            &out)) {
        return std::nullopt;
    }
    // The infinities are reserved: a finite time never lands on them.
    if (out == std::numeric_limits<std::int64_t>::max() ||
        out == std::numeric_limits<std::int64_t>::min()) {
        return std::nullopt;
    }
    return out;
}

std::optional<std::int64_t> parse_date(std::string_view s) {
    s = trim(s);
    if (iequals(s, "infinity") || iequals(s, "+infinity")) {
        return std::numeric_limits<std::int64_t>::max();
    }
    if (iequals(s, "-infinity")) return std::numeric_limits<std::int64_t>::min();
    const bool bc = s.size() > 3 && iequals(s.substr(s.size() - 3), " BC");
    std::size_t i = 0;
    while (i < s.size() && is_digit(s[i]))
        ++i;
    if (i < 4 || i > 7 || i + 6 > s.size() || s[i] != '-' || s[i + 3] != '-') return std::nullopt;
    std::size_t end = i + 6; // past "-MM-DD"
    if (end < s.size() && s[end] != ' ' && s[end] != 'T' && s[end] != 't') return std::nullopt;
    // Validate the rest as a timestamp would be, then keep only the date as written.
    std::string date(s.substr(0, end));
    if (bc) date += " BC";
    if (end < s.size() && !parse_timestamp(s)) return std::nullopt;
    return parse_timestamp(date);
}

std::optional<std::string> index_key(const value& v, column_family family) {
    switch (family) {
    case column_family::floating:
    case column_family::real: {
        auto d = to_double(v);
        if (v.type() == value_type::text) {
            if (family == column_family::real) {
                // Untyped literal against a real column: read as float4, as Postgres does.
                std::string storage;
                auto r = read_input(input_type::float4, v.as_text(), storage);
                d = r ? std::optional<double>(r->as_double()) : std::nullopt;
            } else {
                std::string storage;
                auto n = read_input(input_type::float8, v.as_text(), storage);
                if (!n) return std::nullopt;
                d = n->as_double();
            }
        }
        if (!d) return std::nullopt;
        if (std::isnan(*d)) return std::string("NaN");
        if (std::isinf(*d)) return std::string(*d > 0 ? "Infinity" : "-Infinity");
        std::array<char, 32> buf;
        auto [end, ec] = std::to_chars(buf.data(), buf.data() + buf.size(), *d);
        return canonical_decimal(std::string_view(buf.data(), end));
    }
    case column_family::integer:
    case column_family::numeric:
        switch (v.type()) {
        case value_type::integer:
            return integer_text(v.as_int());
        case value_type::decimal:
            return canonical_decimal(v.as_text());
        case value_type::text: {
            // As compare() reads it: bigint input for an integer column, numeric for numeric.
            if (family == column_family::numeric) return canonical_decimal(v.as_text());
            std::string storage;
            auto i = read_input(input_type::int8, v.as_text(), storage);
            if (!i) return std::nullopt;
            return integer_text(i->as_int());
        }
        case value_type::floating: {
            // Postgres compares int/numeric with float in float8: only a double that is exactly
            // a decimal with the same value keys the same; leave the rest to evaluation.
            return std::nullopt;
        }
        default:
            return std::nullopt;
        }
    case column_family::boolean:
        if (v.type() == value_type::boolean) return std::string(v.as_bool() ? "t" : "f");
        if (v.type() == value_type::text) {
            auto b = parse_bool(v.as_text());
            if (b) return std::string(*b ? "t" : "f");
        }
        return std::nullopt;
    case column_family::timestamp:
    case column_family::date:
        if (v.type() == value_type::timestamp) return integer_text(v.as_int());
        if (v.type() == value_type::text) {
            auto t = family == column_family::date ? parse_date(v.as_text())
                                                   : parse_timestamp(v.as_text());
            if (t) return integer_text(*t);
        }
        return std::nullopt;
    case column_family::text:
    case column_family::other:
        if (v.type() == value_type::text) return std::string(v.as_text());
        return std::nullopt;
    }
    return std::nullopt;
}

} // namespace pgpush::rules
