#include "rules/matcher.hpp"

#include <algorithm>
#include <stdexcept>

namespace pgpush::rules {

namespace {

struct string_hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept {
        return std::hash<std::string_view>{}(s);
    }
};

using slot = std::uint32_t;

struct entry {
    subscription_id id = 0;
    std::string table;
    const predicate* filter = nullptr;
    const predicate* updates = nullptr;
    bool exact = false;                  // the index conjunct is the whole filter
    bool never = false;                  // folded to false/unknown
    std::size_t index_column = SIZE_MAX; // SIZE_MAX: scanned
    std::vector<std::string> keys;       // index keys it is filed under
    bool live = false;
};

// What an index key leads to: 16 bytes holding all an exact hit needs, so a change touches one
// or two cache lines per key however many subscriptions there are. Filters are fetched (by slot)
// only for the subscriptions that must be evaluated.
struct posting {
    subscription_id id = 0;
    slot s = 0;
    bool exact = false;
};

struct column_index {
    std::size_t column = 0;
    column_family family = column_family::other;
    std::unordered_map<std::string, std::vector<posting>, string_hash, std::equal_to<>> by_key;
    std::size_t subscriptions = 0;
};

struct table_index {
    std::vector<column_index> columns;
    std::vector<posting> scan;
    std::vector<slot> all;
    std::vector<std::size_t> needed;
    std::vector<std::size_t> needed_refs; // how many subscriptions need each column (parallel)
};

void erase_one(std::vector<slot>& v, slot s) {
    auto it = std::find(v.begin(), v.end(), s);
    if (it != v.end()) {
        *it = v.back();
        v.pop_back();
    }
}

void erase_one(std::vector<posting>& v, slot s) {
    auto it = std::find_if(v.begin(), v.end(), [s](const posting& p) { return p.s == s; });
    if (it != v.end()) {
        *it = v.back();
        v.pop_back();
    }
}

// A subscription reached by a change, and through which row's lookup.
struct candidate {
    posting p;
    bool via_new = false;
    bool via_old = false;
};

} // namespace

struct matcher::impl {
    std::vector<entry> entries;
    std::vector<slot> free;
    std::unordered_map<subscription_id, slot> by_id;
    std::unordered_map<std::string, table_index, string_hash, std::equal_to<>> tables;
    mutable std::vector<candidate> candidates; // scratch
    mutable std::string key;                   // scratch

    void need(table_index& t, std::size_t column, int delta) {
        auto it = std::find(t.needed.begin(), t.needed.end(), column);
        if (it == t.needed.end()) {
            if (delta < 0) return;
            t.needed.push_back(column);
            t.needed_refs.push_back(0);
            it = t.needed.end() - 1;
        }
        auto i = static_cast<std::size_t>(it - t.needed.begin());
        t.needed_refs[i] = static_cast<std::size_t>(static_cast<long>(t.needed_refs[i]) + delta);
        if (t.needed_refs[i] == 0) {
            t.needed.erase(t.needed.begin() + static_cast<long>(i));
            t.needed_refs.erase(t.needed_refs.begin() + static_cast<long>(i));
        }
    }

    // Whether `p` holds for `r`: true only, unknown denies.
    static bool holds(const predicate* p, const row_values& r) {
        return p->evaluate(r) == tri::true_;
    }
};

matcher::matcher() : impl_(std::make_unique<impl>()) {}
matcher::~matcher() = default;

void matcher::add(subscription_id id, const table_schema& schema, const predicate* filter,
                  const predicate* updates) {
    if (impl_->by_id.count(id)) throw std::invalid_argument("subscription id already registered");
    slot s;
    if (!impl_->free.empty()) {
        s = impl_->free.back();
        impl_->free.pop_back();
    } else {
        s = static_cast<slot>(impl_->entries.size());
        impl_->entries.emplace_back();
    }
    entry& e = impl_->entries[s];
    e = entry{};
    e.id = id;
    e.table = schema.qualified();
    e.filter = filter;
    e.updates = updates;
    e.live = true;
    impl_->by_id[id] = s;
    auto& t = impl_->tables[e.table];
    t.all.push_back(s);
    for (auto c : filter->columns())
        impl_->need(t, c, +1);
    if (updates) {
        for (auto c : updates->columns())
            impl_->need(t, c, +1);
    }

    if (auto k = filter->constant(); k && *k != tri::true_) {
        e.never = true;
        return;
    }
    auto hint = filter->index();
    if (hint && hint->column < schema.columns.size()) {
        const column_family family = schema.columns[hint->column].family;
        std::vector<std::string> keys;
        bool ok = !hint->values.empty();
        for (const auto& v : hint->values) {
            auto k = index_key(v, family);
            if (!k) {
                ok = false; // a value we cannot key: evaluate this one by scanning
                break;
            }
            if (std::find(keys.begin(), keys.end(), *k) == keys.end())
                keys.push_back(std::move(*k));
        }
        if (ok) {
            auto ci = std::find_if(t.columns.begin(), t.columns.end(),
                                   [&](const column_index& c) { return c.column == hint->column; });
            if (ci == t.columns.end()) {
                t.columns.push_back(column_index{hint->column, family, {}, 0});
                ci = t.columns.end() - 1;
            }
            const posting p{id, s, hint->exact};
            for (const auto& k : keys)
                ci->by_key[k].push_back(p);
            ++ci->subscriptions;
            e.index_column = hint->column;
            e.keys = std::move(keys);
            e.exact = hint->exact;
            return;
        }
    }
    t.scan.push_back(posting{id, s, false});
}

void matcher::remove(subscription_id id) {
    auto it = impl_->by_id.find(id);
    if (it == impl_->by_id.end()) return;
    const slot s = it->second;
    impl_->by_id.erase(it);
    entry& e = impl_->entries[s];
    auto tt = impl_->tables.find(e.table);
    if (tt != impl_->tables.end()) {
        table_index& t = tt->second;
        erase_one(t.all, s);
        for (auto c : e.filter->columns())
            impl_->need(t, c, -1);
        if (e.updates) {
            for (auto c : e.updates->columns())
                impl_->need(t, c, -1);
        }
        if (e.index_column != SIZE_MAX) {
            for (auto& ci : t.columns) {
                if (ci.column != e.index_column) continue;
                for (const auto& k : e.keys) {
                    auto kit = ci.by_key.find(k);
                    if (kit == ci.by_key.end()) continue;
                    erase_one(kit->second, s);
                    if (kit->second.empty()) ci.by_key.erase(kit);
                }
                --ci.subscriptions;
            }
            std::erase_if(t.columns, [](const column_index& c) { return c.subscriptions == 0; });
        } else if (!e.never) {
            erase_one(t.scan, s);
        }
        if (t.all.empty()) impl_->tables.erase(tt);
    }
    e = entry{};
    impl_->free.push_back(s);
}

std::size_t matcher::size() const {
    return impl_->by_id.size();
}

void matcher::match(std::string_view table, change_kind kind, std::span<const value> row,
                    std::span<const value> old, std::vector<hit>& out) const {
    auto tt = impl_->tables.find(table);
    if (tt == impl_->tables.end()) return;
    const table_index& t = tt->second;
    auto& cand = impl_->candidates;
    cand.clear();

    const bool has_new = kind != change_kind::delete_;
    const bool has_old = !old.empty();
    int lookups = 0;
    for (const auto& ci : t.columns) {
        auto look = [&](std::span<const value> r, bool is_new) {
            if (ci.column >= r.size()) return;
            auto k = index_key(r[ci.column], ci.family);
            if (!k) return;
            auto it = ci.by_key.find(*k);
            if (it == ci.by_key.end()) return;
            for (const auto& p : it->second)
                cand.push_back({p, is_new, !is_new});
            ++lookups;
        };
        if (has_new) look(row, true);
        if (has_old) look(old, false);
    }
    if (lookups > 1) {
        // The same subscription may come from the new and the old row: merge, keeping both marks.
        std::sort(cand.begin(), cand.end(),
                  [](const candidate& a, const candidate& b) { return a.p.s < b.p.s; });
        std::size_t w = 0;
        for (std::size_t r = 0; r < cand.size(); ++r) {
            if (w > 0 && cand[w - 1].p.s == cand[r].p.s) {
                cand[w - 1].via_new |= cand[r].via_new;
                cand[w - 1].via_old |= cand[r].via_old;
            } else {
                cand[w++] = cand[r];
            }
        }
        cand.resize(w);
    }
    const std::size_t indexed = cand.size();
    for (const auto& p : t.scan)
        cand.push_back({p, false, false});

    const row_values new_row{row, {}, nullptr};
    const row_values old_row{old, {}, nullptr};
    for (std::size_t i = 0; i < cand.size(); ++i) {
        const candidate& c = cand[i];
        // A subscription whose whole filter is the indexed conjunct matches a row exactly when
        // that row's lookup found it: no evaluation needed.
        const bool decided = c.p.exact && i < indexed;
        const entry* e = decided ? nullptr : &impl_->entries[c.p.s];
        auto matches_new = [&] { return decided ? c.via_new : impl::holds(e->filter, new_row); };
        auto matches_old = [&] { return decided ? c.via_old : impl::holds(e->filter, old_row); };
        switch (kind) {
        case change_kind::insert:
            if (matches_new()) out.push_back({c.p.id, event_kind::insert});
            break;
        case change_kind::delete_:
            if (has_old && matches_old()) out.push_back({c.p.id, event_kind::delete_});
            break;
        case change_kind::update: {
            const bool n = matches_new();
            if (!has_old) {
                if (n) out.push_back({c.p.id, event_kind::update});
                break;
            }
            const bool o = matches_old();
            if (n && o) {
                const predicate* updates = impl_->entries[c.p.s].updates;
                if (updates == nullptr || impl::holds(updates, row_values{row, old, nullptr})) {
                    out.push_back({c.p.id, event_kind::update});
                }
            } else if (n) {
                out.push_back({c.p.id, event_kind::insert});
            } else if (o) {
                out.push_back({c.p.id, event_kind::delete_});
            }
            break;
        }
        }
    }
}

std::optional<event_kind> decide(change_kind kind, const predicate& filter,
                                 const predicate* updates, std::span<const value> row,
                                 std::span<const value> old) {
    auto holds = [](const predicate& p, const row_values& r) {
        return p.evaluate(r) == tri::true_;
    };
    switch (kind) {
    case change_kind::insert:
        if (holds(filter, {row, {}, nullptr})) return event_kind::insert;
        return std::nullopt;
    case change_kind::delete_:
        if (!old.empty() && holds(filter, {old, {}, nullptr})) return event_kind::delete_;
        return std::nullopt;
    case change_kind::update: {
        const bool n = holds(filter, {row, {}, nullptr});
        if (old.empty()) return n ? std::optional(event_kind::update) : std::nullopt;
        const bool o = holds(filter, {old, {}, nullptr});
        if (n && o) {
            if (updates == nullptr || holds(*updates, {row, old, nullptr})) {
                return event_kind::update;
            }
            return std::nullopt;
        }
        if (n) return event_kind::insert;
        if (o) return event_kind::delete_;
        return std::nullopt;
    }
    }
    return std::nullopt;
}

void matcher::all(std::string_view table, std::vector<subscription_id>& out) const {
    auto tt = impl_->tables.find(table);
    if (tt == impl_->tables.end()) return;
    for (slot s : tt->second.all)
        out.push_back(impl_->entries[s].id);
}

std::span<const std::size_t> matcher::columns_needed(std::string_view table) const {
    auto tt = impl_->tables.find(table);
    if (tt == impl_->tables.end()) return {};
    return tt->second.needed;
}

matcher::stats matcher::statistics() const {
    stats s;
    for (const auto& e : impl_->entries) {
        if (!e.live) continue;
        if (e.never) {
            ++s.never;
        } else if (e.index_column != SIZE_MAX) {
            ++s.indexed;
        } else {
            ++s.scanned;
        }
    }
    return s;
}

} // namespace pgpush::rules
