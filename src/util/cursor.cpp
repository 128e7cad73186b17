#include "util/cursor.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <stdexcept>

#include "util/base64url.hpp"
#include "util/uuid.hpp"

namespace mtapi::util {
namespace {

constexpr std::size_t kMacBytes = 16;

bool plausible_timestamp(std::string_view s) {
    if (s.size() < 20 || s.size() > 40) return false;
    for (char c : s)
        if (!((c >= '0' && c <= '9') || c == '-' || c == ':' || c == 'T' || c == '.' || c == 'Z' || c == '+'))
            return false;
    return true;
}

}  // namespace

CursorCodec::CursorCodec(std::string key) : key_(std::move(key)) {
    if (key_.size() < 32) throw std::invalid_argument("cursor key must be at least 32 bytes");
}

std::string CursorCodec::mac(std::string_view scope, std::string_view list, std::string_view filter,
                             std::string_view payload) const {
    // Length-prefixed fields so that no two bindings serialise alike.
    std::string msg;
    for (std::string_view part : {scope, list, filter, payload}) {
        msg.append(std::to_string(part.size()));
        msg.push_back(':');
        msg.append(part);
    }
    unsigned char out[EVP_MAX_MD_SIZE];
    std::size_t len = 0;
    if (EVP_Q_mac(nullptr, "HMAC", nullptr, "SHA256", nullptr, key_.data(), key_.size(),
                  reinterpret_cast<const unsigned char*>(msg.data()), msg.size(), out, sizeof(out), &len) == nullptr)
        throw std::runtime_error("HMAC failed");
    return std::string(reinterpret_cast<const char*>(out), kMacBytes);
}

std::string CursorCodec::encode(std::string_view scope, std::string_view list, std::string_view filter,
                                const CursorPosition& pos) const {
    std::string payload = pos.created_at + "|" + pos.id;
    std::string token = base64url_encode(payload);
    token.push_back('.');
    append_base64url(token, mac(scope, list, filter, payload));
    return token;
}

std::optional<CursorPosition> CursorCodec::decode(std::string_view token, std::string_view scope, std::string_view list,
                                                  std::string_view filter) const {
    if (token.size() > 256) return std::nullopt;
    auto dot = token.find('.');
    if (dot == std::string_view::npos) return std::nullopt;
    auto payload = base64url_decode(token.substr(0, dot));
    auto tag = base64url_decode(token.substr(dot + 1));
    if (!payload || !tag || tag->size() != kMacBytes) return std::nullopt;
    std::string expected = mac(scope, list, filter, *payload);
    if (CRYPTO_memcmp(expected.data(), tag->data(), kMacBytes) != 0) return std::nullopt;
    auto bar = payload->find('|');
    if (bar == std::string::npos) return std::nullopt;
    CursorPosition pos{payload->substr(0, bar), payload->substr(bar + 1)};
    if (!plausible_timestamp(pos.created_at) || !parse_uuid(pos.id)) return std::nullopt;
    return pos;
}

}  // namespace mtapi::util
