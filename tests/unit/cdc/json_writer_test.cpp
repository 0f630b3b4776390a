#include "cdc/json_writer.hpp"

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace pgpush::cdc::json {
namespace {

const std::string replacement = "\xEF\xBF\xBD"; // U+FFFD

std::string written(std::string_view s) {
    std::string out;
    append_string(out, s);
    return out;
}

// Reference UTF-8 validator (Unicode Table 3-7), independent of the code under test.
bool valid_utf8(std::string_view s) {
    std::size_t i = 0;
    auto byte = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
    auto in = [&](std::size_t k, int lo, int hi) {
        return k < s.size() && byte(k) >= lo && byte(k) <= hi;
    };
    while (i < s.size()) {
        const int b = byte(i);
        if (b <= 0x7F) {
            i += 1;
        } else if (b >= 0xC2 && b <= 0xDF && in(i + 1, 0x80, 0xBF)) {
            i += 2;
        } else if (b == 0xE0 && in(i + 1, 0xA0, 0xBF) && in(i + 2, 0x80, 0xBF)) {
            i += 3;
        } else if (((b >= 0xE1 && b <= 0xEC) || b == 0xEE || b == 0xEF) && in(i + 1, 0x80, 0xBF) &&
                   in(i + 2, 0x80, 0xBF)) {
            i += 3;
        } else if (b == 0xED && in(i + 1, 0x80, 0x9F) && in(i + 2, 0x80, 0xBF)) {
            i += 3;
        } else if (b == 0xF0 && in(i + 1, 0x90, 0xBF) && in(i + 2, 0x80, 0xBF) &&
                   in(i + 3, 0x80, 0xBF)) {
            i += 4;
        } else if (b >= 0xF1 && b <= 0xF3 && in(i + 1, 0x80, 0xBF) && in(i + 2, 0x80, 0xBF) &&
                   in(i + 3, 0x80, 0xBF)) {
            i += 4;
        } else if (b == 0xF4 && in(i + 1, 0x80, 0x8F) && in(i + 2, 0x80, 0xBF) &&
                   in(i + 3, 0x80, 0xBF)) {
            i += 4;
        } else {
            return false;
        }
    }
    return true;
}

// Appends `s`, checks the output parses as one JSON string, and returns what it decodes to.
std::string round_trip(std::string_view s) {
    auto out = written(s);
    auto parsed = nlohmann::json::parse(out, nullptr, /*allow_exceptions=*/false);
    if (!parsed.is_string()) {
        ADD_FAILURE() << "output does not parse as a JSON string: " << out;
        return {};
    }
    return parsed.get<std::string>();
}

// ---- append_string ----

TEST(json_writer, append_string_escapes_quotes_backslashes_and_named_controls) {
    struct {
        const char* name;
        std::string in;
        std::string expected;
    } cases[] = {
        {"empty", "", R"("")"},
        {"plain", "hello world", R"("hello world")"},
        {"quote", "a\"b", R"("a\"b")"},
        {"backslash", "a\\b", R"("a\\b")"},
        {"newline", "a\nb", R"("a\nb")"},
        {"carriage return", "\r", R"("\r")"},
        {"tab", "\t", R"("\t")"},
        {"backspace", "\b", R"("\b")"},
        {"form feed", "\f", R"("\f")"},
        {"slash is not escaped", "a/b", R"("a/b")"},
        {"DEL is not a control character in JSON", "\x7F", "\"\x7F\""},
        {"everything at once", "\"\\\n\t", R"("\"\\\n\t")"},
    };
    for (const auto& c : cases)
        EXPECT_EQ(written(c.in), c.expected) << c.name;
}

TEST(json_writer, append_string_writes_other_controls_as_u00xx) {
    EXPECT_EQ(written(std::string_view("\0", 1)), R"("\u0000")");
    EXPECT_EQ(written("\x01"), R"("\u0001")");
    EXPECT_EQ(written("\x0B"), R"("\u000b")");
    EXPECT_EQ(written("\x1F"), R"("\u001f")");
    EXPECT_EQ(written("a\x1B[0mb"), R"("a\u001b[0mb")");
}

TEST(json_writer, append_string_round_trips_every_ascii_character) {
    std::string all;
    for (int c = 0; c < 0x80; ++c)
        all.push_back(static_cast<char>(c));
    EXPECT_EQ(round_trip(all), all);
}

TEST(json_writer, append_string_only_appends) {
    std::string out = "prefix:";
    append_string(out, "x");
    EXPECT_EQ(out, R"(prefix:"x")");
}

TEST(json_writer, valid_multibyte_utf8_passes_through_unchanged) {
    const char* cases[] = {
        "\xC2\x80",         // U+0080, smallest 2-byte
        "\xC3\xA9",         // é
        "\xDF\xBF",         // U+07FF
        "\xE0\xA0\x80",     // U+0800, smallest 3-byte
        "\xE2\x82\xAC",     // €
        "\xED\x9F\xBF",     // U+D7FF, just below the surrogates
        "\xEE\x80\x80",     // U+E000, just above them
        "\xEF\xBF\xBD",     // U+FFFD itself
        "\xEF\xBF\xBF",     // U+FFFF
        "\xF0\x90\x80\x80", // U+10000, smallest 4-byte
        "\xF0\x9F\x98\x80", // 😀
        "\xF4\x8F\xBF\xBF", // U+10FFFF, the last code point
        "gr\xC3\xBC\xC3\x9F"
        "e \xE6\x97\xA5\xE6\x9C\xAC",
    };
    for (const char* c : cases) {
        EXPECT_EQ(written(c), "\"" + std::string(c) + "\"") << c;
        EXPECT_EQ(round_trip(c), c);
    }
}

TEST(json_writer, invalid_utf8_bytes_become_replacement_characters) {
    const std::string r = replacement;
    struct {
        const char* name;
        std::string in;
        std::string expected_inside_quotes;
    } cases[] = {
        {"lone continuation byte", "\x80", r},
        {"continuation between ascii",
         "a\xBF"
         "b",
         "a" + r + "b"},
        {"overlong NUL C0 80", "\xC0\x80", r + r},
        {"overlong C1 BF", "\xC1\xBF", r + r},
        {"overlong 3-byte E0 80 80", "\xE0\x80\x80", r + r + r},
        {"overlong 4-byte F0 80 80 80", "\xF0\x80\x80\x80", r + r + r + r},
        {"surrogate ED A0 80", "\xED\xA0\x80", r + r + r},
        {"surrogate ED BF BF", "\xED\xBF\xBF", r + r + r},
        {"past U+10FFFF F4 90 80 80", "\xF4\x90\x80\x80", r + r + r + r},
        {"F5 lead byte", "\xF5\x80\x80\x80", r + r + r + r},
        {"FF byte", "\xFF", r},
        {"FE byte", "x\xFE", "x" + r},
    };
    for (const auto& c : cases) {
        EXPECT_EQ(written(c.in), "\"" + c.expected_inside_quotes + "\"") << c.name;
    }
}

TEST(json_writer, truncated_utf8_sequence_becomes_replacement_and_keeps_what_follows) {
    struct {
        const char* name;
        std::string in;
        std::string tail; // what must follow the replacement character(s)
    } cases[] = {
        {"2-byte cut at end", "a\xC3", ""},
        {"3-byte cut after one", "a\xE2", ""},
        {"3-byte cut after two", "a\xE2\x82", ""},
        {"4-byte cut after three", "a\xF0\x9F\x98", ""},
        {"3-byte cut before ascii", "a\xE2\x82z", "z"},
        {"4-byte cut before a valid char", "a\xF0\x9F\xC3\xA9", "\xC3\xA9"},
    };
    for (const auto& c : cases) {
        auto decoded = round_trip(c.in);
        // "a", then one or more U+FFFD and nothing else for the broken bytes, then the tail.
        ASSERT_EQ(decoded.substr(0, 1), "a") << c.name;
        std::size_t i = 1, replacements = 0;
        while (decoded.compare(i, replacement.size(), replacement) == 0) {
            i += replacement.size();
            ++replacements;
        }
        EXPECT_GE(replacements, 1u) << c.name;
        EXPECT_EQ(decoded.substr(i), c.tail) << c.name;
    }
}

// Exhaustive over one- and two-byte inputs: the output always parses; valid input decodes to
// itself; invalid input decodes to valid UTF-8 containing U+FFFD.
TEST(json_writer, append_string_output_always_parses_for_every_two_byte_input) {
    for (int a = 0; a < 256; ++a) {
        for (int b = -1; b < 256; ++b) {
            std::string in(1, static_cast<char>(a));
            if (b >= 0) in.push_back(static_cast<char>(b));
            auto decoded = round_trip(in);
            if (valid_utf8(in)) {
                ASSERT_EQ(decoded, in) << "bytes " << a << "," << b;
            } else {
                ASSERT_NE(decoded.find(replacement), std::string::npos)
                    << "bytes " << a << "," << b;
            }
        }
    }
}

TEST(json_writer, append_string_output_always_parses_for_pseudo_random_input) {
    // Fixed-seed LCG biased towards bytes that start or continue UTF-8 sequences.
    std::uint32_t state = 12345;
    auto next = [&] {
        state = state * 1664525u + 1013904223u;
        return state >> 8;
    };
    const unsigned char interesting[] = {0x00, 0x1F, '"',  '\\', 'a',  0x7F, 0x80, 0x8F,
                                         0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC2, 0xDF, 0xE0,
                                         0xED, 0xEF, 0xF0, 0xF4, 0xF5, 0xFF};
    for (int n = 0; n < 20000; ++n) {
        std::string in;
        auto len = next() % 8;
        for (std::uint32_t k = 0; k < len; ++k) {
            in.push_back(static_cast<char>(interesting[next() % sizeof interesting]));
        }
        auto decoded = round_trip(in);
        if (valid_utf8(in)) {
            ASSERT_EQ(decoded, in) << "case " << n;
        } else {
            ASSERT_TRUE(valid_utf8(decoded)) << "case " << n;
            ASSERT_NE(decoded.find(replacement), std::string::npos) << "case " << n;
        }
    }
}

// ---- numbers ----

TEST(json_writer, append_int_and_uint_print_the_extremes) {
    std::string out;
    append_int(out, 0);
    out.push_back(' ');
    append_int(out, -42);
    out.push_back(' ');
    append_int(out, std::numeric_limits<std::int64_t>::min());
    out.push_back(' ');
    append_int(out, std::numeric_limits<std::int64_t>::max());
    out.push_back(' ');
    append_uint(out, std::numeric_limits<std::uint64_t>::max());
    EXPECT_EQ(out, "0 -42 -9223372036854775808 9223372036854775807 18446744073709551615");
}

TEST(json_writer, is_number_accepts_exactly_rfc_8259_numbers) {
    const char* valid[] = {"0",    "-0",      "7",       "123", "-5",
                           "0.5",  "-0.5",    "-0.5e+3", "1e5", "1E5",
                           "1e-5", "1.0E+10", "10.01",   "0e0", "123456789012345678901234567890",
                           "1e-07"};
    for (const char* s : valid)
        EXPECT_TRUE(is_number(s)) << s;

    const char* invalid[] = {"",          "+1",    ".5",    "5.",   "01",  "-01",   "00",
                             "-",         "1e",    "1e+",   "1e-",  "NaN", "nan",   "Infinity",
                             "-Infinity", "0x10",  " 1",    "1 ",   "1,5", "1.2.3", "--1",
                             "e5",        "1_000", "1e5.0", "0.e1", "-.5", "1f",    "true"};
    for (const char* s : invalid)
        EXPECT_FALSE(is_number(s)) << s;
}

// ---- append_minified ----

std::string minify(std::string_view text, bool* ok = nullptr) {
    std::string out;
    bool r = append_minified(out, text);
    if (ok) *ok = r;
    return out;
}

TEST(json_writer, minified_documents_drop_whitespace_outside_strings) {
    struct {
        const char* name;
        const char* in;
        const char* expected;
    } cases[] = {
        {"object", R"({ "a" : 1 , "b" : [ 1 , 2 ] })", R"({"a":1,"b":[1,2]})"},
        {"all four whitespace characters", " \t\n\r[\t1 ,\n2\r]\n ", "[1,2]"},
        {"strings keep their spaces", R"({ "a b" : "  x  y  " })", R"({"a b":"  x  y  "})"},
        {"escapes are kept as written", R"([ "a\"b" , "\u00e9\/\\" ])", R"(["a\"b","\u00e9\/\\"])"},
        {"brackets and commas inside strings", R"([ "{ ] , :" ])", R"(["{ ] , :"])"},
        {"empty object with spaces", "{ }", "{}"},
        {"empty array with spaces", "[ ]", "[]"},
        {"nested", R"({"a": {"b": [ {}, [], {"c": null} ] }, "d": true, "e": false, "f": -1.5e3})",
         R"({"a":{"b":[{},[],{"c":null}]},"d":true,"e":false,"f":-1.5e3})"},
        {"top-level number", " 42 ", "42"},
        {"top-level string", R"( "s" )", R"("s")"},
        {"top-level null", "null", "null"},
        {"top-level true", "true", "true"},
        {"top-level false", "\nfalse\n", "false"},
        {"arrays of arrays", "[[ ], [[ ]], [1, [2, [3]]]]", "[[],[[]],[1,[2,[3]]]]"},
        {"utf-8 inside strings", "[\"gr\xC3\xBC\xC3\x9F\"]", "[\"gr\xC3\xBC\xC3\x9F\"]"},
        {"numbers of every shape", "[0, -0, 0.25, 1E+2, 2e-3]", "[0,-0,0.25,1E+2,2e-3]"},
    };
    for (const auto& c : cases) {
        bool ok = false;
        auto out = minify(c.in, &ok);
        EXPECT_TRUE(ok) << c.name;
        EXPECT_EQ(out, c.expected) << c.name;
        if (ok) {
            EXPECT_EQ(nlohmann::json::parse(out), nlohmann::json::parse(c.in)) << c.name;
        }
    }
}

TEST(json_writer, append_minified_appends_after_existing_text) {
    std::string out = "{\"payload\":";
    ASSERT_TRUE(append_minified(out, " [ 1 ] "));
    EXPECT_EQ(out, "{\"payload\":[1]");
}

TEST(json_writer, append_minified_handles_deep_nesting_without_recursion) {
    constexpr std::size_t depth = 100000;
    const std::string deep = std::string(depth, '[') + std::string(depth, ']');
    std::string out;
    ASSERT_TRUE(append_minified(out, deep));
    EXPECT_EQ(out, deep);

    std::string objects;
    for (std::size_t i = 0; i < depth; ++i)
        objects += "{\"a\": ";
    objects += "1";
    objects += std::string(depth, '}');
    std::string expected;
    for (std::size_t i = 0; i < depth; ++i)
        expected += "{\"a\":";
    expected += "1" + std::string(depth, '}');
    out.clear();
    ASSERT_TRUE(append_minified(out, objects));
    EXPECT_EQ(out, expected);

    out = "keep";
    EXPECT_FALSE(append_minified(out, std::string(depth, '[')));
    EXPECT_EQ(out, "keep");
}

TEST(json_writer, invalid_documents_return_false_and_append_nothing) {
    struct {
        const char* name;
        std::string in;
    } cases[] = {
        {"empty", ""},
        {"only whitespace", "  \n "},
        {"trailing comma in array", "[1,]"},
        {"trailing comma in object", R"({"a":1,})"},
        {"leading comma", "[,1]"},
        {"comma only in object", "{,}"},
        {"missing colon", R"({"a" 1})"},
        {"missing value", R"({"a":})"},
        {"comma instead of colon", R"({"a",1})"},
        {"colon in array", R"(["a":1])"},
        {"missing comma between members", R"({"a":1 "b":2})"},
        {"missing comma between elements", "[1 2]"},
        {"unclosed array", "[1"},
        {"unclosed object", "{"},
        {"unclosed nested", R"({"a":[1,2})"},
        {"unclosed string", R"("abc)"},
        {"unclosed string in array", R"(["abc])"},
        {"extra closing bracket", "[1]]"},
        {"extra closing brace", R"({"a":1}})"},
        {"mismatched brackets", "[}"},
        {"mismatched braces", "{]"},
        {"mismatched close", "[1}"},
        {"lone close", "]"},
        {"lone comma", ","},
        {"non-string key", "{1:2}"},
        {"bare word", "abc"},
        {"capitalised literal", "True"},
        {"truncated literal", "tru"},
        {"truncated null", "nul"},
        {"literal with a tail", "nullx"},
        {"literal with a tail in array", "[truex]"},
        {"undefined", "undefined"},
        {"NaN", "NaN"},
        {"two top-level values", "1 2"},
        {"two top-level objects", "{} {}"},
        {"value then garbage", "[] x"},
        {"control char in string", "\"a\x01"
                                   "b\""},
        {"raw tab in string", "\"a\tb\""},
        {"raw newline in string", "[\"a\nb\"]"},
        {"bad escape", R"("\x")"},
        {"escape of a quote-less end", "\"\\"},
        {"short unicode escape", R"("\u12")"},
        {"non-hex unicode escape", R"("\u12G4")"},
        {"unicode escape at the end", R"("\u1234)"},
        {"leading zero", "01"},
        {"lone minus", "-"},
        {"trailing point", "1."},
        {"leading point", ".5"},
        {"plus sign", "+1"},
        {"vertical tab is not whitespace", "[1,\v2]"},
        {"single quotes", "['a']"},
        {"comment", "[1] // c"},
    };
    for (const auto& c : cases) {
        std::string out = "unchanged";
        EXPECT_FALSE(append_minified(out, c.in)) << c.name;
        EXPECT_EQ(out, "unchanged") << c.name;
        // Cross-check the table against a real parser.
        EXPECT_FALSE(nlohmann::json::accept(c.in)) << c.name << " is valid JSON after all";
    }
}

// RFC 8259 text is UTF-8: a document whose strings hold invalid UTF-8 is not valid JSON, and
// append_minified promises to refuse what is not. (A SQL_ASCII database stores json values without
// checking their encoding, so such bytes can reach us.)
TEST(json_writer, invalid_utf8_inside_a_string_is_not_a_valid_document) {
    struct {
        const char* name;
        std::string in;
    } cases[] = {
        {"overlong NUL", "\"\xC0\x80\""},
        {"lone continuation byte in an array", "[\"a\x80\"]"},
        {"surrogate in a key", "{\"\xED\xA0\x80\":1}"},
    };
    for (const auto& c : cases) {
        ASSERT_FALSE(nlohmann::json::accept(c.in)) << c.name;
        std::string out = "unchanged";
        EXPECT_FALSE(append_minified(out, c.in)) << c.name;
        EXPECT_EQ(out, "unchanged") << c.name;
    }
}

} // namespace
} // namespace pgpush::cdc::json
