#include "push/event_json.hpp"

#include <charconv>

#include <fmt/format.h>

#include "cdc/json_writer.hpp"
#include "cdc/pg_time.hpp"
#include "cdc/value_json.hpp"

namespace pgpush::push {

namespace pgoutput = cdc::pgoutput;

position_format::position_format(std::uint64_t epoch)
    : epoch_(epoch), prefix_(fmt::format("{:016x}/", epoch)) {}

std::string position_format::text(cdc::position p) const {
    std::string out;
    append(out, p);
    return out;
}

void position_format::append(std::string& out, cdc::position p) const {
    out += prefix_;
    cdc::append_position(out, p);
}

std::optional<std::pair<std::uint64_t, cdc::position>> position_format::parse(std::string_view t) {
    if (t.size() < 18 || t[16] != '/') return std::nullopt;
    std::uint64_t epoch = 0;
    auto [end, ec] = std::from_chars(t.data(), t.data() + 16, epoch, 16);
    if (ec != std::errc{} || end != t.data() + 16) return std::nullopt;
    auto p = cdc::parse_position(t.substr(17));
    if (!p) return std::nullopt;
    return std::pair{epoch, *p};
}

std::string_view event_name(rules::event_kind e) {
    return e == rules::event_kind::insert   ? "insert"
           : e == rules::event_kind::update ? "update"
                                            : "delete";
}

namespace {

// {"col":value,...} for the projected columns; unchanged TOASTed values are left out and named.
void append_projection(std::string& out, const cdc::type_catalog& types,
                       const cdc::relation_schema& rel, const pgoutput::tuple& row,
                       std::span<const std::size_t> columns, std::string* unchanged) {
    out.push_back('{');
    bool first = true;
    for (auto pos : columns) {
        if (pos >= row.size() || pos >= rel.columns.size()) continue;
        const auto& d = row[pos];
        const auto& col = rel.columns[pos];
        if (d.kind == pgoutput::datum_kind::unchanged_toast ||
            d.kind == pgoutput::datum_kind::missing) {
            if (unchanged && d.kind == pgoutput::datum_kind::unchanged_toast) {
                if (!unchanged->empty()) unchanged->push_back(',');
                cdc::json::append_string(*unchanged, col.name);
            }
            continue;
        }
        if (!first) out.push_back(',');
        first = false;
        cdc::json::append_key(out, col.name);
        if (d.kind == pgoutput::datum_kind::null) {
            out += "null";
        } else if (d.kind == pgoutput::datum_kind::binary) {
            cdc::append_binary_json(out, d.data);
        } else {
            cdc::append_value_json(out, types, col.type, d.data);
        }
    }
    out.push_back('}');
}

} // namespace

const std::string& event_json::commit_time(const cdc::change& c) {
    if (c.txn && (c.txn->commit_lsn != commit_time_of_ || commit_time_json_.empty())) {
        commit_time_json_.clear();
        cdc::append_rfc3339_json(commit_time_json_, c.txn->commit_time);
        commit_time_of_ = c.txn->commit_lsn;
    }
    if (commit_time_json_.empty()) commit_time_json_ = "null";
    return commit_time_json_;
}

std::shared_ptr<const std::string> event_json::body(const cdc::change& c,
                                                    std::span<const std::size_t> columns,
                                                    rules::event_kind event) {
    const bool full_old = c.old && c.old_kind == pgoutput::old_kind::full;
    std::string out, unchanged;
    const pgoutput::tuple* row = event == rules::event_kind::delete_ ? c.old : c.row;
    out += ",\"row\":";
    if (row) {
        append_projection(out, types_, *c.relation, *row, columns, &unchanged);
    } else {
        out += "{}";
    }
    if (event == rules::event_kind::update && full_old) {
        out += ",\"old\":";
        append_projection(out, types_, *c.relation, *c.old, columns, nullptr);
    }
    if (!unchanged.empty()) out += ",\"unchanged_toast\":[" + unchanged + "]";
    out += ",\"position\":\"";
    positions_.append(out, c.pos);
    out += "\",\"commit_time\":";
    out += commit_time(c);
    out += '}';
    return std::make_shared<const std::string>(std::move(out));
}

std::shared_ptr<const std::string> event_json::truncate_body(const cdc::change& c) {
    std::string out = ",\"position\":\"";
    positions_.append(out, c.pos);
    out += "\",\"commit_time\":";
    out += commit_time(c);
    out += '}';
    return std::make_shared<const std::string>(std::move(out));
}

} // namespace pgpush::push
