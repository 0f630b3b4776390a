#pragma once

// Changes as JSON: the row encoding every output shares, and the one-line change object that
// `pgpush tail` prints.

#include <string>

#include "cdc/change.hpp"
#include "cdc/type_catalog.hpp"

namespace pgpush::cdc {

// {"col":value,...} in column order. Columns whose datum is `missing` are left out; an unchanged
// TOASTed value that could not be filled in is left out too and its column name appended to
// `unchanged_toast` (when given), so a value is never shown as null when it is not null.
void append_row_json(std::string& out, const type_catalog& types, const relation_schema& relation,
                     const pgoutput::tuple& row, std::vector<std::string_view>* unchanged_toast);

// {"table":"public.t","op":"update","row":{..},"old":{..}|null,"position":"..","xid":N,
//  "commit_time":"2026-01-01T00:00:00.000000Z"} plus "unchanged_toast":[..] when non-empty and,
// for truncate, "cascade"/"restart_identity" when set. No trailing newline.
// `commit_time_json` is the quoted commit time (the caller formats it once per transaction).
void append_change_json(std::string& out, const type_catalog& types, const change& c,
                        std::string_view commit_time_json);

} // namespace pgpush::cdc
