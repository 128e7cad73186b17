#include "app/app.hpp"

#include <openssl/evp.h>

#include "obs/log.hpp"
#include "util/uuid.hpp"

namespace mtapi::app {

std::shared_ptr<const auth::Keyring> load_keyring(const Config& config) {
    // The configuration (flags included) supplies the three keyring settings; `env:` sources in
    // MTAPI_JWT_KEYS still name real environment variables.
    auto env = [&config](std::string_view name) -> std::optional<std::string> {
        if (name == "MTAPI_JWT_SECRET")
            return config.jwt_secret.empty() ? std::nullopt : std::optional(config.jwt_secret);
        if (name == "MTAPI_JWT_KID") return config.jwt_kid;
        if (name == "MTAPI_JWT_KEYS") return config.jwt_keys.empty() ? std::nullopt : std::optional(config.jwt_keys);
        return auth::process_env(name);
    };
    return auth::Keyring::from_env(env);
}

std::string cursor_key(const Config& config, const auth::Keyring&) {
    if (!config.cursor_secret.empty()) return config.cursor_secret;
    if (!config.jwt_secret.empty()) {
        // A key of its own, derived from the HS256 secret (HMAC as a PRF), so cursors and tokens
        // never share a key.
        static constexpr std::string_view kLabel = "mtapi pagination cursor key v1";
        unsigned char out[EVP_MAX_MD_SIZE];
        std::size_t len = 0;
        if (EVP_Q_mac(nullptr, "HMAC", nullptr, "SHA256", nullptr, config.jwt_secret.data(), config.jwt_secret.size(),
                      reinterpret_cast<const unsigned char*>(kLabel.data()), kLabel.size(), out, sizeof(out),
                      &len) != nullptr)
            return std::string(reinterpret_cast<const char*>(out), len);
    }
    obs::warn("MTAPI_CURSOR_SECRET is not set and there is no HS256 secret: cursors are valid on this instance only");
    std::string key(32, '\0');
    util::random_bytes(reinterpret_cast<std::uint8_t*>(key.data()), key.size());
    return key;
}

}  // namespace mtapi::app
