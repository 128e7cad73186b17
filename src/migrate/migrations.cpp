#include "migrate/migrations.hpp"

#include <openssl/evp.h>

#include <array>
#include <charconv>

namespace mtapi::migrate {
namespace {

std::string describe(std::string_view stream_name, const Migration& m) {
    return std::string(stream_name) + " migration " + std::string(m.name);
}

// The version a file name announces: its leading digits up to '_' (0 when there are none).
int version_in_name(std::string_view name) {
    int value = 0;
    auto underscore = name.find('_');
    if (underscore == std::string_view::npos || underscore == 0) return 0;
    auto [end, ec] = std::from_chars(name.data(), name.data() + underscore, value);
    if (ec != std::errc() || end != name.data() + underscore) return 0;
    return value;
}

bool is_hex_digest(std::string_view s) {
    if (s.size() != 64) return false;
    for (char c : s)
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    return true;
}

Stream validated(std::string_view stream_name, Stream stream) {
    validate_stream(stream_name, stream);
    return stream;
}

}  // namespace

void validate_stream(std::string_view stream_name, Stream stream) {
    int expected = 1;
    for (const Migration& m : stream) {
        if (m.version != expected) {
            throw MigrationError(describe(stream_name, m) + " has version " + std::to_string(m.version) +
                                 ", expected " + std::to_string(expected) +
                                 " (versions must run 1, 2, 3, … without gaps or duplicates)");
        }
        if (version_in_name(m.name) != m.version || m.name.size() < 5 || m.name[4] != '_') {
            throw MigrationError(describe(stream_name, m) +
                                 " must be named NNNN_name.sql with NNNN = " + std::to_string(m.version));
        }
        if (!is_hex_digest(m.checksum)) throw MigrationError(describe(stream_name, m) + " has no valid checksum");
        ++expected;
    }
}

Stream platform_migrations() {
    static const Stream stream = validated("platform", detail::embedded_platform_migrations());
    return stream;
}

Stream tenant_migrations() {
    static const Stream stream = validated("tenant", detail::embedded_tenant_migrations());
    return stream;
}

int head(Stream stream) {
    return stream.empty() ? 0 : stream.back().version;
}

int tenant_head() {
    return head(tenant_migrations());
}

std::string sha256_hex(std::string_view data) {
    std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
    unsigned int length = 0;
    if (EVP_Digest(data.data(), data.size(), digest.data(), &length, EVP_sha256(), nullptr) != 1)
        throw std::runtime_error("SHA-256 failed");
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out;
    out.reserve(length * 2);
    for (unsigned int i = 0; i < length; ++i) {
        out.push_back(kHex[digest[i] >> 4]);
        out.push_back(kHex[digest[i] & 0x0f]);
    }
    return out;
}

}  // namespace mtapi::migrate
