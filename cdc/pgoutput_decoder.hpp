#pragma once

#include <cstddef>
#include <span>

#include "cdc/byte_reader.hpp"
#include "cdc/pgoutput.hpp"

namespace pgpush::cdc::pgoutput {

// Decodes exactly one pgoutput message. Inside a streamed block (between stream_start and
// stream_stop, protocol version 2) data messages carry the transaction's xid first, so the caller
// says whether it is in one. Throws protocol_error on any malformed input; never reads past
// `bytes`. The result borrows from `bytes`.
message_variant decode(std::span<const std::byte> bytes, bool in_stream_block = false);

} // namespace pgpush::cdc::pgoutput
