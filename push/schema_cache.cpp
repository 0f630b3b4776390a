#include "push/schema_cache.hpp"

#include "push/schema.hpp"

namespace pgpush::push {

table_state* schema_cache::find(const std::string& qualified) {
    auto it = tables_.find(qualified);
    return it == tables_.end() ? nullptr : it->second.get();
}

void schema_cache::fetch(const std::string& qualified,
                         std::function<void(const std::string* error)> then) {
    auto& waiters = waiting_[qualified];
    waiters.push_back(std::move(then));
    if (waiters.size() > 1) return; // a query is on its way
    describer_.describe(qualified, [this, qualified](std::optional<described_table> d,
                                                     std::optional<std::string> error) {
        if (d) store(*d);
        auto node = waiting_.extract(qualified);
        if (node.empty()) return;
        for (auto& w : node.mapped())
            w(error ? &*error : nullptr);
    });
}

void schema_cache::store(const described_table& d) {
    for (const auto& t : d.types) {
        if (!types_.find(t.id)) types_.put(t);
    }
    auto t = std::make_unique<table_state>();
    t->schema = rules_schema(d.table, types_);
    for (const auto& c : d.table.columns) {
        t->types.push_back(c.type);
        t->names.push_back(c.name);
    }
    tables_[d.table.qualified()] = std::move(t);
}

bool schema_cache::update(const cdc::relation_schema& r) {
    auto it = tables_.find(r.qualified_name);
    if (it == tables_.end()) return false; // described when first subscribed
    auto& ts = *it->second;
    auto fresh = rules_schema(r, types_);
    bool same = fresh.columns.size() == ts.schema.columns.size();
    for (std::size_t i = 0; same && i < fresh.columns.size(); ++i) {
        same = fresh.columns[i].name == ts.schema.columns[i].name &&
               fresh.columns[i].family == ts.schema.columns[i].family;
    }
    ts.schema = std::move(fresh);
    ts.types.clear();
    ts.names.clear();
    for (const auto& c : r.columns) {
        ts.types.push_back(c.type);
        ts.names.push_back(c.name);
    }
    return !same;
}

void schema_cache::forget(const std::string& qualified) {
    tables_.erase(qualified);
}

} // namespace pgpush::push
