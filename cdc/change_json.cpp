#include "cdc/change_json.hpp"

#include "cdc/json_writer.hpp"
#include "cdc/value_json.hpp"

namespace pgpush::cdc {

void append_row_json(std::string& out, const type_catalog& types, const relation_schema& relation,
                     const pgoutput::tuple& row, std::vector<std::string_view>* unchanged_toast) {
    out.push_back('{');
    bool first = true;
    for (std::size_t i = 0; i < row.size() && i < relation.columns.size(); ++i) {
        const auto& d = row[i];
        const auto& col = relation.columns[i];
        if (d.kind == pgoutput::datum_kind::missing) continue;
        if (d.kind == pgoutput::datum_kind::unchanged_toast) {
            if (unchanged_toast) unchanged_toast->push_back(col.name);
            continue;
        }
        if (!first) out.push_back(',');
        first = false;
        json::append_key(out, col.name);
        switch (d.kind) {
        case pgoutput::datum_kind::null:
            out.append("null");
            break;
        case pgoutput::datum_kind::text:
            append_value_json(out, types, col.type, d.data);
            break;
        case pgoutput::datum_kind::binary:
            append_binary_json(out, d.data);
            break;
        case pgoutput::datum_kind::unchanged_toast:
        case pgoutput::datum_kind::missing:
            break;
        }
    }
    out.push_back('}');
}

void append_change_json(std::string& out, const type_catalog& types, const change& c,
                        std::string_view commit_time_json) {
    std::vector<std::string_view> unchanged;
    out.append("{\"table\":");
    json::append_string(out, c.relation->qualified_name);
    out.append(",\"op\":\"");
    out.append(to_string(c.op));
    out.append("\",\"row\":");
    if (c.row) {
        append_row_json(out, types, *c.relation, *c.row, &unchanged);
    } else {
        out.append("null");
    }
    out.append(",\"old\":");
    if (c.old) {
        append_row_json(out, types, *c.relation, *c.old, nullptr);
    } else {
        out.append("null");
    }
    out.append(",\"position\":\"");
    append_position(out, c.pos);
    out.append("\",\"xid\":");
    json::append_uint(out, c.txn ? c.txn->xid : 0);
    out.append(",\"commit_time\":");
    out.append(commit_time_json);
    if (!unchanged.empty()) {
        out.append(",\"unchanged_toast\":[");
        for (std::size_t i = 0; i < unchanged.size(); ++i) {
            if (i) out.push_back(',');
            json::append_string(out, unchanged[i]);
        }
        out.push_back(']');
    }
    if (c.truncate_cascade) out.append(",\"cascade\":true");
    if (c.truncate_restart_identity) out.append(",\"restart_identity\":true");
    out.push_back('}');
}

} // namespace pgpush::cdc
