#include "push/lookup_table.hpp"

#include <algorithm>

#include "cdc/value_json.hpp"
#include "push/schema.hpp"

namespace pgpush::push {

namespace pgoutput = cdc::pgoutput;

lookup_table::lookup_table(const rules::lookup_rule& rule, const table_state& table,
                           const cdc::type_catalog& types)
    : rule_(rule), types_(types), schema_(table.schema) {
    for (const auto& name : rule_.columns) {
        auto at = schema_.find(name);
        if (!at) {
            throw rules::bind_error(rules::bind_error_code::unknown_column, {},
                                    "lookup." + rule_.name + ": column \"" + name +
                                        "\" does not exist in " + rule_.table);
        }
        positions_.push_back(*at);
        column_names_.push_back(name);
        column_types_.push_back(table.types[*at]);
    }
    auto index = [&](const std::string& name) {
        return static_cast<std::size_t>(
            std::find(column_names_.begin(), column_names_.end(), name) - column_names_.begin());
    };
    key_at_ = index(rule_.key_column);
    output_at_ = index(rule_.output);
    filter_ = rules::bind_lookup_filter(rule_, schema_);
}

std::optional<std::pair<std::string, std::string>>
lookup_table::contribution(const std::vector<rules::value>& values,
                           const std::vector<std::optional<std::string>>& text) const {
    const std::size_t key_pos = positions_[key_at_];
    if (key_pos >= values.size() || values[key_pos].is_null()) return std::nullopt;
    if (filter_ && filter_->evaluate({values, {}, nullptr}) != rules::tri::true_)
        return std::nullopt;
    auto key = rules::index_key(values[key_pos], schema_.columns[key_pos].family);
    if (!key) return std::nullopt;
    std::string out;
    if (!text[output_at_]) {
        out = "null"; // as in SQL, a NULL in the result makes `x in lookup` unknown, never true
    } else {
        cdc::append_value_json(out, types_, column_types_[output_at_], *text[output_at_]);
    }
    return std::pair{std::move(*key), std::move(out)};
}

std::uint32_t lookup_table::intern(const std::string& text) {
    auto [it, fresh] = text_ids_.try_emplace(text, 0);
    if (fresh) {
        std::uint32_t id;
        if (!free_ids_.empty()) {
            id = free_ids_.back();
            free_ids_.pop_back();
            texts_[id] = text;
        } else {
            id = static_cast<std::uint32_t>(texts_.size());
            texts_.push_back(text);
            text_uses_.push_back(0);
        }
        it->second = id;
    }
    ++text_uses_[it->second];
    return it->second;
}

void lookup_table::release(std::uint32_t id) {
    if (--text_uses_[id] != 0) return;
    text_ids_.erase(texts_[id]);
    texts_[id].clear();
    texts_[id].shrink_to_fit();
    free_ids_.push_back(id);
}

void lookup_table::add(const std::pair<std::string, std::string>& kv,
                       std::vector<std::string>* changed) {
    auto& e = by_key_[kv.first];
    ++rows_;
    auto known = text_ids_.find(kv.second);
    if (known != text_ids_.end()) {
        for (auto& [v, n] : e.values) {
            if (v == known->second) {
                ++n;
                return;
            }
        }
    }
    e.values.emplace_back(intern(kv.second), 1);
    e.cached.reset();
    if (changed) changed->push_back(kv.first);
}

void lookup_table::remove(const std::pair<std::string, std::string>& kv,
                          std::vector<std::string>* changed) {
    auto it = by_key_.find(kv.first);
    auto known = text_ids_.find(kv.second);
    if (it == by_key_.end() || known == text_ids_.end()) return;
    auto& values = it->second.values;
    for (auto v = values.begin(); v != values.end(); ++v) {
        if (v->first != known->second) continue;
        --rows_;
        if (--v->second == 0) {
            release(v->first);
            values.erase(v);
            it->second.cached.reset();
            if (changed) changed->push_back(kv.first);
            if (values.empty()) by_key_.erase(it);
        }
        return;
    }
}

void lookup_table::load(const std::vector<std::optional<std::string>>& row) {
    scratch_.assign(schema_.columns.size(), rules::value::null());
    for (std::size_t i = 0; i < positions_.size() && i < row.size(); ++i) {
        if (row[i])
            scratch_[positions_[i]] =
                rules::from_pg_text(schema_.columns[positions_[i]].family, *row[i]);
    }
    if (auto kv = contribution(scratch_, row)) add(*kv, nullptr);
}

bool lookup_table::apply(const cdc::change& c, std::vector<std::string>& changed) {
    if (c.op == cdc::change_op::truncate) {
        for (const auto& [key, e] : by_key_)
            changed.push_back(key);
        by_key_.clear();
        texts_.clear();
        text_uses_.clear();
        free_ids_.clear();
        text_ids_.clear();
        rows_ = 0;
        return true;
    }
    // A tuple's values for the lookup's columns; false when one of them was not sent (an old
    // key tuple without REPLICA IDENTITY FULL lacks the others). An unchanged TOASTed value of a
    // new row is the old row's.
    auto read = [&](const pgoutput::tuple& t, const pgoutput::tuple* fallback,
                    std::vector<rules::value>& values,
                    std::vector<std::optional<std::string>>& text) {
        values.assign(schema_.columns.size(), rules::value::null());
        text.assign(positions_.size(), std::nullopt);
        for (std::size_t i = 0; i < positions_.size(); ++i) {
            const auto pos = positions_[i];
            if (pos >= t.size()) return false;
            const auto* d = &t[pos];
            if (d->kind == pgoutput::datum_kind::unchanged_toast && fallback &&
                pos < fallback->size())
                d = &(*fallback)[pos];
            if (d->kind == pgoutput::datum_kind::missing ||
                d->kind == pgoutput::datum_kind::unchanged_toast)
                return false;
            if (d->kind != pgoutput::datum_kind::text) continue; // NULL (binary is not used)
            text[i] = std::string(d->data);
            values[pos] = rules::from_pg_text(schema_.columns[pos].family, *text[i]);
        }
        return true;
    };
    std::vector<std::optional<std::string>> new_text, old_text;
    std::optional<std::pair<std::string, std::string>> before, after;
    const bool full_old = c.old && c.old_kind == pgoutput::old_kind::full;
    if (c.op == cdc::change_op::update || c.op == cdc::change_op::delete_) {
        if (!c.old || !read(*c.old, nullptr, scratch_old_, old_text)) return false;
        before = contribution(scratch_old_, old_text);
    }
    if (c.op == cdc::change_op::update || c.op == cdc::change_op::insert) {
        if (!c.row || !read(*c.row, full_old ? c.old : nullptr, scratch_, new_text)) return false;
        after = contribution(scratch_, new_text);
    }
    if (before == after) return true;
    if (before) remove(*before, &changed);
    if (after) add(*after, &changed);
    // One key listed once.
    std::sort(changed.begin(), changed.end());
    changed.erase(std::unique(changed.begin(), changed.end()), changed.end());
    return true;
}

std::optional<std::string> lookup_table::key_of(const nlohmann::json& claims) const {
    return rules::lookup_key(rule_, schema_, claims);
}

const nlohmann::json& lookup_table::result(const std::optional<std::string>& key) {
    if (!key) return empty_;
    auto it = by_key_.find(*key);
    if (it == by_key_.end()) return empty_;
    auto& e = it->second;
    if (!e.cached) {
        std::string text = "[";
        for (std::size_t i = 0; i < e.values.size(); ++i) {
            if (i) text += ',';
            text += texts_[e.values[i].first];
        }
        text += ']';
        e.cached = std::make_shared<const nlohmann::json>(nlohmann::json::parse(text));
    }
    return *e.cached;
}

} // namespace pgpush::push
