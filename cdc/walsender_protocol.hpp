#pragma once

// The CopyBoth sub-protocol of streaming replication (PostgreSQL docs, "Streaming Replication
// Protocol", START_REPLICATION): what the walsender sends inside CopyData and the standby status
// update we send back.

#include <array>
#include <cstddef>
#include <span>
#include <variant>

#include "cdc/byte_reader.hpp"
#include "cdc/lsn.hpp"
#include "cdc/pgoutput.hpp"

namespace pgpush::cdc::walsender {

// 'w': a chunk of the stream; for logical replication, exactly one pgoutput message.
struct xlog_data {
    lsn wal_start;
    lsn wal_end;
    pg_timestamp send_time = 0;
    std::span<const std::byte> payload;
};

// 'k': the server is alive, has sent WAL up to wal_end, and may ask for a status reply now.
struct keepalive {
    lsn wal_end;
    pg_timestamp send_time = 0;
    bool reply_requested = false;
};

using server_message = std::variant<xlog_data, keepalive>;

// Throws protocol_error on anything but a well-formed 'w' or 'k'. Borrows from `bytes`.
server_message decode(std::span<const std::byte> bytes);

// 'r': standby status update. written/flushed/applied are "last byte + 1" positions.
constexpr std::size_t status_update_size = 34;
std::array<std::byte, status_update_size>
encode_status_update(lsn written, lsn flushed, lsn applied, pg_timestamp now, bool reply_requested);

} // namespace pgpush::cdc::walsender
