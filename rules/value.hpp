#pragma once

// Values as the rules engine compares them, with PostgreSQL's semantics: SQL three-valued logic,
// numbers compared across integer/numeric/float the way Postgres casts them, text in C collation
// (byte order of UTF-8, which is code point order), timestamps as instants.
//
// A value does not own its text: it borrows from a row being matched or from the compiled
// predicate that holds its constants.

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace pgpush::rules {

enum class value_type : std::uint8_t {
    null,
    boolean,
    integer,  // int64
    decimal,  // exact number, its text ("12.50", "-3", "NaN", "Infinity")
    floating, // double (float4/float8 columns)
    text,
    timestamp, // microseconds since 2000-01-01 UTC (Postgres' epoch, so its whole range
               // fits); +-infinity as int64 max/min
    list,      // a list of values (the right side of IN)
};

// The comparison family of a column, from its Postgres type. Decides how a row's text value is
// read and how constants compared with the column are coerced.
enum class column_family : std::uint8_t {
    boolean,
    integer,   // int2, int4, int8, oid
    numeric,   // numeric
    floating,  // float8
    real,      // float4: values are widened to double; untyped literals are read as float4
    text,      // text, varchar, char, name, uuid, citext, enums, ...
    timestamp, // timestamptz, timestamp
    date,      // date: values are midnight UTC; literals are read as dates (time and zone ignored)
    other,     // anything else: compared by its text form for = and <> only
};

std::string_view to_string(column_family f);

// Whether values of two families compare with each other: the same family, two numeric ones or
// two temporal ones (Postgres casts between them implicitly).
bool comparable_families(column_family a, column_family b);

class value {
public:
    constexpr value() = default;

    static value null() { return {}; }
    static value boolean(bool b) {
        value v(value_type::boolean);
        v.i_ = b ? 1 : 0;
        return v;
    }
    static value integer(std::int64_t i) {
        value v(value_type::integer);
        v.i_ = i;
        return v;
    }
    static value floating(double d) {
        value v(value_type::floating);
        v.d_ = d;
        return v;
    }
    static value decimal(std::string_view digits) {
        value v(value_type::decimal);
        v.s_ = digits;
        return v;
    }
    static value text(std::string_view s) {
        value v(value_type::text);
        v.s_ = s;
        return v;
    }
    static value timestamp(std::int64_t micros) {
        value v(value_type::timestamp);
        v.i_ = micros;
        return v;
    }
    static value list(std::span<const value> items) {
        value v(value_type::list);
        v.list_ = items;
        return v;
    }

    value_type type() const { return type_; }
    bool is_null() const { return type_ == value_type::null; }
    bool is_number() const {
        return type_ == value_type::integer || type_ == value_type::decimal ||
               type_ == value_type::floating;
    }
    bool as_bool() const { return i_ != 0; }
    std::int64_t as_int() const { return i_; }
    double as_double() const { return d_; }
    std::string_view as_text() const { return s_; } // text and decimal
    std::span<const value> as_list() const { return list_; }

private:
    explicit constexpr value(value_type t) : type_(t) {}

    value_type type_ = value_type::null;
    union {
        std::int64_t i_ = 0;
        double d_;
    };
    std::string_view s_;
    std::span<const value> list_;
};

// SQL's three-valued truth.
enum class tri : std::uint8_t { false_, true_, unknown };

constexpr tri tri_not(tri t) {
    return t == tri::unknown ? tri::unknown : (t == tri::true_ ? tri::false_ : tri::true_);
}
constexpr tri tri_of(bool b) {
    return b ? tri::true_ : tri::false_;
}

// The Postgres type whose input function reads text meeting a column: finer than the family
// where types of one family read text differently (integer widths, uuid, "char").
enum class input_type : std::uint8_t {
    boolean,
    int2,
    int4,
    int8,
    oid,
    numeric,
    float4,
    float8,
    text,      // text, varchar, name: any text
    padded,    // char(n): any text; compared with the padding the stream carries it with (in SQL
               // textin(bpcharout(column)): Postgres' own casts to text drop it)
    uuid,      // read by uuid_in, compared by its canonical text
    text_cast, // other types of the text family ("char", domains, extension types): compared by
               // their text (column::text in SQL)
    timestamp,
    date,
    other,
};

// The input type of a column from its family and its type's name as format_type() ("integer",
// "character varying(20)", `"char"`) or pg_type ("int4", "varchar", "char") spells it. A
// domain's name says nothing of its base type: an integer domain reads as bigint, a text-family
// domain as text_cast.
input_type input_type_of(column_family family, std::string_view type_name);

// Reads `text` exactly as Postgres' input function for `type` does (int2in/int4in/int8in, oidin,
// numeric_in, float4in/float8in, boolin, uuid_in; timestamps and dates by parse_timestamp and
// parse_date): the value it compares as, or nullopt when Postgres would refuse the text (invalid
// syntax, out of range) and for any text holding a NUL byte, which no Postgres value can. Text
// values borrow `text`; decimals and canonical uuids are written to `storage` and borrow it.
//  - integers: surrounding whitespace and a sign, digits, nothing else, within the type's range;
//  - numeric: also a point, an exponent, NaN and infinities (an integer that fits is an integer);
//  - float4/float8: what glibc's strtod/strtof read in the C locale (hex, "inf", "nan"), out of
//    range refused (underflow to zero too);
//  - boolean: t/true/y/yes/on/1 and f/false/n/no/off/0 and their prefixes, any case.
std::optional<value> read_input(input_type type, std::string_view text, std::string& storage);

// Compares two non-null values as Postgres would after its implicit casts. Returns <0, 0, >0, or
// nullopt when they cannot be compared (number vs boolean, text that is not a number compared
// with a number, ...): the comparison is then unknown, which denies.
//  - numbers: float if either is float (numeric/int cast to float8), else exact decimal;
//    NaN equals NaN and sorts above everything, as in Postgres.
//  - text vs number/timestamp/boolean: the text is read by the other type's input function
//    (read_input: bigint for an integer, numeric, double precision, timestamptz, boolean);
//    text that function refuses cannot be compared.
//  - text vs text: byte order (C collation).
std::optional<int> compare(const value& a, const value& b);

// Reads a column's text output (Postgres text format, as the replication stream carries it)
// into a value of its family. Text families borrow `text`. Malformed input gives null.
value from_pg_text(column_family family, std::string_view text);

// The canonical text of a decimal number ("-012.50" -> "-12.5", "1e3" -> "1000", "0.0" -> "0",
// "nan" -> "NaN", "-inf" -> "-Infinity"). nullopt if numeric_in would refuse it (not a number, or
// beyond numeric's range: 131,072 digits before the point, 16,383 after).
std::optional<std::string> canonical_decimal(std::string_view text);

// Parses a timestamp literal: Postgres' output ("2024-01-02 03:04:05.5+02"), ISO 8601 / RFC 3339
// ("2024-01-02T03:04:05Z"), a date ("2024-01-02", midnight UTC), "infinity", "-infinity". A
// timestamp without an offset is taken as UTC. Microseconds since 2000-01-01 UTC; nullopt if
// malformed or outside Postgres' range.
std::optional<std::int64_t> parse_timestamp(std::string_view text);

// Parses a date literal as Postgres' date input does: the date as written, any time of day and
// zone ignored ("2024-06-01 23:00-05" is June 1st). Midnight UTC of that date, in microseconds
// since 2000-01-01.
std::optional<std::int64_t> parse_date(std::string_view text);

// Exact decimal text of a number for hashing: "7" for 7, 7.0 and "7.000"; NaN and infinities by
// name. Values that compare equal (as compare() says) within one column family have equal keys.
// `family` is the column's: for floating columns every number goes through double first, as
// Postgres casts it. nullopt for values that never equal anything in that family.
std::optional<std::string> index_key(const value& v, column_family family);

} // namespace pgpush::rules
