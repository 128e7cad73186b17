#include "util/uuid.hpp"

#include <openssl/rand.h>

#include <array>
#include <chrono>
#include <cstring>
#include <stdexcept>

namespace mtapi::util {
namespace {

constexpr char kHex[] = "0123456789abcdef";

// xoshiro256** — small, fast and good enough for ids whose secrecy does not matter.
struct Xoshiro {
    std::uint64_t s[4];

    Xoshiro() {
        random_bytes(reinterpret_cast<std::uint8_t*>(s), sizeof(s));
        if ((s[0] | s[1] | s[2] | s[3]) == 0) s[0] = 1;
    }
    static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
    std::uint64_t next() {
        const std::uint64_t result = rotl(s[1] * 5, 7) * 9;
        const std::uint64_t t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = rotl(s[3], 45);
        return result;
    }
};

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

}  // namespace

void random_bytes(std::uint8_t* out, std::size_t len) {
    if (RAND_bytes(out, static_cast<int>(len)) != 1) throw std::runtime_error("RAND_bytes failed");
}

std::uint64_t fast_random() {
    thread_local Xoshiro rng;
    return rng.next();
}

Uuid uuid_v7() {
    thread_local std::uint64_t last_ms = 0;
    thread_local std::uint16_t counter = 0;

    auto now = std::chrono::system_clock::now().time_since_epoch();
    auto ms = static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(now).count());
    if (ms > last_ms) {
        last_ms = ms;
        counter = static_cast<std::uint16_t>(fast_random() & 0x1ff);  // leave room to count up
    } else {
        ms = last_ms;
        if (++counter > 0xfff) {  // counter exhausted: borrow the next millisecond
            ++last_ms;
            ms = last_ms;
            counter = 0;
        }
    }

    Uuid id;
    for (int i = 0; i < 6; ++i)
        id[i] = static_cast<std::uint8_t>(ms >> (40 - 8 * i));
    id[6] = static_cast<std::uint8_t>(0x70 | ((counter >> 8) & 0x0f));
    id[7] = static_cast<std::uint8_t>(counter & 0xff);
    std::uint64_t r = fast_random();
    id[8] = static_cast<std::uint8_t>(0x80 | (r & 0x3f));
    for (int i = 9; i < 16; ++i) {
        r >>= 8;
        if (i == 12) r = fast_random();
        id[i] = static_cast<std::uint8_t>(r & 0xff);
    }
    return id;
}

// The two lowercase hex digits of every byte value.
constexpr std::array<std::array<char, 2>, 256> kHexPairs = [] {
    std::array<std::array<char, 2>, 256> t{};
    for (std::size_t i = 0; i < 256; ++i)
        t[i] = {kHex[i >> 4], kHex[i & 0x0f]};
    return t;
}();

void format_uuid(const Uuid& id, char* out) {
    // Where each byte's two digits go in 8-4-4-4-12.
    static constexpr std::uint8_t kPos[16] = {0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34};
    for (std::size_t i = 0; i < id.size(); ++i)
        std::memcpy(out + kPos[i], kHexPairs[id[i]].data(), 2);
    out[8] = out[13] = out[18] = out[23] = '-';
}

void append_uuid(std::string& out, const Uuid& id) {
    char text[kUuidTextLength];
    format_uuid(id, text);
    out.append(text, kUuidTextLength);
}

std::string to_string(const Uuid& id) {
    std::string out(kUuidTextLength, '\0');
    format_uuid(id, out.data());
    return out;
}

std::string to_hex(const Uuid& id) {
    std::string out;
    out.reserve(32);
    for (auto b : id) {
        out.push_back(kHex[b >> 4]);
        out.push_back(kHex[b & 0x0f]);
    }
    return out;
}

std::optional<Uuid> parse_uuid(std::string_view text) {
    if (text.size() != 36) return std::nullopt;
    Uuid id{};
    std::size_t byte = 0;
    for (std::size_t i = 0; i < text.size();) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (text[i] != '-') return std::nullopt;
            ++i;
            continue;
        }
        int hi = hex_value(text[i]);
        int lo = hex_value(text[i + 1]);
        if (hi < 0 || lo < 0) return std::nullopt;
        id[byte++] = static_cast<std::uint8_t>((hi << 4) | lo);
        i += 2;
    }
    return id;
}

}  // namespace mtapi::util
