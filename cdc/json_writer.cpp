#include "cdc/json_writer.hpp"

#include <array>
#include <charconv>
#include <vector>

namespace pgpush::cdc::json {

namespace {

constexpr char hex_digits[] = "0123456789abcdef";

// Length of the valid UTF-8 sequence starting at s[i], or 0 if it is not one (overlong forms,
// surrogates and code points past U+10FFFF are invalid, as RFC 3629 says).
std::size_t utf8_sequence_length(std::string_view s, std::size_t i) {
    const auto b0 = static_cast<unsigned char>(s[i]);
    auto cont = [&](std::size_t k) {
        return i + k < s.size() && (static_cast<unsigned char>(s[i + k]) & 0xC0) == 0x80;
    };
    if (b0 >= 0xC2 && b0 <= 0xDF) return cont(1) ? 2 : 0;
    if (b0 >= 0xE0 && b0 <= 0xEF) {
        if (!cont(1) || !cont(2)) return 0;
        const auto b1 = static_cast<unsigned char>(s[i + 1]);
        if (b0 == 0xE0 && b1 < 0xA0) return 0; // overlong
        if (b0 == 0xED && b1 > 0x9F) return 0; // UTF-16 surrogate
        return 3;
    }
    if (b0 >= 0xF0 && b0 <= 0xF4) {
        if (!cont(1) || !cont(2) || !cont(3)) return 0;
        const auto b1 = static_cast<unsigned char>(s[i + 1]);
        if (b0 == 0xF0 && b1 < 0x90) return 0; // overlong
        if (b0 == 0xF4 && b1 > 0x8F) return 0; // past U+10FFFF
        return 4;
    }
    return 0;
}

} // namespace

void append_string(std::string& out, std::string_view s) {
    out.push_back('"');
    std::size_t run = 0; // start of the pending run of bytes that need no escaping
    std::size_t i = 0;
    while (i < s.size()) {
        const auto c = static_cast<unsigned char>(s[i]);
        if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
            ++i;
            continue;
        }
        if (c >= 0x80) {
            if (auto n = utf8_sequence_length(s, i); n != 0) {
                i += n;
                continue;
            }
        }
        out.append(s.data() + run, i - run);
        switch (c) {
        case '"':
            out += "\\\"";
            break;
        case '\\':
            out += "\\\\";
            break;
        case '\n':
            out += "\\n";
            break;
        case '\r':
            out += "\\r";
            break;
        case '\t':
            out += "\\t";
            break;
        case '\b':
            out += "\\b";
            break;
        case '\f':
            out += "\\f";
            break;
        default:
            if (c < 0x20) {
                out += "\\u00";
                out.push_back(hex_digits[c >> 4]);
                out.push_back(hex_digits[c & 0xF]);
            } else {
                out += "\xEF\xBF\xBD"; // U+FFFD for a byte that starts no valid sequence
            }
        }
        ++i;
        run = i;
    }
    out.append(s.data() + run, s.size() - run);
    out.push_back('"');
}

void append_int(std::string& out, std::int64_t v) {
    std::array<char, 24> buf;
    auto [end, ec] = std::to_chars(buf.data(), buf.data() + buf.size(), v);
    out.append(buf.data(), end);
}

void append_uint(std::string& out, std::uint64_t v) {
    std::array<char, 24> buf;
    auto [end, ec] = std::to_chars(buf.data(), buf.data() + buf.size(), v);
    out.append(buf.data(), end);
}

namespace {

bool is_digit(char c) {
    return c >= '0' && c <= '9';
}

// Scans a JSON number at text[i]; returns the index past it, or npos if malformed.
std::size_t scan_number(std::string_view t, std::size_t i) {
    if (i < t.size() && t[i] == '-') ++i;
    if (i >= t.size()) return std::string_view::npos;
    if (t[i] == '0') {
        ++i;
    } else if (t[i] >= '1' && t[i] <= '9') {
        while (i < t.size() && is_digit(t[i]))
            ++i;
    } else {
        return std::string_view::npos;
    }
    if (i < t.size() && t[i] == '.') {
        ++i;
        if (i >= t.size() || !is_digit(t[i])) return std::string_view::npos;
        while (i < t.size() && is_digit(t[i]))
            ++i;
    }
    if (i < t.size() && (t[i] == 'e' || t[i] == 'E')) {
        ++i;
        if (i < t.size() && (t[i] == '+' || t[i] == '-')) ++i;
        if (i >= t.size() || !is_digit(t[i])) return std::string_view::npos;
        while (i < t.size() && is_digit(t[i]))
            ++i;
    }
    return i;
}

bool is_hex(char c) {
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

// Scans a JSON string starting at the opening quote; returns the index past the closing quote,
// or npos. Raw control characters, bad escapes and invalid UTF-8 are malformed (a database in
// another encoding can hand us such bytes; the caller then falls back to a quoted string).
std::size_t scan_string(std::string_view t, std::size_t i) {
    ++i;
    while (i < t.size()) {
        const auto c = static_cast<unsigned char>(t[i]);
        if (c == '"') return i + 1;
        if (c < 0x20) return std::string_view::npos;
        if (c >= 0x80) {
            auto n = utf8_sequence_length(t, i);
            if (n == 0) return std::string_view::npos;
            i += n;
            continue;
        }
        if (c == '\\') {
            if (++i >= t.size()) return std::string_view::npos;
            switch (t[i]) {
            case '"':
            case '\\':
            case '/':
            case 'b':
            case 'f':
            case 'n':
            case 'r':
            case 't':
                ++i;
                break;
            case 'u':
                if (i + 4 >= t.size()) return std::string_view::npos;
                for (int k = 1; k <= 4; ++k) {
                    if (!is_hex(t[i + k])) return std::string_view::npos;
                }
                i += 5;
                break;
            default:
                return std::string_view::npos;
            }
            continue;
        }
        ++i;
    }
    return std::string_view::npos;
}

bool is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

} // namespace

bool is_number(std::string_view s) {
    return !s.empty() && scan_number(s, 0) == s.size();
}

bool append_minified(std::string& out, std::string_view t) {
    // An explicit stack of open containers instead of recursion: documents of any depth are
    // fine and no input can exhaust the call stack.
    enum class expect { value, key, colon, comma_or_end };
    std::vector<char> open; // '{' or '['
    const auto start_size = out.size();
    auto fail = [&] {
        out.resize(start_size);
        return false;
    };
    expect state = expect::value;
    std::size_t i = 0;
    bool done = false;
    while (true) {
        while (i < t.size() && is_space(t[i]))
            ++i;
        if (done) return i == t.size() ? true : fail();
        if (i >= t.size()) return fail();
        const char c = t[i];
        switch (state) {
        case expect::value:
        case expect::key: {
            if (state == expect::key && c != '"') {
                // "{}" closes right after the brace.
                if (c == '}' && !open.empty() && open.back() == '{' && out.back() == '{') {
                    out.push_back('}');
                    open.pop_back();
                    ++i;
                    state = expect::comma_or_end;
                    done = open.empty();
                    continue;
                }
                return fail();
            }
            if (c == '{' || c == '[') {
                out.push_back(c);
                open.push_back(c);
                ++i;
                state = c == '{' ? expect::key : expect::value;
                continue;
            }
            if (c == ']' && !open.empty() && open.back() == '[' && out.back() == '[') {
                out.push_back(']');
                open.pop_back();
                ++i;
                state = expect::comma_or_end;
                done = open.empty();
                continue;
            }
            std::size_t end;
            if (c == '"') {
                end = scan_string(t, i);
            } else if (c == '-' || is_digit(c)) {
                end = scan_number(t, i);
            } else if (t.substr(i, 4) == "true" || t.substr(i, 4) == "null") {
                end = i + 4;
            } else if (t.substr(i, 5) == "false") {
                end = i + 5;
            } else {
                return fail();
            }
            if (end == std::string_view::npos) return fail();
            out.append(t.data() + i, end - i);
            i = end;
            if (state == expect::key) {
                state = expect::colon;
            } else {
                state = expect::comma_or_end;
                done = open.empty();
            }
            continue;
        }
        case expect::colon:
            if (c != ':') return fail();
            out.push_back(':');
            ++i;
            state = expect::value;
            continue;
        case expect::comma_or_end:
            if (c == ',') {
                out.push_back(',');
                ++i;
                state = open.back() == '{' ? expect::key : expect::value;
                continue;
            }
            if ((c == '}' && open.back() == '{') || (c == ']' && open.back() == '[')) {
                out.push_back(c);
                open.pop_back();
                ++i;
                done = open.empty();
                continue;
            }
            return fail();
        }
    }
}

} // namespace pgpush::cdc::json
