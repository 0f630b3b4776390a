#include "cdc/walsender_protocol.hpp"

#include <string>

namespace pgpush::cdc::walsender {

server_message decode(std::span<const std::byte> bytes) {
    byte_reader r(bytes);
    const auto tag = r.u8("copy message type");
    if (tag == 'w') {
        xlog_data m;
        m.wal_start = lsn{r.u64("wal start")};
        m.wal_end = lsn{r.u64("wal end")};
        m.send_time = r.i64("send time");
        m.payload = r.bytes(r.remaining(), "payload");
        return m;
    }
    if (tag == 'k') {
        keepalive m;
        m.wal_end = lsn{r.u64("wal end")};
        m.send_time = r.i64("send time");
        auto reply = r.u8("reply requested");
        if (reply > 1) r.fail("reply requested", "expected 0 or 1, got " + std::to_string(reply));
        m.reply_requested = reply == 1;
        r.expect_end("keepalive end");
        return m;
    }
    r.fail("copy message type", "unknown replication message type " + std::to_string(tag));
}

namespace {

void put_be64(std::byte* out, std::uint64_t v) {
    for (int i = 7; i >= 0; --i) {
        out[i] = static_cast<std::byte>(v & 0xff);
        v >>= 8;
    }
}

} // namespace

std::array<std::byte, status_update_size> encode_status_update(lsn written, lsn flushed,
                                                               lsn applied, pg_timestamp now,
                                                               bool reply_requested) {
    std::array<std::byte, status_update_size> out{};
    out[0] = std::byte{'r'};
    put_be64(&out[1], written.value);
    put_be64(&out[9], flushed.value);
    put_be64(&out[17], applied.value);
    put_be64(&out[25], static_cast<std::uint64_t>(now));
    out[33] = std::byte{reply_requested ? std::uint8_t{1} : std::uint8_t{0}};
    return out;
}

} // namespace pgpush::cdc::walsender
