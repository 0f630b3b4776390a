#include <algorithm>
#include <set>

#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>

#include "rules/parser.hpp"
#include "rules/rule_set.hpp"

namespace pgpush::rules {

bool table_rule::column_allowed(std::string_view column) const {
    return all_columns || std::find(columns.begin(), columns.end(), column) != columns.end();
}

const table_rule* rule_set::table(std::string_view qualified) const {
    auto it = tables_.find(qualified);
    return it == tables_.end() ? nullptr : &it->second;
}

const channel_rule* rule_set::channel(std::string_view name) const {
    auto it = channels_.find(name);
    return it == channels_.end() ? nullptr : &it->second;
}

std::string format(const diagnostic& d, std::string_view file) {
    return std::string(file) + ":" + std::to_string(d.line) + ":" + std::to_string(d.column) +
           ": " + d.message;
}

namespace {

std::string lower(std::string_view s) {
    std::string out(s);
    for (auto& c : out) {
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
    }
    return out;
}

// One part of a dotted name: "Messages" -> "messages", "\"Messages\"" -> "Messages".
std::optional<std::string> identifier(std::string_view s) {
    if (s.size() >= 2 && s.front() == '"' && s.back() == '"') {
        std::string inner(s.substr(1, s.size() - 2));
        if (inner.empty() || inner.find('"') != std::string::npos) return std::nullopt;
        return inner;
    }
    if (s.empty()) return std::nullopt;
    for (char c : s) {
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '$' || static_cast<unsigned char>(c) >= 0x80;
        if (!ok) return std::nullopt;
    }
    if (s[0] >= '0' && s[0] <= '9') return std::nullopt;
    return lower(s);
}

} // namespace

std::string qualify_table(std::string_view name) {
    auto dot = name.find('.');
    if (dot == std::string_view::npos || (name.front() == '"' && name.find("\".") == std::string_view::npos)) {
        auto t = identifier(name);
        return "public." + (t ? *t : std::string(name));
    }
    auto s = identifier(name.substr(0, dot));
    auto t = identifier(name.substr(dot + 1));
    return (s ? *s : std::string(name.substr(0, dot))) + "." +
           (t ? *t : std::string(name.substr(dot + 1)));
}

class rules_loader {
public:
    explicit rules_loader(const schema_map* schema) : schema_(schema) {}

    load_result load(std::string_view text) {
        auto set = std::make_shared<rule_set>();
        YAML::Node root;
        try {
            root = YAML::Load(std::string(text));
        } catch (const YAML::ParserException& e) {
            error(e.mark, "YAML syntax: " + e.msg);
            return finish(nullptr);
        }
        if (!root || root.IsNull()) {
            errors_.push_back({1, 1, "the file is empty: with no rules nothing is visible (add tables:)"});
            return finish(nullptr);
        }
        if (!root.IsMap()) {
            error(root.Mark(), "expected a mapping with tables: and channels:");
            return finish(nullptr);
        }
        for (const auto& [key, value] : entries(root, {"version", "tables", "channels"})) {
            if (key == "version") {
                if (!value.IsScalar() || value.Scalar() != "1") {
                    error(value.Mark(), "version must be 1");
                }
            } else if (key == "tables") {
                load_tables(value, *set);
            } else if (key == "channels") {
                load_channels(value, *set);
            }
        }
        return finish(set);
    }

private:
    using entry = std::pair<std::string, YAML::Node>;

    void error(const YAML::Mark& m, std::string message, std::size_t extra_column = 0) {
        errors_.push_back({static_cast<std::size_t>(m.line) + 1,
                           static_cast<std::size_t>(m.column) + 1 + extra_column, std::move(message)});
    }

    load_result finish(std::shared_ptr<rule_set> set) {
        std::stable_sort(errors_.begin(), errors_.end(), [](const auto& a, const auto& b) {
            return a.line != b.line ? a.line < b.line : a.column < b.column;
        });
        load_result r;
        r.errors = std::move(errors_);
        if (r.errors.empty()) r.rules = std::move(set);
        return r;
    }

    // A mapping's entries; unknown or duplicate keys are errors (typos must not silently open or
    // close access).
    std::vector<entry> entries(const YAML::Node& map, std::initializer_list<std::string_view> known,
                               bool any_key = false) {
        std::vector<entry> out;
        std::set<std::string> seen;
        for (auto it = map.begin(); it != map.end(); ++it) {
            // Copies: yaml-cpp's iterator hands out a temporary pair; a reference would dangle.
            const YAML::Node k = it->first;
            const YAML::Node v = it->second;
            if (!k.IsScalar()) {
                error(k.Mark(), "keys must be plain names");
                continue;
            }
            std::string key = k.Scalar();
            if (!seen.insert(key).second) {
                error(k.Mark(), "duplicate key '" + key + "'");
                continue;
            }
            if (!any_key && std::find(known.begin(), known.end(), key) == known.end()) {
                std::string list;
                for (auto kk : known) list += (list.empty() ? "" : ", ") + std::string(kk);
                error(k.Mark(), "unknown key '" + key + "' (expected " + list + ")");
                continue;
            }
            out.emplace_back(key, v);
        }
        return out;
    }

    struct allowed_refs {
        bool row = false, old = false, auth = false, payload = false;
    };

    // Parses an expression value and checks which namespaces it may use.
    expr_ptr expression(const YAML::Node& n, std::string_view key, allowed_refs allowed) {
        if (!n.IsScalar()) {
            error(n.Mark(), std::string(key) + " must be an expression string");
            return nullptr;
        }
        const std::string& text = n.Scalar();
        // Quoted scalars start one column before their text; block scalars are approximate.
        const std::size_t quote = n.Tag() == "!" ? 1 : 0;
        try {
            auto e = parse_expression(text, dialect::rules);
            check_refs(*e, n, key, allowed, quote);
            return e;
        } catch (const parse_error& pe) {
            error_at(n, pe.offset, quote, std::string(key) + ": " + pe.what());
            return nullptr;
        }
    }

    void error_at(const YAML::Node& n, std::size_t offset, std::size_t quote, std::string message) {
        const std::string& text = n.Scalar();
        auto before = std::string_view(text).substr(0, std::min(offset, text.size()));
        auto newlines = static_cast<std::size_t>(std::count(before.begin(), before.end(), '\n'));
        if (newlines == 0) {
            error(n.Mark(), std::move(message), quote + offset);
        } else {
            YAML::Mark m = n.Mark();
            m.line += static_cast<int>(newlines);
            error(m, std::move(message), 0);
        }
    }

    void check_refs(const expr& e, const YAML::Node& n, std::string_view key, allowed_refs allowed,
                    std::size_t quote) {
        if (e.type == expr::kind::ref) {
            bool ok = (e.space == ref_space::row && allowed.row) ||
                      (e.space == ref_space::old && allowed.old) ||
                      (e.space == ref_space::auth && allowed.auth) ||
                      (e.space == ref_space::payload && allowed.payload);
            if (!ok) {
                std::string can;
                if (allowed.row) can += " row.*";
                if (allowed.old) can += " old.*";
                if (allowed.auth) can += " auth.*";
                if (allowed.payload) can += " payload.*";
                error_at(n, e.offset, quote,
                         std::string(key) + ": " + std::string(to_string(e.space)) +
                             ".* cannot be used here (only" + can + ")");
            }
        }
        for (const auto& a : e.args) check_refs(*a, n, key, allowed, quote);
    }

    void load_tables(const YAML::Node& tables, rule_set& set) {
        if (tables.IsNull()) return;
        if (!tables.IsMap()) {
            error(tables.Mark(), "tables: must map table names to their rules");
            return;
        }
        for (const auto& [name, body] : entries(tables, {}, true)) {
            table_rule rule;
            rule.name = qualify_table(name);
            rule.line = static_cast<std::size_t>(body.Mark().line) + 1;
            if (set.tables_.count(rule.name)) {
                error(body.Mark(), "table " + rule.name + " is listed twice");
                continue;
            }
            const table_schema* live = nullptr;
            if (schema_) {
                auto it = schema_->find(rule.name);
                if (it == schema_->end()) {
                    error(body.Mark(), "table " + rule.name + " does not exist in the database", 0);
                } else {
                    live = &it->second;
                }
            }
            if (!body.IsMap()) {
                error(body.Mark(), "the rules for " + rule.name + " must be a mapping (rows:, columns:, ...)");
                continue;
            }
            bool has_rows = false, has_columns = false;
            for (const auto& [key, value] :
                 entries(body, {"allow", "rows", "columns", "updates", "max_subscriptions"})) {
                if (key == "allow") {
                    rule.allow = expression(value, "allow", {false, false, true, false});
                    check_types(rule.allow.get(), value, nullptr, false);
                } else if (key == "rows") {
                    has_rows = true;
                    rule.rows = expression(value, "rows", {true, false, true, false});
                    check_types(rule.rows.get(), value, live, false);
                } else if (key == "updates") {
                    rule.updates = expression(value, "updates", {true, true, true, false});
                    check_types(rule.updates.get(), value, live, true);
                } else if (key == "columns") {
                    has_columns = true;
                    load_columns(value, rule, live);
                } else if (key == "max_subscriptions") {
                    std::size_t n = 0;
                    if (!value.IsScalar() || !YAML::convert<std::size_t>::decode(value, n) || n == 0) {
                        error(value.Mark(), "max_subscriptions must be a positive integer");
                    } else {
                        rule.max_subscriptions = n;
                    }
                }
            }
            if (!has_rows) {
                error(body.Mark(), rule.name + ": rows: is required (write rows: \"true\" to allow every row)");
            }
            if (!has_columns) {
                error(body.Mark(), rule.name + ": columns: is required (a list, or \"*\" for every column)");
            }
            set.tables_.emplace(rule.name, std::move(rule));
        }
    }

    void load_columns(const YAML::Node& value, table_rule& rule, const table_schema* live) {
        if (value.IsScalar() && value.Scalar() == "*") {
            rule.all_columns = true;
            return;
        }
        if (!value.IsSequence() || value.size() == 0) {
            error(value.Mark(), "columns: must be a non-empty list of column names, or \"*\"");
            return;
        }
        for (const auto& c : value) {
            if (!c.IsScalar()) {
                error(c.Mark(), "a column name must be a string");
                continue;
            }
            auto id = identifier(c.Scalar());
            if (!id) {
                error(c.Mark(), "'" + c.Scalar() + "' is not a column name");
                continue;
            }
            if (std::find(rule.columns.begin(), rule.columns.end(), *id) != rule.columns.end()) {
                error(c.Mark(), "column " + *id + " is listed twice");
                continue;
            }
            if (live && !live->find(*id)) {
                error(c.Mark(), "column " + *id + " does not exist in " + rule.name);
            }
            rule.columns.push_back(*id);
        }
    }

    // With a live schema: bind the expression against it (claims all NULL) so unknown columns
    // and literals of the wrong type show up now rather than at the first subscription.
    void check_types(const expr* e, const YAML::Node& n, const table_schema* live, bool old) {
        if (e == nullptr || !schema_) return;
        static const nlohmann::json no_claims = nlohmann::json::object();
        bind_context ctx;
        ctx.table = live;
        ctx.claims = &no_claims;
        ctx.allow_old = old;
        if (live == nullptr && uses_row(*e)) return; // the table itself was reported
        try {
            const expr* one[] = {e};
            predicate::bind(one, ctx);
        } catch (const bind_error& be) {
            error_at(n, be.offset, n.Tag() == "!" ? 1 : 0, be.what());
        }
    }

    static bool uses_row(const expr& e) {
        if (e.type == expr::kind::ref && (e.space == ref_space::row || e.space == ref_space::old)) return true;
        return std::any_of(e.args.begin(), e.args.end(), [](const auto& a) { return uses_row(*a); });
    }

    void load_channels(const YAML::Node& channels, rule_set& set) {
        if (channels.IsNull()) return;
        if (!channels.IsMap()) {
            error(channels.Mark(), "channels: must map NOTIFY channel names to their rules");
            return;
        }
        for (const auto& [name, body] : entries(channels, {}, true)) {
            channel_rule rule;
            rule.name = name;
            rule.line = static_cast<std::size_t>(body.Mark().line) + 1;
            if (name.empty() || name.size() > 63) {
                error(body.Mark(), "channel names are 1-63 characters");
                continue;
            }
            if (body.IsNull()) { // `typing:` alone: any authenticated client, every payload
                set.channels_.emplace(rule.name, std::move(rule));
                continue;
            }
            if (!body.IsMap()) {
                error(body.Mark(), "the rules for channel " + name + " must be a mapping (allow:, filter:)");
                continue;
            }
            for (const auto& [key, value] : entries(body, {"allow", "filter"})) {
                if (key == "allow") {
                    rule.allow = expression(value, "allow", {false, false, true, false});
                } else {
                    rule.filter = expression(value, "filter", {false, false, true, true});
                }
            }
            set.channels_.emplace(rule.name, std::move(rule));
        }
    }

    const schema_map* schema_;
    std::vector<diagnostic> errors_;
};

load_result load_rules(std::string_view yaml, const schema_map* schema) {
    return rules_loader(schema).load(yaml);
}

} // namespace pgpush::rules
