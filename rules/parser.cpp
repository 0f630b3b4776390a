#include "rules/parser.hpp"

#include <charconv>

#include "rules/value.hpp"

namespace pgpush::rules {

std::string_view to_string(ref_space s) {
    switch (s) {
    case ref_space::column:
        return "column";
    case ref_space::row:
        return "row";
    case ref_space::old:
        return "old";
    case ref_space::auth:
        return "auth";
    case ref_space::payload:
        return "payload";
    case ref_space::lookup:
        return "lookup";
    }
    return "?";
}

std::string_view to_string(compare_op op) {
    switch (op) {
    case compare_op::eq:
        return "=";
    case compare_op::ne:
        return "<>";
    case compare_op::lt:
        return "<";
    case compare_op::le:
        return "<=";
    case compare_op::gt:
        return ">";
    case compare_op::ge:
        return ">=";
    }
    return "?";
}

namespace {

// ---- lexer ----

enum class tok : std::uint8_t {
    end,
    ident,        // bare word (keywords too)
    quoted_ident, // "name" in SQL
    number,
    string,
    param, // $N
    op,    // = == != <> < <= > >=
    lparen,
    rparen,
    lbracket,
    rbracket,
    comma,
    dot,
    star,
    semicolon,
    minus,
    other, // anything else: + / % || :: ...
};

struct token {
    tok type = tok::end;
    std::string text;
    source_offset offset = 0;
};

bool is_ident_start(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
           static_cast<unsigned char>(c) >= 0x80;
}
bool is_ident_char(char c) {
    return is_ident_start(c) || (c >= '0' && c <= '9') || c == '$';
}
bool is_digit(char c) {
    return c >= '0' && c <= '9';
}

std::string lower(std::string_view s) {
    std::string out(s);
    for (auto& c : out) {
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
    }
    return out;
}

std::vector<token> lex(std::string_view s, dialect d) {
    std::vector<token> out;
    std::size_t i = 0;
    while (true) {
        while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
            ++i;
        if (i >= s.size()) break;
        if (s.substr(i, 2) == "--") {
            throw parse_error(i, "comments are not supported");
        }
        token t;
        t.offset = i;
        const char c = s[i];
        if (is_ident_start(c)) {
            std::size_t j = i;
            while (j < s.size() && is_ident_char(s[j]))
                ++j;
            t.type = tok::ident;
            t.text = std::string(s.substr(i, j - i));
            i = j;
        } else if (is_digit(c) || (c == '.' && i + 1 < s.size() && is_digit(s[i + 1]))) {
            std::size_t j = i;
            while (j < s.size() && is_digit(s[j]))
                ++j;
            if (j < s.size() && s[j] == '.') {
                ++j;
                while (j < s.size() && is_digit(s[j]))
                    ++j;
            }
            if (j < s.size() && (s[j] == 'e' || s[j] == 'E')) {
                std::size_t k = j + 1;
                if (k < s.size() && (s[k] == '+' || s[k] == '-')) ++k;
                if (k < s.size() && is_digit(s[k])) {
                    while (k < s.size() && is_digit(s[k]))
                        ++k;
                    j = k;
                }
            }
            if (j < s.size() && is_ident_start(s[j])) {
                throw parse_error(j, "malformed number");
            }
            t.type = tok::number;
            t.text = std::string(s.substr(i, j - i));
            i = j;
        } else if (c == '\'' || (c == '"' && d == dialect::rules)) {
            // A quote inside is written twice: 'it''s'.
            std::string v;
            std::size_t j = i + 1;
            while (true) {
                if (j >= s.size()) throw parse_error(i, "unterminated string");
                if (s[j] == c) {
                    if (j + 1 < s.size() && s[j + 1] == c) {
                        v.push_back(c);
                        j += 2;
                        continue;
                    }
                    break;
                }
                v.push_back(s[j++]);
            }
            t.type = tok::string;
            t.text = std::move(v);
            i = j + 1;
        } else if (c == '"') {
            std::string v;
            std::size_t j = i + 1;
            while (true) {
                if (j >= s.size()) throw parse_error(i, "unterminated quoted identifier");
                if (s[j] == '"') {
                    if (j + 1 < s.size() && s[j + 1] == '"') {
                        v.push_back('"');
                        j += 2;
                        continue;
                    }
                    break;
                }
                v.push_back(s[j++]);
            }
            if (v.empty()) throw parse_error(i, "empty quoted identifier");
            t.type = tok::quoted_ident;
            t.text = std::move(v);
            i = j + 1;
        } else if (c == '$' && d == dialect::sql) {
            std::size_t j = i + 1;
            while (j < s.size() && is_digit(s[j]))
                ++j;
            if (j == i + 1) throw parse_error(i, "expected a parameter number after $");
            t.type = tok::param;
            t.text = std::string(s.substr(i + 1, j - i - 1));
            i = j;
        } else {
            auto two = s.substr(i, 2);
            if (two == "==" || two == "!=" || two == "<>" || two == "<=" || two == ">=") {
                t.type = tok::op;
                t.text = std::string(two);
                i += 2;
            } else if (c == '=' || c == '<' || c == '>') {
                t.type = tok::op;
                t.text = std::string(1, c);
                ++i;
            } else {
                t.text = std::string(1, c);
                ++i;
                switch (c) {
                case '(':
                    t.type = tok::lparen;
                    break;
                case ')':
                    t.type = tok::rparen;
                    break;
                case '[':
                    t.type = tok::lbracket;
                    break;
                case ']':
                    t.type = tok::rbracket;
                    break;
                case ',':
                    t.type = tok::comma;
                    break;
                case '.':
                    t.type = tok::dot;
                    break;
                case '*':
                    t.type = tok::star;
                    break;
                case ';':
                    t.type = tok::semicolon;
                    break;
                case '-':
                    t.type = tok::minus;
                    break;
                default:
                    t.type = tok::other;
                }
            }
        }
        out.push_back(std::move(t));
    }
    token end;
    end.type = tok::end;
    end.offset = s.size();
    out.push_back(end);
    return out;
}

// ---- parser ----

constexpr int max_depth = 100;

class parser {
public:
    parser(std::string_view text, dialect d) : d_(d), toks_(lex(text, d)) {}

    const token& peek(std::size_t ahead = 0) const {
        return toks_[std::min(pos_ + ahead, toks_.size() - 1)];
    }
    const token& next() {
        const token& t = toks_[pos_];
        if (pos_ + 1 < toks_.size()) ++pos_;
        return t;
    }
    bool at_keyword(std::string_view kw, std::size_t ahead = 0) const {
        const token& t = peek(ahead);
        return t.type == tok::ident && lower(t.text) == kw;
    }
    bool accept_keyword(std::string_view kw) {
        if (!at_keyword(kw)) return false;
        next();
        return true;
    }
    [[noreturn]] void fail(const token& t, const std::string& message) const {
        throw parse_error(t.offset, message);
    }
    [[noreturn]] void unexpected(const token& t, std::string_view wanted) const {
        if (t.type == tok::end) fail(t, "unexpected end of input, expected " + std::string(wanted));
        fail(t, "unexpected '" + t.text + "', expected " + std::string(wanted));
    }
    void expect(tok type, std::string_view what) {
        if (peek().type != type) unexpected(peek(), what);
        next();
    }

    expr_ptr expression() {
        if (++depth_ > max_depth) fail(peek(), "expression nests too deeply");
        auto e = or_expr();
        --depth_;
        return e;
    }

    int max_param() const { return max_param_; }
    dialect lang() const { return d_; }

private:
    static expr_ptr make(expr::kind k, source_offset at) {
        auto e = std::make_unique<expr>();
        e->type = k;
        e->offset = at;
        return e;
    }

    expr_ptr or_expr() {
        auto left = and_expr();
        if (!at_keyword("or")) return left;
        auto e = make(expr::kind::or_, left->offset);
        e->args.push_back(std::move(left));
        while (accept_keyword("or"))
            e->args.push_back(and_expr());
        return e;
    }

    expr_ptr and_expr() {
        auto left = not_expr();
        if (!at_keyword("and")) return left;
        auto e = make(expr::kind::and_, left->offset);
        e->args.push_back(std::move(left));
        while (accept_keyword("and"))
            e->args.push_back(not_expr());
        return e;
    }

    expr_ptr not_expr() {
        if (at_keyword("not")) {
            auto at = next().offset;
            if (++depth_ > max_depth) fail(peek(), "expression nests too deeply");
            auto e = make(expr::kind::not_, at);
            e->args.push_back(not_expr());
            --depth_;
            return e;
        }
        return predicate();
    }

    expr_ptr predicate() {
        auto left = operand();
        const token& t = peek();
        if (t.type == tok::op) {
            auto e = make(expr::kind::compare, left->offset);
            std::string op = next().text;
            e->op = op == "=" || op == "=="    ? compare_op::eq
                    : op == "!=" || op == "<>" ? compare_op::ne
                    : op == "<"                ? compare_op::lt
                    : op == "<="               ? compare_op::le
                    : op == ">"                ? compare_op::gt
                                               : compare_op::ge;
            e->args.push_back(std::move(left));
            e->args.push_back(operand());
            // In SQL, x = NULL is never true (nor false): always a mistake, so say so.
            for (const auto& side : e->args) {
                if (side->type == expr::kind::literal && side->lit.type == literal::kind::null) {
                    throw parse_error(
                        side->offset,
                        "comparing with NULL is never true: write IS NULL or IS NOT NULL");
                }
            }
            return e;
        }
        bool negated = false;
        if (at_keyword("not") && (at_keyword("in", 1) || at_keyword("like", 1) ||
                                  at_keyword("between", 1) || at_keyword("ilike", 1))) {
            next();
            negated = true;
        }
        if (accept_keyword("in")) {
            auto e = make(expr::kind::in, left->offset);
            e->negated = negated;
            e->args.push_back(std::move(left));
            e->args.push_back(in_list());
            return e;
        }
        if (at_keyword("ilike")) fail(peek(), "ILIKE is not supported (LIKE is, case-sensitively)");
        if (accept_keyword("like")) {
            auto e = make(expr::kind::like, left->offset);
            e->negated = negated;
            e->args.push_back(std::move(left));
            e->args.push_back(operand());
            if (at_keyword("escape")) fail(peek(), "LIKE ... ESCAPE is not supported");
            return e;
        }
        if (accept_keyword("between")) {
            if (at_keyword("symmetric")) fail(peek(), "BETWEEN SYMMETRIC is not supported");
            auto e = make(expr::kind::between, left->offset);
            e->negated = negated;
            e->args.push_back(std::move(left));
            e->args.push_back(operand());
            if (!accept_keyword("and")) unexpected(peek(), "AND in BETWEEN ... AND ...");
            e->args.push_back(operand());
            return e;
        }
        if (at_keyword("is")) {
            next();
            auto e = make(expr::kind::is_null, left->offset);
            e->negated = accept_keyword("not");
            if (at_keyword("true") || at_keyword("false") || at_keyword("unknown")) {
                fail(peek(), "IS TRUE/FALSE/UNKNOWN is not supported: compare with = true");
            }
            if (!accept_keyword("null")) unexpected(peek(), "NULL after IS [NOT]");
            e->args.push_back(std::move(left));
            return e;
        }
        if (t.type == tok::minus || t.type == tok::other || t.type == tok::star) {
            fail(t, "arithmetic and operators like '" + t.text + "' are not supported");
        }
        return left;
    }

    // The right side of IN: a literal list, or (rules) a ref to an array claim.
    expr_ptr in_list() {
        const token& t = peek();
        if (t.type == tok::lparen || t.type == tok::lbracket) {
            if (t.type == tok::lbracket && d_ != dialect::rules)
                fail(t, "lists are written (a, b) in SQL");
            if (t.type == tok::lparen && at_keyword("select", 1))
                fail(peek(1), "subqueries are not supported");
            return list(t.type == tok::lparen ? tok::rparen : tok::rbracket);
        }
        // rules: an array claim or a lookup; lookup queries: parsed so that the loader can say
        // why auth.* or lookup.* cannot be used there.
        if (d_ != dialect::sql && t.type == tok::ident) return operand();
        unexpected(t, d_ == dialect::sql ? "a list (a, b, ...) after IN"
                                         : "a list or a claim after IN");
    }

    expr_ptr list(tok close) {
        if (++depth_ > max_depth) fail(peek(), "expression nests too deeply");
        auto e = make(expr::kind::list, next().offset);
        if (peek().type == close) fail(peek(), "empty lists are not allowed");
        while (true) {
            auto item = operand();
            if (item->type != expr::kind::literal && item->type != expr::kind::param &&
                !(item->type == expr::kind::ref && item->space == ref_space::auth)) {
                fail(toks_[pos_ - 1], "list items must be literals" +
                                          std::string(d_ == dialect::rules ? " or claims" : ""));
            }
            e->args.push_back(std::move(item));
            if (peek().type == tok::comma) {
                next();
                continue;
            }
            if (peek().type != close)
                unexpected(peek(), close == tok::rparen ? "',' or ')'" : "',' or ']'");
            next();
            --depth_;
            return e;
        }
    }

    expr_ptr number(const token& t, bool negative) {
        auto e = make(expr::kind::literal, t.offset);
        std::string text = (negative ? "-" : "") + t.text;
        std::int64_t i = 0;
        auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), i);
        if (ec == std::errc{} && end == text.data() + text.size()) {
            e->lit.type = literal::kind::integer;
            e->lit.integer = i;
            e->lit.text = text;
            return e;
        }
        auto canonical = canonical_decimal(text);
        if (!canonical) fail(t, "malformed number '" + text + "'");
        e->lit.type = literal::kind::decimal;
        e->lit.text = *canonical;
        return e;
    }

    expr_ptr operand() {
        const token& t = next();
        switch (t.type) {
        case tok::number:
            return number(t, false);
        case tok::minus: {
            const token& n = next();
            if (n.type != tok::number) fail(t, "arithmetic is not supported (only -<number>)");
            return number(n, true);
        }
        case tok::string: {
            auto e = make(expr::kind::literal, t.offset);
            e->lit.type = literal::kind::text;
            e->lit.text = t.text;
            return e;
        }
        case tok::param: {
            auto e = make(expr::kind::param, t.offset);
            int n = 0;
            auto [end, ec] = std::from_chars(t.text.data(), t.text.data() + t.text.size(), n);
            if (ec != std::errc{} || n < 1 || n > 100) fail(t, "parameters are $1 to $100");
            e->param = n;
            max_param_ = std::max(max_param_, n);
            return e;
        }
        case tok::lparen: {
            if (at_keyword("select")) fail(peek(), "subqueries are not supported");
            auto e = expression();
            if (peek().type == tok::comma)
                fail(peek(), "row values (a, b) are only allowed after IN");
            expect(tok::rparen, "')'");
            return e;
        }
        case tok::lbracket:
            if (d_ != dialect::rules) fail(t, "'[' is not SQL: lists are written (a, b)");
            --pos_;
            return list(tok::rbracket);
        case tok::ident:
        case tok::quoted_ident:
            return name(t);
        case tok::end:
            unexpected(t, "a value or a name");
        default:
            fail(t, "unexpected '" + t.text + "'");
        }
    }

    expr_ptr name(const token& t) {
        const bool quoted = t.type == tok::quoted_ident;
        const std::string word = quoted ? t.text : lower(t.text);
        if (peek().type == tok::lparen) {
            fail(t, "functions are not supported (" + t.text + "(...))");
        }
        if (!quoted) {
            if (word == "true" || word == "false") {
                auto e = make(expr::kind::literal, t.offset);
                e->lit.type = literal::kind::boolean;
                e->lit.boolean = word == "true";
                return e;
            }
            if (word == "null") return make(expr::kind::literal, t.offset);
            if (word == "select") fail(t, "subqueries are not supported");
            if (word == "case" || word == "cast" || word == "exists" || word == "array") {
                fail(t, "'" + t.text + "' is not supported");
            }
            if (word == "and" || word == "or" || word == "not" || word == "in" || word == "is" ||
                word == "like" || word == "between") {
                fail(t, "unexpected '" + t.text + "', expected a value or a name");
            }
        }
        auto e = make(expr::kind::ref, t.offset);
        // A lookup query is SQL with namespaced names beside its columns: auth.x in its
        // correlation, and the others parsed so that the loader can refuse them by name.
        const bool namespaced =
            !quoted &&
            (word == "row" || word == "old" || word == "auth" || word == "payload" ||
             word == "lookup") &&
            (peek().type == tok::dot || (word == "auth" && peek().type == tok::lbracket));
        if (d_ == dialect::sql || (d_ == dialect::lookup && !namespaced)) {
            e->space = ref_space::column;
            e->path.push_back(word);
            if (peek().type == tok::dot) { // table.column
                next();
                const token& c = next();
                if (c.type != tok::ident && c.type != tok::quoted_ident)
                    unexpected(c, "a column name");
                e->path.push_back(c.type == tok::quoted_ident ? c.text : lower(c.text));
                if (peek().type == tok::dot)
                    fail(peek(), "schema.table.column is not supported: write table.column");
            }
            if (peek().type == tok::other && peek().text == ":")
                fail(peek(), "casts (::) are not supported");
            return e;
        }
        if (word == "row") {
            e->space = ref_space::row;
        } else if (word == "old") {
            e->space = ref_space::old;
        } else if (word == "auth") {
            e->space = ref_space::auth;
        } else if (word == "payload") {
            e->space = ref_space::payload;
        } else if (word == "lookup") {
            e->space = ref_space::lookup;
            if (peek().type != tok::dot || peek(1).type != tok::ident)
                fail(t, "a lookup is named lookup.name");
            next();
            e->path.push_back(next().text);
            if (peek().type == tok::dot || peek().type == tok::lbracket) {
                fail(peek(), "lookup." + e->path[0] +
                                 " is a list of values: it has no fields (use it after IN)");
            }
            return e;
        } else {
            fail(t, "unknown name '" + t.text + "': write row." + t.text + ", old." + t.text +
                        ", auth." + t.text + " or payload." + t.text);
        }
        while (true) {
            if (peek().type == tok::dot) {
                next();
                const token& seg = next();
                if (seg.type != tok::ident) unexpected(seg, "a field name after '.'");
                e->path.push_back(seg.text);
            } else if (peek().type == tok::lbracket && (peek(1).type == tok::string)) {
                next();
                e->path.push_back(next().text);
                expect(tok::rbracket, "']'");
            } else {
                break;
            }
        }
        if (e->path.empty()) fail(t, "'" + word + "' needs a field: " + word + ".name");
        if ((e->space == ref_space::row || e->space == ref_space::old) && e->path.size() > 1) {
            fail(t,
                 "nested paths into columns are not supported (" + word + "." + e->path[0] + ")");
        }
        return e;
    }

    dialect d_;
    std::vector<token> toks_;
    std::size_t pos_ = 0;
    int depth_ = 0;
    int max_param_ = 0;
};

std::string render_literal(const literal& l) {
    switch (l.type) {
    case literal::kind::null:
        return "NULL";
    case literal::kind::boolean:
        return l.boolean ? "true" : "false";
    case literal::kind::integer:
    case literal::kind::decimal:
        return l.text;
    case literal::kind::text: {
        std::string out = "'";
        for (char c : l.text) {
            if (c == '\'') out += '\'';
            out += c;
        }
        return out + "'";
    }
    }
    return "?";
}

} // namespace

std::string to_string(const expr& e) {
    auto join = [&](std::string_view sep) {
        std::string out = "(";
        for (std::size_t i = 0; i < e.args.size(); ++i) {
            if (i) out += sep;
            out += to_string(*e.args[i]);
        }
        return out + ")";
    };
    const std::string neg = e.negated ? "NOT " : "";
    switch (e.type) {
    case expr::kind::literal:
        return render_literal(e.lit);
    case expr::kind::ref: {
        std::string out = e.space == ref_space::column ? "" : std::string(to_string(e.space)) + ".";
        for (std::size_t i = 0; i < e.path.size(); ++i)
            out += (i ? "." : "") + e.path[i];
        return out;
    }
    case expr::kind::param:
        return "$" + std::to_string(e.param);
    case expr::kind::list:
        return join(", ");
    case expr::kind::not_:
        return "NOT " + to_string(*e.args[0]);
    case expr::kind::and_:
        return join(" AND ");
    case expr::kind::or_:
        return join(" OR ");
    case expr::kind::compare:
        return to_string(*e.args[0]) + " " + std::string(to_string(e.op)) + " " +
               to_string(*e.args[1]);
    case expr::kind::in:
        return to_string(*e.args[0]) + " " + neg + "IN " + to_string(*e.args[1]);
    case expr::kind::is_null:
        return to_string(*e.args[0]) + " IS " + neg + "NULL";
    case expr::kind::like:
        return to_string(*e.args[0]) + " " + neg + "LIKE " + to_string(*e.args[1]);
    case expr::kind::between:
        return to_string(*e.args[0]) + " " + neg + "BETWEEN " + to_string(*e.args[1]) + " AND " +
               to_string(*e.args[2]);
    }
    return "?";
}

expr_ptr clone(const expr& e) {
    auto out = std::make_unique<expr>();
    out->type = e.type;
    out->offset = e.offset;
    out->lit = e.lit;
    out->space = e.space;
    out->path = e.path;
    out->lookup = e.lookup;
    out->param = e.param;
    out->op = e.op;
    out->negated = e.negated;
    for (const auto& a : e.args)
        out->args.push_back(clone(*a));
    return out;
}

expr_ptr parse_expression(std::string_view text, dialect d) {
    parser p(text, d);
    if (p.peek().type == tok::end) throw parse_error(0, "empty expression");
    auto e = p.expression();
    const token& t = p.peek();
    if (t.type != tok::end) p.unexpected(t, "end of expression (and/or?)");
    return e;
}

namespace {

[[noreturn]] void unsupported_clause(const parser& p, const token& t) {
    const std::string w = lower(t.text);
    if (t.type == tok::comma || w == "join" || w == "inner" || w == "left" || w == "right" ||
        w == "full" || w == "cross" || w == "natural" || w == "using") {
        p.fail(t, p.lang() == dialect::lookup ? "joins are not supported: a lookup reads one table"
                                              : "joins are not supported: subscribe to one table");
    }
    if (w == "order")
        p.fail(t, "ORDER BY is not supported: the result is a set; sort on the client");
    if (w == "limit" || w == "offset" || w == "fetch") p.fail(t, "LIMIT/OFFSET are not supported");
    if (w == "group" || w == "having") p.fail(t, "GROUP BY/HAVING (aggregates) are not supported");
    if (w == "union" || w == "intersect" || w == "except")
        p.fail(t, "UNION/INTERSECT/EXCEPT are not supported");
    if (w == "for") p.fail(t, "FOR UPDATE/SHARE is not supported");
    if (w == "window") p.fail(t, "WINDOW is not supported");
    if (t.type == tok::ident || t.type == tok::quoted_ident) {
        p.fail(t, "table aliases are not supported ('" + t.text + "')");
    }
    p.unexpected(t, "WHERE or the end of the query");
}

// SELECT ... FROM ... [WHERE ...] in `p`'s dialect: sql (subscriptions) or lookup (rules.yaml
// lookups:, whose WHERE also names auth.*).
select_query parse_select_in(parser& p) {
    const bool lookup = p.lang() == dialect::lookup;
    select_query q;
    std::vector<std::pair<std::string, source_offset>> qualifiers; // the t of t.column
    if (!p.accept_keyword("select")) {
        const token& t = p.peek();
        if (t.type == tok::end) p.fail(t, "empty query");
        if (lookup) p.fail(t, "a lookup is a query: SELECT <column> FROM <table> WHERE ...");
        p.fail(t, "only SELECT queries can be subscribed to");
    }
    if (p.at_keyword("distinct") || p.at_keyword("all")) {
        p.fail(p.peek(), "SELECT " + p.peek().text + " is not supported");
    }
    if (p.peek().type == tok::star) {
        q.star_offset = p.next().offset;
        q.star = true;
    } else {
        while (true) {
            const token& t = p.next();
            if (t.type != tok::ident && t.type != tok::quoted_ident) {
                if (t.type == tok::end || (t.type == tok::ident && lower(t.text) == "from")) {
                    p.unexpected(t, "a column name or *");
                }
                p.fail(t, "only plain column names (or *) can be selected, not '" + t.text + "'");
            }
            if (t.type == tok::ident && lower(t.text) == "from")
                p.unexpected(t, "a column name or *");
            std::string col = t.type == tok::quoted_ident ? t.text : lower(t.text);
            if (p.peek().type == tok::lparen)
                p.fail(t, "functions are not supported (" + t.text + "(...))");
            if (p.peek().type == tok::dot) { // table.column
                p.next();
                const token& c = p.next();
                if (c.type == tok::star) p.fail(c, "table.* is not supported: write *");
                if (c.type != tok::ident && c.type != tok::quoted_ident)
                    p.unexpected(c, "a column name");
                qualifiers.emplace_back(col, t.offset);
                col = c.type == tok::quoted_ident ? c.text : lower(c.text);
            }
            if (p.at_keyword("as") || (p.peek().type == tok::ident && !p.at_keyword("from"))) {
                p.fail(p.peek(), "column aliases are not supported");
            }
            if (p.peek().type == tok::op || p.peek().type == tok::minus ||
                p.peek().type == tok::other || p.peek().type == tok::star) {
                p.fail(p.peek(), "only plain column names can be selected, not expressions");
            }
            q.columns.push_back(col);
            q.column_offsets.push_back(t.offset);
            if (p.peek().type == tok::comma) {
                p.next();
                continue;
            }
            break;
        }
    }
    if (!p.accept_keyword("from")) p.unexpected(p.peek(), "FROM");
    const token& t1 = p.next();
    if (t1.type == tok::lparen) p.fail(t1, "subqueries are not supported");
    if (t1.type != tok::ident && t1.type != tok::quoted_ident) p.unexpected(t1, "a table name");
    q.table_offset = t1.offset;
    std::string first = t1.type == tok::quoted_ident ? t1.text : lower(t1.text);
    if (p.peek().type == tok::dot) {
        p.next();
        const token& t2 = p.next();
        if (t2.type != tok::ident && t2.type != tok::quoted_ident) p.unexpected(t2, "a table name");
        q.schema = first;
        q.table = t2.type == tok::quoted_ident ? t2.text : lower(t2.text);
    } else {
        q.table = first;
    }
    if (p.peek().type == tok::lparen) p.fail(p.peek(), "table functions are not supported");
    if (p.accept_keyword("where")) q.where = p.expression();
    if (p.peek().type == tok::semicolon) {
        p.next();
        if (p.peek().type != tok::end) p.fail(p.peek(), "only one statement is allowed");
    }
    if (p.peek().type != tok::end) unsupported_clause(p, p.peek());
    q.max_param = p.max_param();
    for (const auto& [name, at] : qualifiers) {
        if (name != q.table) {
            throw parse_error(at, "'" + name + "' is not the table in FROM (" + q.table + ")");
        }
    }
    return q;
}

} // namespace

select_query parse_select(std::string_view sql) {
    parser p(sql, dialect::sql);
    return parse_select_in(p);
}

select_query parse_lookup_query(std::string_view text) {
    parser p(text, dialect::lookup);
    return parse_select_in(p);
}

} // namespace pgpush::rules
