#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>

namespace pgpush::cdc {

// Raised for any byte sequence that does not follow the protocol: truncated, overlong, unknown
// tag. Decoders throw it; they never read out of bounds and never assert on input.
class protocol_error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// A big-endian cursor over bytes. Every read checks the remaining length first and names the
// field it was reading when it throws, so a bad frame says where it went wrong.
class byte_reader {
public:
    explicit byte_reader(std::span<const std::byte> bytes) : bytes_(bytes) {}

    std::size_t offset() const { return offset_; }
    std::size_t remaining() const { return bytes_.size() - offset_; }
    bool empty() const { return remaining() == 0; }

    std::uint8_t u8(const char* field) { return static_cast<std::uint8_t>(take(1, field)[0]); }
    std::uint16_t u16(const char* field) { return static_cast<std::uint16_t>(be(2, field)); }
    std::uint32_t u32(const char* field) { return static_cast<std::uint32_t>(be(4, field)); }
    std::uint64_t u64(const char* field) { return be(8, field); }
    std::int16_t i16(const char* field) { return static_cast<std::int16_t>(u16(field)); }
    std::int32_t i32(const char* field) { return static_cast<std::int32_t>(u32(field)); }
    std::int64_t i64(const char* field) { return static_cast<std::int64_t>(u64(field)); }

    std::span<const std::byte> bytes(std::size_t n, const char* field) { return take(n, field); }

    std::string_view chars(std::size_t n, const char* field) {
        auto b = take(n, field);
        return {reinterpret_cast<const char*>(b.data()), b.size()};
    }

    // A NUL-terminated string (the protocol's "String"); the NUL is consumed, not returned.
    std::string_view cstring(const char* field) {
        auto rest = bytes_.subspan(offset_);
        if (rest.empty()) fail(field, "unterminated string"); // memchr may not take a null pointer
        const void* nul = std::memchr(rest.data(), 0, rest.size());
        if (nul == nullptr) fail(field, "unterminated string");
        auto len = static_cast<std::size_t>(static_cast<const std::byte*>(nul) - rest.data());
        auto s = chars(len, field);
        offset_ += 1;
        return s;
    }

    // Throws unless every byte was consumed: trailing garbage is as wrong as a short message.
    void expect_end(const char* what) const {
        if (!empty()) {
            fail(what, std::to_string(remaining()) + " unexpected trailing byte(s)");
        }
    }

    [[noreturn]] void fail(const char* field, const std::string& why) const {
        throw protocol_error(std::string(field) + " at offset " + std::to_string(offset_) + ": " +
                             why);
    }

private:
    std::span<const std::byte> take(std::size_t n, const char* field) {
        if (n > remaining()) {
            fail(field, "needs " + std::to_string(n) + " byte(s), " + std::to_string(remaining()) +
                            " left");
        }
        auto s = bytes_.subspan(offset_, n);
        offset_ += n;
        return s;
    }

    std::uint64_t be(std::size_t n, const char* field) {
        auto b = take(n, field);
        std::uint64_t v = 0;
        for (auto x : b)
            v = (v << 8) | static_cast<std::uint8_t>(x);
        return v;
    }

    std::span<const std::byte> bytes_;
    std::size_t offset_ = 0;
};

inline std::span<const std::byte> as_bytes(std::string_view s) {
    return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

} // namespace pgpush::cdc
