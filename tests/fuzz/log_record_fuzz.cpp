// The change log's reader meets whatever a crash or a bad disk left: any bytes must give a
// record, "incomplete" or "corrupt", never a read outside them. A record that reads back must
// also write back to the same bytes.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "log/record.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace pgpush;
    std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
    while (!bytes.empty()) {
        auto r = log::read_record(bytes);
        if (r.status != log::read_status::ok) break;
        if (auto* b = std::get_if<log::begin_record>(&r.value)) {
            std::string again;
            log::append_begin(again, b->txn);
            if (again.size() != r.size) __builtin_trap();
        } else if (auto* g = std::get_if<log::gap_record>(&r.value)) {
            std::string again;
            log::append_gap(again, g->table, g->at);
            if (again.size() != r.size ||
                std::memcmp(again.data(), bytes.data(), again.size()) != 0) {
                __builtin_trap();
            }
        }
        bytes = bytes.subspan(r.size);
    }
    return 0;
}
