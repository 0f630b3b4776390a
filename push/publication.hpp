#pragma once

// Keeping Postgres ready to stream what the rules serve: the publication carries the rules'
// tables, and those tables have REPLICA IDENTITY FULL (updates and deletes then carry the whole
// old row, which tells a row leaving a result from one changing within it). Synchronous
// (libpqxx); the engine runs it on its DDL worker, never on an event loop, because DDL waits
// for locks: every statement here gives up after `lock_timeout` instead of waiting behind a long
// transaction, and what could not be done is reported so it can be retried later.

#include <chrono>
#include <set>
#include <string>
#include <vector>

namespace pqxx {
class connection_base;
}

namespace pgpush::push {

struct publication_options {
    std::string publication;
    bool manage = true;                // keep the publication's tables equal to the rules'
    bool replica_identity_full = true; // set REPLICA IDENTITY FULL on the rules' tables
    std::chrono::milliseconds lock_timeout{5000};
};

struct publication_state {
    std::set<std::string> present;           // the rules' tables that exist
    std::set<std::string> published;         // the tables the publication carries now
    std::set<std::string> missing_before;    // `expected` tables it lacked when first read
    std::vector<std::string> identity_waits; // REPLICA IDENTITY FULL not set: a lock was held
    bool publication_waits = false;          // the publication could not be changed: a lock
};

// Brings the publication (and replica identities) in line with `tables` (the rules' tables,
// qualified). `expected`: the tables that should have been published already; any of them the
// publication lacks has a hole in its history (reported in missing_before, then repaired when
// managing). Throws what libpqxx throws for anything but lock timeouts.
publication_state prepare_tables(pqxx::connection_base& conn, const publication_options& options,
                                 const std::vector<std::string>& tables,
                                 const std::set<std::string>& expected);

// The tables a publication carries now (qualified); empty when it does not exist.
std::set<std::string> published_tables(pqxx::connection_base& conn, const std::string& publication);

} // namespace pgpush::push
