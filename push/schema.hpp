#pragma once

// Where cdc/ meets rules/: a table's columns, as the stream or the catalog describes them, in the
// terms the rules engine compares values in.

#include <span>
#include <vector>

#include "cdc/change.hpp"
#include "cdc/table_catalog.hpp"
#include "cdc/type_catalog.hpp"
#include "rules/predicate.hpp"

namespace pgpush::push {

// How rules/ compares values of a Postgres type (domains followed to their base type).
rules::column_family family_of(cdc::oid type, const cdc::type_catalog& types);

rules::table_schema rules_schema(const cdc::table_description& table,
                                 const cdc::type_catalog& types);
rules::table_schema rules_schema(const cdc::relation_schema& relation,
                                 const cdc::type_catalog& types);

// A change's rows as the rules compare them: `row` and `old` get one value per column of
// `schema` (NULL for what is not loaded), filled for `columns` only. `old` stays empty when the
// change has no old row to match: an update without REPLICA IDENTITY FULL (see rules/matcher.hpp).
void load_values(const cdc::change& c, const rules::table_schema& schema,
                 std::span<const std::size_t> columns, std::vector<rules::value>& row,
                 std::vector<rules::value>& old);

} // namespace pgpush::push
