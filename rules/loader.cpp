#include <algorithm>
#include <set>

#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>

#include "rules/like.hpp"
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

const lookup_rule* rule_set::lookup(std::string_view name) const {
    auto it = lookups_.find(name);
    return it == lookups_.end() ? nullptr : &it->second;
}

lookup_rule::lookup_rule(const lookup_rule& other)
    : name(other.name), table(other.table), output(other.output), key_column(other.key_column),
      claim_path(other.claim_path), filter(other.filter ? clone(*other.filter) : nullptr),
      line(other.line), columns(other.columns) {}

lookup_rule& lookup_rule::operator=(const lookup_rule& other) {
    if (this != &other) *this = lookup_rule(other);
    return *this;
}

std::unique_ptr<const predicate> bind_lookup_filter(const lookup_rule& lookup,
                                                    const table_schema& lookup_table) {
    if (!lookup.filter) return nullptr;
    bind_context ctx;
    ctx.table = &lookup_table; // columns only: no claims, no lookups, no payload
    const expr* one[] = {lookup.filter.get()};
    return predicate::bind(one, ctx);
}

std::optional<std::string> lookup_key(const lookup_rule& lookup, const table_schema& lookup_table,
                                      const nlohmann::json& claims) {
    // Bound as the correlation itself, so that the key is read exactly as the rules read claims.
    auto ref = [](ref_space space, std::vector<std::string> path) {
        auto e = std::make_unique<expr>();
        e->type = expr::kind::ref;
        e->space = space;
        e->path = std::move(path);
        return e;
    };
    expr eq;
    eq.type = expr::kind::compare;
    eq.op = compare_op::eq;
    eq.args.push_back(ref(ref_space::column, {lookup.key_column}));
    eq.args.push_back(ref(ref_space::auth, lookup.claim_path));
    bind_context ctx;
    ctx.table = &lookup_table;
    ctx.claims = &claims;
    const expr* one[] = {&eq};
    const auto p = predicate::bind(one, ctx);
    const auto hint = p->index();
    if (!hint || hint->values.size() != 1) return std::nullopt;
    return index_key(hint->values[0], lookup_table.columns[hint->column].family);
}

std::vector<std::string> streamed_tables(const rule_set& rules) {
    std::set<std::string> names;
    for (const auto& [name, rule] : rules.tables())
        names.insert(name);
    for (const auto& [name, lookup] : rules.lookups())
        names.insert(lookup.table);
    return {names.begin(), names.end()};
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
    // Split at the first dot outside double quotes: "a.b".c is schema a.b, table c.
    bool quoted = false;
    std::size_t dot = std::string_view::npos;
    for (std::size_t i = 0; i < name.size(); ++i) {
        if (name[i] == '"') quoted = !quoted;
        if (name[i] == '.' && !quoted) {
            dot = i;
            break;
        }
    }
    auto part = [](std::string_view p) {
        auto id = identifier(p);
        return id ? *id : std::string(p);
    };
    if (dot == std::string_view::npos) return "public." + part(name);
    return part(name.substr(0, dot)) + "." + part(name.substr(dot + 1));
}

class rules_loader {
public:
    explicit rules_loader(const schema_map* schema) : schema_(schema) {}

    load_result load(std::string_view text) {
        source_ = text;
        auto set = std::make_shared<rule_set>();
        YAML::Node root;
        try {
            root = YAML::Load(std::string(text));
        } catch (const YAML::ParserException& e) {
            error(e.mark, "YAML syntax: " + e.msg);
            return finish(nullptr);
        }
        if (!root || root.IsNull()) {
            errors_.push_back(
                {1, 1, "the file is empty: with no rules nothing is visible (add tables:)"});
            return finish(nullptr);
        }
        if (!root.IsMap()) {
            error(root.Mark(), "expected a mapping with tables: and channels:");
            return finish(nullptr);
        }
        set_ = set.get();
        const auto top = entries(root, {"version", "lookups", "tables", "channels"});
        // Lookups first, wherever they are in the file: the expressions of tables and channels
        // refer to them.
        for (const auto& [key, value] : top) {
            if (key == "lookups") load_lookups(value, *set);
        }
        for (const auto& [key, value] : top) {
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
                           static_cast<std::size_t>(m.column) + 1 + extra_column,
                           std::move(message)});
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
                for (auto kk : known)
                    list += (list.empty() ? "" : ", ") + std::string(kk);
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

    // Parses an expression value, checks which namespaces it may use and that it is a condition.
    // Returns null (having reported why) when it is not usable.
    expr_ptr expression(const YAML::Node& n, std::string_view key, allowed_refs allowed) {
        if (!n.IsScalar()) {
            error(n.Mark(), std::string(key) + " must be an expression string");
            return nullptr;
        }
        const std::string& text = n.Scalar();
        try {
            auto e = parse_expression(text, dialect::rules);
            const auto before = errors_.size();
            check_refs(*e, n, key, allowed);
            check_condition(*e, n, key);
            if (errors_.size() != before) return nullptr;
            return e;
        } catch (const parse_error& pe) {
            error_at(n, pe.offset, std::string(key) + ": " + pe.what());
            return nullptr;
        }
    }

    // A condition is built of comparisons, IN, IS NULL, LIKE, BETWEEN, names and booleans joined
    // by and/or/not: `rows: "1"` or a list outside IN is refused here, not at the first subscriber.
    void check_condition(const expr& e, const YAML::Node& n, std::string_view key) {
        switch (e.type) {
        case expr::kind::and_:
        case expr::kind::or_:
        case expr::kind::not_:
            for (const auto& a : e.args)
                check_condition(*a, n, key);
            return;
        case expr::kind::literal:
            if (e.lit.type != literal::kind::boolean && e.lit.type != literal::kind::null) {
                error_at(n, e.offset,
                         std::string(key) + ": '" + to_string(e) + "' is not a condition");
            }
            return;
        case expr::kind::list:
            error_at(n, e.offset, std::string(key) + ": a list can only follow IN");
            return;
        case expr::kind::like:
            check_like(e, n, key);
            [[fallthrough]];
        default:
            for (std::size_t i = 0; i < e.args.size(); ++i) {
                const bool in_rhs = e.type == expr::kind::in && i == 1;
                if (e.args[i]->type == expr::kind::list && !in_rhs) {
                    error_at(n, e.args[i]->offset,
                             std::string(key) + ": a list can only follow IN");
                }
            }
            return;
        }
    }

    // A LIKE pattern is a value Postgres accepts, within like_max_pattern_chars: checked here, so
    // that `pgpush check` reports it without a database.
    void check_like(const expr& e, const YAML::Node& n, std::string_view key) {
        const expr& p = *e.args[1];
        const std::string k(key);
        if (p.type == expr::kind::ref && p.space != ref_space::auth) {
            error_at(n, p.offset,
                     k + ": a LIKE pattern must be a value (a string or auth.*), not " +
                         to_string(p));
            return;
        }
        if (p.type != expr::kind::literal || p.lit.type == literal::kind::null) return;
        if (p.lit.type != literal::kind::text) {
            error_at(n, p.offset, k + ": LIKE needs text: " + to_string(p) + " is not");
            return;
        }
        switch (check_like_pattern(p.lit.text)) {
        case like_pattern_error::none:
            return;
        case like_pattern_error::too_long:
            error_at(n, p.offset,
                     k + ": the LIKE pattern is longer than " +
                         std::to_string(like_max_pattern_chars) + " characters");
            return;
        case like_pattern_error::trailing_escape:
        case like_pattern_error::malformed:
            error_at(n, p.offset,
                     k + ": LIKE pattern must not end with escape character: " + to_string(p));
            return;
        }
    }

    // Where byte `offset` of scalar `n`'s value is in the file. The value is the scalar after YAML
    // decoding, so walk the source: quoted scalars have escapes ('' in single quotes, backslash
    // sequences in double quotes); block scalars (| and >) start on the next line, indented.
    std::pair<std::size_t, std::size_t> position_of(const YAML::Node& n, std::size_t offset) const {
        const YAML::Mark m = n.Mark();
        std::size_t line = static_cast<std::size_t>(m.line) + 1;
        std::size_t column = static_cast<std::size_t>(m.column) + 1;
        const auto pos = static_cast<std::size_t>(m.pos);
        if (pos >= source_.size()) return {line, column};
        const char opener = source_[pos];
        if (opener == '|' || opener == '>') {
            const std::string& value = n.Scalar();
            auto before = std::string_view(value).substr(0, std::min(offset, value.size()));
            const auto nl =
                static_cast<std::size_t>(std::count(before.begin(), before.end(), '\n'));
            const auto last = before.rfind('\n');
            const std::size_t in_line =
                last == std::string_view::npos ? before.size() : before.size() - last - 1;
            // Find the source line: skip the indicator line, then `nl` content lines.
            std::size_t p = source_.find('\n', pos);
            for (std::size_t k = 0; k < nl && p != std::string_view::npos; ++k)
                p = source_.find('\n', p + 1);
            std::size_t indent = 0;
            if (p != std::string_view::npos) {
                while (p + 1 + indent < source_.size() && source_[p + 1 + indent] == ' ')
                    ++indent;
            }
            return {line + 1 + nl, indent + in_line + 1};
        }
        std::size_t decoded = 0, i = pos;
        if (opener == '\'' || opener == '"') ++i;
        while (i < source_.size() && decoded < offset) {
            const char c = source_[i];
            if (c == '\n') {
                ++line;
                column = 0;
                ++i;
                ++decoded;
                continue;
            }
            std::size_t width = 1;
            if (opener == '\'' && c == '\'' && i + 1 < source_.size() && source_[i + 1] == '\'')
                width = 2;
            if (opener == '"' && c == '\\' && i + 1 < source_.size()) {
                const char k = source_[i + 1];
                width = k == 'x' ? 4 : k == 'u' ? 6 : k == 'U' ? 10 : 2;
            }
            i += width;
            ++decoded;
        }
        std::size_t line_start = i == 0 ? std::string_view::npos : source_.rfind('\n', i - 1);
        line_start = line_start == std::string_view::npos ? 0 : line_start + 1;
        column = i - line_start + 1;
        return {line, column};
    }

    void error_at(const YAML::Node& n, std::size_t offset, std::string message) {
        auto [line, column] = position_of(n, offset);
        errors_.push_back({line, column, std::move(message)});
    }

    // Checks the namespaces an expression uses, and points its lookup refs at their lookups.
    // A lookup is usable wherever claims are.
    void check_refs(expr& e, const YAML::Node& n, std::string_view key, allowed_refs allowed) {
        if (e.type == expr::kind::ref) {
            bool ok = (e.space == ref_space::row && allowed.row) ||
                      (e.space == ref_space::old && allowed.old) ||
                      (e.space == ref_space::auth && allowed.auth) ||
                      (e.space == ref_space::lookup && allowed.auth) ||
                      (e.space == ref_space::payload && allowed.payload);
            if (!ok) {
                std::string can;
                if (allowed.row) can += " row.*";
                if (allowed.old) can += " old.*";
                if (allowed.auth) can += " auth.* lookup.*";
                if (allowed.payload) can += " payload.*";
                error_at(n, e.offset,
                         std::string(key) + ": " + std::string(to_string(e.space)) +
                             ".* cannot be used here (only" + can + ")");
            } else if (e.space == ref_space::lookup) {
                resolve_lookup(e, n, key);
            }
        }
        for (const auto& a : e.args)
            check_refs(*a, n, key, allowed);
    }

    void resolve_lookup(expr& e, const YAML::Node& n, std::string_view key) {
        const std::string& name = e.path.front();
        if (const lookup_rule* l = set_->lookup(name)) {
            e.lookup = l;
            return;
        }
        if (declared_lookups_.count(name)) return; // its own errors are reported
        std::string known;
        for (const auto& d : declared_lookups_)
            known += (known.empty() ? "" : ", ") + d;
        error_at(n, e.offset,
                 std::string(key) + ": lookup." + name + " is not defined" +
                     (known.empty() ? " (there is no lookups: section)"
                                    : " (lookups: has " + known + ")"));
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
                error(body.Mark(),
                      "the rules for " + rule.name + " must be a mapping (rows:, columns:, ...)");
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
                    if (!value.IsScalar() || !YAML::convert<std::size_t>::decode(value, n) ||
                        n == 0) {
                        error(value.Mark(), "max_subscriptions must be a positive integer");
                    } else {
                        rule.max_subscriptions = n;
                    }
                }
            }
            if (!has_rows) {
                error(body.Mark(),
                      rule.name + ": rows: is required (write rows: \"true\" to allow every row)");
            }
            if (!has_columns) {
                error(body.Mark(),
                      rule.name + ": columns: is required (a list, or \"*\" for every column)");
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
    // Lookups are not known when checking (they bind as missing claims), but their output
    // column's type is: `row.x in lookup.l` needs x and that column to compare.
    void check_types(const expr* e, const YAML::Node& n, const table_schema* live, bool old) {
        if (e == nullptr || !schema_) return;
        static const nlohmann::json no_claims = nlohmann::json::object();
        bind_context ctx;
        ctx.table = live;
        ctx.claims = &no_claims;
        ctx.allow_old = old;
        ctx.lookups = [](const lookup_rule&) -> const nlohmann::json* { return nullptr; };
        if (live == nullptr && uses_row(*e)) return; // the table itself was reported
        if (unresolved_lookup(*e)) return;           // so was the lookup
        try {
            const expr* one[] = {e};
            predicate::bind(one, ctx);
        } catch (const bind_error& be) {
            error_at(n, be.offset, be.what());
            return;
        }
        if (live) check_lookup_families(*e, n, *live);
    }

    void check_lookup_families(const expr& e, const YAML::Node& n, const table_schema& live) {
        if (e.type == expr::kind::in) {
            const expr& x = *e.args[0];
            const expr& l = *e.args[1];
            auto out = l.type == expr::kind::ref && l.space == ref_space::lookup
                           ? lookup_outputs_.find(l.path.front())
                           : lookup_outputs_.end();
            const bool column = x.type == expr::kind::ref &&
                                (x.space == ref_space::row || x.space == ref_space::old);
            if (out != lookup_outputs_.end() && column) {
                if (auto pos = live.find(x.path.back())) {
                    const column_info& c = live.columns[*pos];
                    if (!comparable_families(out->second.family, c.family)) {
                        error_at(n, e.offset,
                                 "lookup." + l.path.front() + " yields " +
                                     family_name(out->second) + " values; " + to_string(x) +
                                     " is " + family_name(c));
                    }
                }
            }
        }
        for (const auto& a : e.args)
            check_lookup_families(*a, n, live);
    }

    // A column's kind for messages: its family ("integer", "text", ...), or its type for the
    // types compared by their text only.
    static std::string family_name(const column_info& c) {
        return c.family == column_family::other ? c.type_name : std::string(to_string(c.family));
    }

    static bool unresolved_lookup(const expr& e) {
        if (e.type == expr::kind::ref && e.space == ref_space::lookup && e.lookup == nullptr)
            return true;
        return std::any_of(e.args.begin(), e.args.end(),
                           [](const auto& a) { return unresolved_lookup(*a); });
    }

    static bool uses_row(const expr& e) {
        if (e.type == expr::kind::ref && (e.space == ref_space::row || e.space == ref_space::old))
            return true;
        return std::any_of(e.args.begin(), e.args.end(),
                           [](const auto& a) { return uses_row(*a); });
    }

    static YAML::Mark key_mark(const YAML::Node& map, const std::string& key) {
        for (auto it = map.begin(); it != map.end(); ++it) {
            const YAML::Node k = it->first;
            if (k.IsScalar() && k.Scalar() == key) return k.Mark();
        }
        return map.Mark();
    }

    static bool lookup_name(std::string_view name) {
        if (name.empty() || (name[0] >= '0' && name[0] <= '9')) return false;
        return std::all_of(name.begin(), name.end(), [](char c) {
            return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
        });
    }

    void load_lookups(const YAML::Node& lookups, rule_set& set) {
        if (lookups.IsNull()) return;
        if (!lookups.IsMap()) {
            error(lookups.Mark(), "lookups: must map lookup names to their queries");
            return;
        }
        for (const auto& [name, body] : entries(lookups, {}, true)) {
            if (!lookup_name(name)) {
                error(body.Mark(), "lookup names are lower-case letters, digits and _, not "
                                   "starting with a digit: '" +
                                       name + "'");
                continue;
            }
            declared_lookups_.insert(name);
            if (!body.IsScalar()) {
                // A missing value (`l:`) has no place of its own: point at its name.
                error(body.IsNull() ? key_mark(lookups, name) : body.Mark(),
                      "lookup " + name +
                          " must be a query string: SELECT <column> FROM <table> "
                          "WHERE <column> = auth.<claim>");
                continue;
            }
            lookup_rule rule;
            rule.name = name;
            rule.line = static_cast<std::size_t>(body.Mark().line) + 1;
            if (load_lookup(body, rule)) set.lookups_.emplace(name, std::move(rule));
        }
    }

    // Splits a WHERE into its top-level conjuncts: (a AND b) AND c is a, b, c.
    static void conjuncts(expr_ptr e, std::vector<expr_ptr>& out) {
        if (e->type == expr::kind::and_) {
            for (auto& a : e->args)
                conjuncts(std::move(a), out);
            return;
        }
        out.push_back(std::move(e));
    }

    static bool is_column(const expr& e) {
        return e.type == expr::kind::ref && e.space == ref_space::column;
    }
    static bool is_claim(const expr& e) {
        return e.type == expr::kind::ref && e.space == ref_space::auth;
    }

    // A conjunct besides the correlation reads the lookup table's columns and literals only.
    void check_lookup_filter(const expr& e, const YAML::Node& n, const std::string& key,
                             const select_query& q) {
        if (e.type == expr::kind::ref) {
            switch (e.space) {
            case ref_space::column:
                if (e.path.size() == 2 && e.path[0] != q.table) {
                    error_at(n, e.offset,
                             key + ": '" + e.path[0] + "' is not the lookup's table (" + q.table +
                                 ")");
                }
                break;
            case ref_space::auth:
                error_at(n, e.offset,
                         key + ": " + to_string(e) +
                             " can only be used in the lookup's one `column = auth.claim`");
                break;
            case ref_space::lookup:
                error_at(n, e.offset,
                         key + ": a lookup cannot use another lookup (" + to_string(e) + ")");
                break;
            case ref_space::row:
            case ref_space::old:
            case ref_space::payload:
                error_at(n, e.offset,
                         key + ": " + std::string(to_string(e.space)) +
                             ".* cannot be used in a lookup: name the columns of " + q.table +
                             " by themselves");
                break;
            }
        }
        if (e.type == expr::kind::in && e.args[1]->type == expr::kind::ref &&
            e.args[1]->space == ref_space::column) {
            error_at(n, e.args[1]->offset, key + ": IN needs a list (a, b, ...) here");
        }
        for (const auto& a : e.args)
            check_lookup_filter(*a, n, key, q);
    }

    // Parses and checks one lookup's query into `rule`; false (having said why) if its grammar
    // makes it unusable.
    bool load_lookup(const YAML::Node& n, lookup_rule& rule) {
        const std::string key = "lookup " + rule.name;
        const std::string& text = n.Scalar();
        const auto before = errors_.size();
        select_query q;
        try {
            q = parse_lookup_query(text);
        } catch (const parse_error& pe) {
            error_at(n, pe.offset, key + ": " + pe.what());
            return false;
        }
        if (q.star) {
            error_at(n, q.star_offset, key + ": a lookup selects one column, not *");
        } else if (q.columns.size() != 1) {
            error_at(n, q.column_offsets[1],
                     key + ": a lookup selects one column (its values are the lookup's result)");
        }
        rule.table = (q.schema.empty() ? "public" : q.schema) + "." + q.table;
        const std::string no_correlation =
            key + ": a lookup needs exactly one `column = auth.claim` to find a subscriber's rows";
        if (!q.where) {
            error_at(n, text.size(), no_correlation);
            return false;
        }
        const source_offset where_at = q.where->offset;
        if (q.where->type == expr::kind::or_) {
            error_at(n, where_at,
                     key + ": OR cannot be indexed: a lookup's WHERE is `column = auth.claim` "
                           "AND other conditions");
            return false;
        }
        std::vector<expr_ptr> parts;
        conjuncts(std::move(q.where), parts);
        const expr* key_expr = nullptr;
        std::vector<expr_ptr> rest;
        for (auto& c : parts) {
            if (c->type == expr::kind::compare && c->args.size() == 2) {
                const expr& a = *c->args[0];
                const expr& b = *c->args[1];
                const expr* column = is_column(a) && is_claim(b)   ? &a
                                     : is_column(b) && is_claim(a) ? &b
                                                                   : nullptr;
                if (column) {
                    const expr& claim = column == &a ? b : a;
                    if (c->op != compare_op::eq) {
                        error_at(n, c->offset,
                                 key + ": " + to_string(*c) + " cannot be indexed: only `=`");
                    } else if (key_expr) {
                        error_at(n, c->offset,
                                 key + ": a lookup has exactly one `column = auth.claim`; " +
                                     to_string(*c) + " is a second one");
                    } else {
                        if (column->path.size() == 2 && column->path[0] != q.table) {
                            error_at(n, column->offset,
                                     key + ": '" + column->path[0] +
                                         "' is not the lookup's table (" + q.table + ")");
                        }
                        key_expr = column;
                        rule.key_column = column->path.back();
                        rule.claim_path = claim.path;
                    }
                    continue;
                }
            }
            check_lookup_filter(*c, n, key, q);
            check_condition(*c, n, key);
            rest.push_back(std::move(c));
        }
        if (key_expr == nullptr && errors_.size() == before) error_at(n, where_at, no_correlation);
        if (errors_.size() != before) return false;

        rule.output = q.columns[0];
        if (rest.size() == 1) {
            rule.filter = std::move(rest[0]);
        } else if (rest.size() > 1) {
            rule.filter = std::make_unique<expr>();
            rule.filter->type = expr::kind::and_;
            rule.filter->offset = rest[0]->offset;
            rule.filter->args = std::move(rest);
        }
        auto use = [&](const std::string& column) {
            if (std::find(rule.columns.begin(), rule.columns.end(), column) == rule.columns.end())
                rule.columns.push_back(column);
        };
        use(rule.key_column);
        use(rule.output);
        if (rule.filter) for_each_column(*rule.filter, use);

        // Kept even when it does not fit the database (the file fails anyway), so that the
        // expressions using it are still checked against its output column.
        if (schema_)
            check_lookup_schema(n, rule, key, q.table_offset, q.column_offsets[0],
                                key_expr->offset);
        return true;
    }

    template <typename F>
    static void for_each_column(const expr& e, F& f) {
        if (is_column(e)) f(e.path.back());
        for (const auto& a : e.args)
            for_each_column(*a, f);
    }

    // With a live schema: the table and columns exist, the key can meet a claim, the filter's
    // literals fit their columns. Remembers the output column for `x in lookup.name` checks.
    void check_lookup_schema(const YAML::Node& n, const lookup_rule& rule, const std::string& key,
                             source_offset table_at, source_offset output_at,
                             source_offset key_at) {
        auto it = schema_->find(rule.table);
        if (it == schema_->end()) {
            error_at(n, table_at,
                     key + ": table " + rule.table + " does not exist in the database");
            return;
        }
        const table_schema& live = it->second;
        const auto output = live.find(rule.output);
        if (!output) {
            error_at(n, output_at,
                     key + ": column " + rule.output + " does not exist in " + rule.table);
        } else {
            lookup_outputs_.emplace(rule.name, live.columns[*output]);
        }
        if (const auto k = live.find(rule.key_column); !k) {
            error_at(n, key_at,
                     key + ": column " + rule.key_column + " does not exist in " + rule.table);
        } else if (const column_info& c = live.columns[*k]; !claim_comparable(c)) {
            error_at(n, key_at,
                     key + ": column " + rule.key_column + " is " + c.type_name +
                         ": a claim cannot be compared with it");
        }
        try {
            bind_lookup_filter(rule, live);
        } catch (const bind_error& be) {
            error_at(n, be.offset, key + ": " + be.what());
        }
    }

    // json, jsonb and arrays have no equality with a claim's value (a scalar).
    static bool claim_comparable(const column_info& c) {
        if (c.family != column_family::other) return true;
        const std::string_view t = c.type_name;
        return t != "json" && t != "jsonb" && !t.starts_with('_') && !t.ends_with("[]");
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
                error(body.Mark(),
                      "the rules for channel " + name + " must be a mapping (allow:, filter:)");
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
    std::string_view source_;
    std::vector<diagnostic> errors_;
    rule_set* set_ = nullptr;
    std::set<std::string> declared_lookups_;            // every name under lookups:, loaded or not
    std::map<std::string, column_info> lookup_outputs_; // with a schema: each output column
};

load_result load_rules(std::string_view yaml, const schema_map* schema) {
    return rules_loader(schema).load(yaml);
}

} // namespace pgpush::rules
