#include "util/base64url.hpp"

#include <array>
#include <cstdint>

namespace mtapi::util {
namespace {

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

// Character → 6-bit value, or -1 for every byte outside the alphabet (padding included).
constexpr std::array<std::int8_t, 256> make_decode_table() {
    std::array<std::int8_t, 256> table{};
    for (auto& v : table)
        v = -1;
    for (int i = 0; i < 64; ++i)
        table[static_cast<unsigned char>(kAlphabet[i])] = static_cast<std::int8_t>(i);
    return table;
}

constexpr auto kDecode = make_decode_table();

int sextet(char c) {
    return kDecode[static_cast<unsigned char>(c)];
}

}  // namespace

void append_base64url(std::string& out, std::string_view bytes) {
    const std::size_t at = out.size();
    out.resize(at + base64url_encoded_size(bytes.size()));
    char* o = out.data() + at;
    const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
    std::size_t i = 0;
    for (; i + 3 <= bytes.size(); i += 3, o += 4) {
        const std::uint32_t v = (p[i] << 16) | (p[i + 1] << 8) | p[i + 2];
        o[0] = kAlphabet[v >> 18];
        o[1] = kAlphabet[(v >> 12) & 63];
        o[2] = kAlphabet[(v >> 6) & 63];
        o[3] = kAlphabet[v & 63];
    }
    const std::size_t rest = bytes.size() - i;
    if (rest == 0) return;
    const std::uint32_t v = (p[i] << 16) | (rest == 2 ? p[i + 1] << 8 : 0);
    o[0] = kAlphabet[v >> 18];
    o[1] = kAlphabet[(v >> 12) & 63];
    if (rest == 2) o[2] = kAlphabet[(v >> 6) & 63];
}

std::string base64url_encode(std::string_view bytes) {
    std::string out;
    append_base64url(out, bytes);
    return out;
}

bool base64url_decode_into(std::string_view text, std::string& out) {
    const std::size_t tail = text.size() % 4;
    if (tail == 1) return false;  // 6 bits cannot carry a whole byte
    const std::size_t full = text.size() / 4;
    out.resize(full * 3 + (tail == 0 ? 0 : tail - 1));
    const char* p = text.data();
    char* o = out.data();
    for (std::size_t i = 0; i < full; ++i, p += 4, o += 3) {
        const int a = sextet(p[0]), b = sextet(p[1]), c = sextet(p[2]), d = sextet(p[3]);
        if ((a | b | c | d) < 0) return false;
        const auto v = static_cast<std::uint32_t>((a << 18) | (b << 12) | (c << 6) | d);
        o[0] = static_cast<char>(v >> 16);
        o[1] = static_cast<char>((v >> 8) & 0xff);
        o[2] = static_cast<char>(v & 0xff);
    }
    if (tail == 0) return true;
    const int a = sextet(p[0]), b = sextet(p[1]), c = tail == 3 ? sextet(p[2]) : 0;
    if ((a | b | c) < 0) return false;
    // The bits of the last character beyond the final byte must be zero, otherwise several
    // texts would decode to the same bytes.
    if (tail == 2) {
        if ((b & 0x0f) != 0) return false;
        o[0] = static_cast<char>((a << 2) | (b >> 4));
        return true;
    }
    if ((c & 0x03) != 0) return false;
    const auto v = static_cast<std::uint32_t>((a << 12) | (b << 6) | c);
    o[0] = static_cast<char>(v >> 10);
    o[1] = static_cast<char>((v >> 2) & 0xff);
    return true;
}

std::optional<std::string> base64url_decode(std::string_view text) {
    std::string out;
    if (!base64url_decode_into(text, out)) return std::nullopt;
    return out;
}

}  // namespace mtapi::util
