#pragma once

// Before streaming: check that the database can stream what was asked for, create what is
// missing (publication, permanent slot), and turn the usual mistakes into one-line errors that
// name the fix. Synchronous (libpqxx); runs once at start.

#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "cdc/lsn.hpp"

namespace pgpush::cdc {

// Stable codes: scripts and tests match on them, so they never change meaning.
enum class setup_error_code {
    connection_failed,        // cannot connect (bad URL, server down, authentication)
    server_too_old,           // PostgreSQL < 14
    wal_level_not_logical,    // wal_level must be logical
    no_replication_privilege, // role lacks REPLICATION
    no_wal_senders,           // max_wal_senders or max_replication_slots is 0
    bad_name,                 // slot or publication name Postgres would refuse
    unknown_table,            // a --table that does not exist
    not_a_table,              // a view, sequence, ...
    publication_missing,      // --publication names one that does not exist and may not be made
    table_not_in_publication, // a --table the named publication does not publish
    permission_denied,        // cannot create the publication or slot
    slot_mismatch,            // the slot exists but for another plugin or database
    slot_invalidated,         // the slot exists but Postgres already removed WAL it needs
    too_many_slots,           // max_replication_slots reached
};

std::string_view to_string(setup_error_code c);

class setup_error : public std::runtime_error {
public:
    setup_error(setup_error_code code, const std::string& message)
        : std::runtime_error(message), code_(code) {}
    setup_error_code code() const { return code_; }

private:
    setup_error_code code_;
};

struct source_config {
    std::string conninfo;
    std::string slot;
    bool temporary_slot = false; // the stream creates it; setup only checks the name
    std::string publication;
    // Create `publication` if it does not exist: over `tables`, or FOR ALL TABLES when empty.
    bool create_publication = false;
    std::vector<std::string> tables; // as the user wrote them: "messages", "public.messages"
};

struct source_info {
    int server_version = 0; // server_version_num
    std::string database;
    std::string user;
    std::string encoding;
    std::vector<std::string> tables; // resolved, "schema.table"
    bool publication_created = false;
    bool slot_created = false;
    lsn slot_confirmed_flush; // of an existing permanent slot
};

// Throws setup_error.
source_info prepare_source(const source_config& config);

// Just the basics prepare_source starts with: the database can be reached, is new enough, has
// wal_level=logical and wal senders, and the role may replicate. Throws setup_error.
source_info preflight(const std::string& conninfo);

// True for names Postgres accepts as a replication slot: [a-z0-9_]{1,63}.
bool valid_slot_name(std::string_view name);

} // namespace pgpush::cdc
