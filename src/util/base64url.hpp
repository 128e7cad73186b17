#pragma once
// base64url (RFC 4648 §5) without padding, as JWS compact serialization uses it. Decoding is
// strict so that one token has exactly one textual form: no padding, no characters outside
// [A-Za-z0-9_-], no impossible lengths and no set bits in the unused tail of the last character.

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace mtapi::util {

// Length of the unpadded encoding of `n` bytes.
constexpr std::size_t base64url_encoded_size(std::size_t n) {
    return n / 3 * 4 + (n % 3 == 0 ? 0 : n % 3 + 1);
}

std::string base64url_encode(std::string_view bytes);
void append_base64url(std::string& out, std::string_view bytes);

// nullopt for anything that is not the canonical unpadded encoding of some byte string.
std::optional<std::string> base64url_decode(std::string_view text);

// As base64url_decode, into a caller-owned buffer (its capacity is reused). On failure `out`
// holds unspecified bytes and false is returned.
bool base64url_decode_into(std::string_view text, std::string& out);

}  // namespace mtapi::util
