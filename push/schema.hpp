#pragma once

// Where cdc/ meets rules/: a table's columns, as the stream or the catalog describes them, in the
// terms the rules engine compares values in.

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

} // namespace pgpush::push
