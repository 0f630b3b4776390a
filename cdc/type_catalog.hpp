#pragma once

// What pgpush knows about Postgres data types: enough to turn a column's text output into the
// right JSON. Pure data; `catalog_loader` fills it from pg_type for types that are not built in.

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "cdc/pgoutput.hpp"

namespace pgpush::cdc {

// How a type's text output maps to JSON.
enum class type_kind : std::uint8_t {
    text,        // a JSON string of the text output (text, uuid, bytea, inet, enums, ranges, ...)
    boolean,     // "t"/"f" -> true/false
    integer,     // int2/int4/int8/oid -> number
    floating,    // float4/float8 -> number; NaN and +-Infinity -> strings
    numeric,     // number when it round-trips through a double, else a string: never inexact
    json,        // json, jsonb -> embedded as JSON
    timestamp,   // -> "2024-01-02T03:04:05.123"
    timestamptz, // -> "2024-01-02T03:04:05.123Z" (RFC 3339)
    array,       // -> JSON array of the element type
    composite,   // -> JSON object of the fields
    domain,      // -> as the base type
};

struct type_field {
    std::string name;
    oid type = 0;
};

struct type_info {
    oid id = 0;
    std::string name; // "int4", or "schema.name" for types outside pg_catalog
    type_kind kind = type_kind::text;
    oid element = 0;                // array: element type; domain: base type
    char delimiter = ',';           // array element delimiter (';' for box)
    std::vector<type_field> fields; // composite: attributes in order
};

// One row of pg_type (with the attributes of a composite), as catalog_loader reads it.
struct pg_type_row {
    oid id = 0;
    std::string nspname;
    std::string typname;
    char typtype = 'b'; // b(ase), c(omposite), d(omain), e(num), p(seudo), r(ange), m(ultirange)
    char typcategory = 'U'; // A(rray), B(oolean), N(umeric), ...
    oid typelem = 0;
    char typdelim = ',';
    oid typbasetype = 0;
    bool is_array_subscript = false; // typsubscript = array_subscript_handler: a true array
    std::vector<type_field> fields;
};

// The type_info a pg_type row describes. Built-in OIDs keep their fixed kinds; everything else is
// classified by typtype/typcategory, falling back to text (always safe: a string of the text form).
type_info classify(const pg_type_row& row);

class type_catalog {
public:
    // Starts with the built-in types of PostgreSQL 14+ (OIDs below 10000, which never change).
    type_catalog();

    // nullptr when unknown.
    const type_info* find(oid id) const;

    // The type to encode `id` as: domains followed to their base; unknown types are text.
    const type_info& resolve(oid id) const;

    // Adds or replaces. Entries live as long as the catalog: pointers from find() stay valid
    // (a replaced entry is updated in place).
    void put(type_info info);

    // OIDs that `id` needs (itself, array elements, domain bases, composite fields) and that are
    // not in the catalog yet. What catalog_loader must fetch before values of `id` arrive.
    std::vector<oid> missing(oid id) const;

    // Drops what is known about a non-built-in type so it is fetched afresh (after a Type message
    // says it may have changed).
    void forget(oid id);

    static bool is_builtin(oid id) { return id < 10000; }

private:
    std::unordered_map<oid, type_info> types_;
};

} // namespace pgpush::cdc
