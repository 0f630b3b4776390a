#include "cdc/type_catalog.hpp"

#include <unordered_set>

namespace pgpush::cdc {

namespace {

struct builtin {
    oid id;
    const char* name;
    type_kind kind;
    oid array_id; // the OID of "name[]" (0: none listed)
};

// From PostgreSQL's pg_type.dat. These OIDs are fixed across versions.
constexpr builtin builtins[] = {
    {16, "bool", type_kind::boolean, 1000},
    {17, "bytea", type_kind::text, 1001},
    {18, "char", type_kind::text, 1002},
    {19, "name", type_kind::text, 1003},
    {20, "int8", type_kind::integer, 1016},
    {21, "int2", type_kind::integer, 1005},
    {22, "int2vector", type_kind::text, 1006},
    {23, "int4", type_kind::integer, 1007},
    {24, "regproc", type_kind::text, 1008},
    {25, "text", type_kind::text, 1009},
    {26, "oid", type_kind::integer, 1028},
    {27, "tid", type_kind::text, 1010},
    {28, "xid", type_kind::integer, 1011},
    {29, "cid", type_kind::integer, 1012},
    {30, "oidvector", type_kind::text, 1013},
    {114, "json", type_kind::json, 199},
    {142, "xml", type_kind::text, 143},
    {600, "point", type_kind::text, 1017},
    {601, "lseg", type_kind::text, 1018},
    {602, "path", type_kind::text, 1019},
    {603, "box", type_kind::text, 1020},
    {604, "polygon", type_kind::text, 1027},
    {628, "line", type_kind::text, 629},
    {650, "cidr", type_kind::text, 651},
    {700, "float4", type_kind::floating, 1021},
    {701, "float8", type_kind::floating, 1022},
    {718, "circle", type_kind::text, 719},
    {774, "macaddr8", type_kind::text, 775},
    {790, "money", type_kind::text, 791},
    {829, "macaddr", type_kind::text, 1040},
    {869, "inet", type_kind::text, 1041},
    {1033, "aclitem", type_kind::text, 1034},
    {1042, "bpchar", type_kind::text, 1014},
    {1043, "varchar", type_kind::text, 1015},
    {1082, "date", type_kind::text, 1182},
    {1083, "time", type_kind::text, 1183},
    {1114, "timestamp", type_kind::timestamp, 1115},
    {1184, "timestamptz", type_kind::timestamptz, 1185},
    {1186, "interval", type_kind::text, 1187},
    {1266, "timetz", type_kind::text, 1270},
    {1560, "bit", type_kind::text, 1561},
    {1562, "varbit", type_kind::text, 1563},
    {1700, "numeric", type_kind::numeric, 1231},
    {1790, "refcursor", type_kind::text, 2201},
    {2202, "regprocedure", type_kind::text, 2207},
    {2203, "regoper", type_kind::text, 2208},
    {2204, "regoperator", type_kind::text, 2209},
    {2205, "regclass", type_kind::text, 2210},
    {2206, "regtype", type_kind::text, 2211},
    {2249, "record", type_kind::text, 2287},
    {2275, "cstring", type_kind::text, 1263},
    {2950, "uuid", type_kind::text, 2951},
    {2970, "txid_snapshot", type_kind::text, 2949},
    {3220, "pg_lsn", type_kind::text, 3221},
    {3614, "tsvector", type_kind::text, 3643},
    {3615, "tsquery", type_kind::text, 3645},
    {3734, "regconfig", type_kind::text, 3735},
    {3769, "regdictionary", type_kind::text, 3770},
    {3802, "jsonb", type_kind::json, 3807},
    {3904, "int4range", type_kind::text, 3905},
    {3906, "numrange", type_kind::text, 3907},
    {3908, "tsrange", type_kind::text, 3909},
    {3910, "tstzrange", type_kind::text, 3911},
    {3912, "daterange", type_kind::text, 3913},
    {3926, "int8range", type_kind::text, 3927},
    {4072, "jsonpath", type_kind::text, 4073},
    {4089, "regnamespace", type_kind::text, 4090},
    {4096, "regrole", type_kind::text, 4097},
    {4191, "regcollation", type_kind::text, 4192},
    {4451, "int4multirange", type_kind::text, 6150},
    {4532, "nummultirange", type_kind::text, 6151},
    {4533, "tsmultirange", type_kind::text, 6152},
    {4534, "tstzmultirange", type_kind::text, 6153},
    {4535, "datemultirange", type_kind::text, 6155},
    {4536, "int8multirange", type_kind::text, 6157},
    {5038, "pg_snapshot", type_kind::text, 5039},
    {5069, "xid8", type_kind::integer, 271},
};

const type_info& text_fallback() {
    static const type_info t{0, "unknown", type_kind::text, 0, ',', {}};
    return t;
}

std::string qualified(const std::string& nsp, const std::string& name) {
    if (nsp.empty() || nsp == "pg_catalog") return name;
    return nsp + "." + name;
}

} // namespace

type_catalog::type_catalog() {
    for (const auto& b : builtins) {
        types_[b.id] = type_info{b.id, b.name, b.kind, 0, ',', {}};
        if (b.array_id != 0) {
            // box is the one built-in type whose arrays are delimited by ';'.
            char delim = b.id == 603 ? ';' : ',';
            types_[b.array_id] =
                type_info{b.array_id, std::string("_") + b.name, type_kind::array, b.id, delim, {}};
        }
    }
}

const type_info* type_catalog::find(oid id) const {
    auto it = types_.find(id);
    return it == types_.end() ? nullptr : &it->second;
}

const type_info& type_catalog::resolve(oid id) const {
    // Domains over domains are allowed; Postgres forbids cycles, the bound guards a bad catalog.
    for (int depth = 0; depth < 32; ++depth) {
        const type_info* t = find(id);
        if (t == nullptr) return text_fallback();
        if (t->kind != type_kind::domain) return *t;
        id = t->element;
    }
    return text_fallback();
}

void type_catalog::put(type_info info) {
    auto id = info.id;
    auto [it, inserted] = types_.try_emplace(id, std::move(info));
    if (!inserted) it->second = std::move(info);
}

void type_catalog::forget(oid id) {
    if (is_builtin(id)) return;
    types_.erase(id);
}

std::vector<oid> type_catalog::missing(oid id) const {
    std::vector<oid> out;
    std::vector<oid> todo{id};
    std::unordered_set<oid> seen;
    while (!todo.empty()) {
        auto cur = todo.back();
        todo.pop_back();
        if (cur == 0 || !seen.insert(cur).second) continue;
        const type_info* t = find(cur);
        if (t == nullptr) {
            out.push_back(cur);
            continue;
        }
        if (t->kind == type_kind::array || t->kind == type_kind::domain) todo.push_back(t->element);
        for (const auto& f : t->fields)
            todo.push_back(f.type);
    }
    return out;
}

type_info classify(const pg_type_row& row) {
    // Built-in types (and their arrays) keep the kinds the catalog starts with.
    static const type_catalog defaults;
    if (const type_info* known = defaults.find(row.id)) return *known;
    type_info t;
    t.id = row.id;
    t.name = qualified(row.nspname, row.typname);
    switch (row.typtype) {
    case 'd':
        t.kind = type_kind::domain;
        t.element = row.typbasetype;
        break;
    case 'c':
        t.kind = type_kind::composite;
        t.fields = row.fields;
        break;
    case 'b':
        if (row.typcategory == 'A' && row.typelem != 0 && row.is_array_subscript) {
            t.kind = type_kind::array;
            t.element = row.typelem;
            t.delimiter = row.typdelim;
        }
        break;
    default: // enums, ranges, multiranges, pseudo-types: their text form as a string
        break;
    }
    return t;
}

} // namespace pgpush::cdc
