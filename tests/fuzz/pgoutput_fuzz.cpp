// Fuzzes the replication stream decoding from bytes to JSON lines.
//
// Input, first byte:
//   even: the rest is one pgoutput message (bit 1: decode as inside a streamed block);
//   odd:  the rest is a capture as `pgpush tail --capture` writes it (4-byte big-endian length,
//         then a CopyData message), fed through the walsender framing, the decoder, the change
//         assembler and the JSON writer, as the stream does.
// Properties: no crash or sanitizer report; only protocol_error is ever thrown; every JSON line
// produced is valid JSON.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "cdc/change_assembler.hpp"
#include "cdc/change_json.hpp"
#include "cdc/json_writer.hpp"
#include "cdc/pgoutput_decoder.hpp"
#include "cdc/walsender_protocol.hpp"

using namespace pgpush::cdc;

namespace {

void require_valid_json(const std::string& s) {
    std::string check;
    if (!json::append_minified(check, s) || check != s) std::abort();
}

class json_sink final : public change_sink {
public:
    explicit json_sink(const type_catalog& t) : types(t) {}
    void on_change(const change& c) override {
        line.clear();
        append_change_json(line, types, c, "\"2000-01-01T00:00:00.000000Z\"");
        require_valid_json(line);
    }
    const type_catalog& types;
    std::string line;
};

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const auto mode = data[0];
    std::span<const std::byte> rest(reinterpret_cast<const std::byte*>(data + 1), size - 1);
    if ((mode & 1) == 0) {
        try {
            pgoutput::decode(rest, (mode & 2) != 0);
        } catch (const protocol_error&) {
        }
        return 0;
    }
    type_catalog types;
    json_sink sink(types);
    change_assembler assembler(types, sink);
    while (rest.size() >= 4) {
        std::uint32_t n = 0;
        for (int i = 0; i < 4; ++i)
            n = (n << 8) | static_cast<std::uint8_t>(rest[i]);
        rest = rest.subspan(4);
        if (n > rest.size()) break;
        auto frame = rest.subspan(0, n);
        rest = rest.subspan(n);
        try {
            auto msg = walsender::decode(frame);
            if (auto* x = std::get_if<walsender::xlog_data>(&msg)) {
                auto m = pgoutput::decode(x->payload);
                assembler.feed(m);
            }
        } catch (const protocol_error&) {
            // The stream stops at the first protocol error; the fuzzer keeps going to reach the
            // assembler's own checks with what follows.
        }
    }
    return 0;
}
