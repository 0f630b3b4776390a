#include "push/schema.hpp"

namespace pgpush::push {

rules::column_family family_of(cdc::oid type, const cdc::type_catalog& types) {
    const cdc::type_info& t = types.resolve(type);
    switch (t.id) {
    case 16:
        return rules::column_family::boolean;
    case 20:
    case 21:
    case 23:
    case 26:
        return rules::column_family::integer;
    case 1700:
        return rules::column_family::numeric;
    case 700:
        return rules::column_family::real;
    case 701:
        return rules::column_family::floating;
    case 1114:
    case 1184:
        return rules::column_family::timestamp;
    case 1082:
        return rules::column_family::date;
    case 18:   // "char"
    case 19:   // name
    case 25:   // text
    case 1042: // bpchar
    case 1043: // varchar
    case 2950: // uuid: its text order is its byte order
        return rules::column_family::text;
    default:
        // Enums order by declaration, json/arrays/geometry have no text order: = and <> only.
        return rules::column_family::other;
    }
}

rules::table_schema rules_schema(const cdc::table_description& table,
                                 const cdc::type_catalog& types) {
    rules::table_schema s{table.schema, table.name, {}};
    for (const auto& c : table.columns) {
        s.columns.push_back({c.name, family_of(c.type, types), c.type_name});
    }
    return s;
}

rules::table_schema rules_schema(const cdc::relation_schema& relation,
                                 const cdc::type_catalog& types) {
    rules::table_schema s{relation.schema, relation.name, {}};
    for (const auto& c : relation.columns) {
        const cdc::type_info& t = types.resolve(c.type);
        s.columns.push_back({c.name, family_of(c.type, types), t.name});
    }
    return s;
}

namespace {

rules::value value_of(const cdc::pgoutput::datum& d, rules::column_family f) {
    if (d.kind != cdc::pgoutput::datum_kind::text) return rules::value::null(); // null, toast
    return rules::from_pg_text(f, d.data);
}

} // namespace

void load_values(const cdc::change& c, const rules::table_schema& schema,
                 std::span<const std::size_t> columns, std::vector<rules::value>& row,
                 std::vector<rules::value>& old) {
    const std::size_t width = schema.columns.size();
    const bool full_old = c.old && c.old_kind == cdc::pgoutput::old_kind::full;
    // The old row is matched when it is whole (REPLICA IDENTITY FULL). For a delete without it,
    // the key columns Postgres sent are all there is: a filter reading other columns is unknown
    // there and denies. For an update without it, the old row is unknown.
    const bool use_old = c.old && (full_old || c.op == cdc::change_op::delete_);
    row.assign(width, rules::value::null());
    old.clear();
    if (use_old) old.assign(width, rules::value::null());
    for (auto pos : columns) {
        if (pos >= width) continue;
        const auto family = schema.columns[pos].family;
        if (c.row && pos < c.row->size()) row[pos] = value_of((*c.row)[pos], family);
        if (use_old && pos < c.old->size()) old[pos] = value_of((*c.old)[pos], family);
    }
}

} // namespace pgpush::push
