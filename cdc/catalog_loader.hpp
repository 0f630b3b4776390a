#pragma once

#include <memory>
#include <span>
#include <string>

#include "cdc/type_catalog.hpp"

namespace pgpush::cdc {

// Fills a type_catalog from pg_type for types that are not built in: enums, domains, composites,
// arrays of them, extension types. Synchronous; called rarely (a Relation or Type message naming
// a type not seen before). Throws on failure; the stream treats that like a lost connection and
// retries, because a guessed type would print wrong values.
class catalog_loader {
public:
    explicit catalog_loader(std::string conninfo);
    ~catalog_loader();

    // Loads `ids` and everything they need (elements, bases, fields) into `catalog`.
    void load(type_catalog& catalog, std::span<const oid> ids);

private:
    struct connection; // a pqxx::connection, kept out of this header
    std::string conninfo_;
    std::unique_ptr<connection> conn_;
};

} // namespace pgpush::cdc
