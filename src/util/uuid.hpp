#pragma once
// UUIDs: version 7 generation (time ordered, RFC 9562), parsing and formatting.

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace mtapi::util {

using Uuid = std::array<std::uint8_t, 16>;

// A new UUIDv7: 48-bit Unix milliseconds, a 12-bit per-thread counter that keeps ids from one
// thread strictly increasing within a millisecond, and 62 random bits.
Uuid uuid_v7();

// Canonical 8-4-4-4-12 lowercase form.
inline constexpr std::size_t kUuidTextLength = 36;
std::string to_string(const Uuid& id);
void append_uuid(std::string& out, const Uuid& id);
// Writes exactly kUuidTextLength characters to `out` (no terminating NUL).
void format_uuid(const Uuid& id, char* out);

// 32 lowercase hex digits, no dashes (used for schema and role names).
std::string to_hex(const Uuid& id);

// Accepts only the canonical 36-character form (either case); anything else is nullopt.
std::optional<Uuid> parse_uuid(std::string_view text);

// Cryptographically secure random bytes (OpenSSL RAND_bytes); throws on failure.
void random_bytes(std::uint8_t* out, std::size_t len);

// Fast non-cryptographic 64-bit random number, per thread, seeded from random_bytes().
std::uint64_t fast_random();

}  // namespace mtapi::util
