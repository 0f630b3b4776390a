#include "main/check_command.hpp"

#include <cstdio>
#include <string>

#include <CLI/CLI.hpp>

#include "cdc/catalog_loader.hpp"
#include "cdc/pg_async.hpp"
#include "cdc/table_catalog.hpp"
#include "main/common.hpp"
#include "push/schema.hpp"
#include "rules/rule_set.hpp"

namespace pgpush {

CLI::App* add_check_command(CLI::App& app, check_options& o) {
    auto* cmd = app.add_subcommand(
        "check", "Validate a rules file; with --db, against the live schema (see docs/rules.md)");
    cmd->add_option("file", o.file, "The rules file")->required();
    cmd->add_option("--db", o.db, "PostgreSQL URL: also check tables, columns and literal types");
    return cmd;
}

namespace {

int report(const std::vector<rules::diagnostic>& errors, const std::string& file) {
    for (const auto& d : errors)
        std::printf("%s\n", rules::format(d, file).c_str());
    std::fflush(stdout);
    return errors.empty() ? 0 : 1;
}

} // namespace

int run_check(const check_options& o) {
    std::string text;
    try {
        text = read_file(o.file);
    } catch (const std::exception&) {
        std::printf("%s:1:1: cannot read the file\n", o.file.c_str());
        return 1;
    }

    auto loaded = rules::load_rules(text);
    if (!loaded.errors.empty()) return report(loaded.errors, o.file);

    if (!o.db.empty()) {
        // The tables of the rules and those lookups read.
        const std::vector<std::string> tables = rules::streamed_tables(*loaded.rules);
        rules::schema_map schema;
        try {
            cdc::type_catalog types;
            cdc::catalog_loader loader(o.db);
            for (const auto& t : cdc::describe_tables(o.db, tables)) {
                std::vector<cdc::oid> missing;
                for (const auto& c : t.columns) {
                    for (auto m : types.missing(c.type))
                        missing.push_back(m);
                }
                if (!missing.empty()) loader.load(types, missing);
                schema.emplace(t.qualified(), push::rules_schema(t, types));
            }
        } catch (const std::exception& e) {
            std::fprintf(stderr,
                         "pgpush check: connection_failed: cannot read the schema from %s: %s\n",
                         cdc::pg::redact_conninfo(o.db).c_str(), e.what());
            return 1;
        }
        auto checked = rules::load_rules(text, &schema);
        if (!checked.errors.empty()) return report(checked.errors, o.file);
    }
    const std::size_t lookups = loaded.rules->lookups().size();
    const std::string lookup_count =
        lookups ? ", " + std::to_string(lookups) + " lookup(s)" : std::string();
    std::printf("%s: ok (%zu table(s), %zu channel(s)%s%s)\n", o.file.c_str(),
                loaded.rules->tables().size(), loaded.rules->channels().size(),
                lookup_count.c_str(), o.db.empty() ? "" : ", checked against the database");
    return 0;
}

} // namespace pgpush
