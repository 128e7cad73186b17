#include "auth/keyring.hpp"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "util/text.hpp"

namespace mtapi::auth {
namespace {

std::string key_error(std::string_view kid, std::string_view what) {
    return "JWT key '" + std::string(kid) + "': " + std::string(what);
}

MacCtxPtr keyed_hmac_sha256(std::string_view kid, std::string_view secret) {
    EVP_MAC* mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
    if (mac == nullptr) throw KeyringError(key_error(kid, "HMAC is not available in OpenSSL"));
    MacCtxPtr ctx(EVP_MAC_CTX_new(mac));
    EVP_MAC_free(mac);  // the context holds its own reference
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0), OSSL_PARAM_END};
    if (!ctx ||
        EVP_MAC_init(ctx.get(), reinterpret_cast<const unsigned char*>(secret.data()), secret.size(), params) != 1)
        throw KeyringError(key_error(kid, "cannot initialise HMAC-SHA256"));
    return ctx;
}

bool has_private_half(EVP_PKEY* pkey) {
    std::size_t len = 0;
    const bool ok = EVP_PKEY_get_raw_private_key(pkey, nullptr, &len) == 1 && len > 0;
    ERR_clear_error();
    return ok;
}

// Encrypted PEM keys are not supported: never prompt on the terminal for a pass phrase.
int no_passphrase(char*, int, int, void*) {
    return -1;
}

// A private key, else a public key (whether that may sign is decided by Key::ed25519).
PkeyPtr read_pem(std::string_view pem) {
    using BioPtr = std::unique_ptr<BIO, decltype(&BIO_free)>;
    BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), &BIO_free);
    if (!bio) return nullptr;
    PkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, no_passphrase, nullptr));
    if (!key) {
        BioPtr again(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), &BIO_free);
        if (again) key.reset(PEM_read_bio_PUBKEY(again.get(), nullptr, no_passphrase, nullptr));
    }
    ERR_clear_error();
    return key;
}

std::string read_file(std::string_view kid, const std::string& path) {
    std::unique_ptr<std::FILE, decltype(&std::fclose)> file(std::fopen(path.c_str(), "rb"), &std::fclose);
    if (!file) throw KeyringError(key_error(kid, "cannot read file " + path + ": " + std::strerror(errno)));
    std::string data;
    char buf[4096];
    std::size_t n = 0;
    while ((n = std::fread(buf, 1, sizeof(buf), file.get())) > 0)
        data.append(buf, n);
    if (std::ferror(file.get())) throw KeyringError(key_error(kid, "cannot read file " + path));
    return data;
}

void strip_one_newline(std::string& s) {
    if (!s.empty() && s.back() == '\n') s.pop_back();
    if (!s.empty() && s.back() == '\r') s.pop_back();
}

bool valid_kid(std::string_view kid) {
    if (kid.empty() || kid.size() > 64) return false;
    for (char c : kid) {
        const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
                        c == '_' || c == '-';
        if (!ok) return false;
    }
    return true;
}

// Splits off the text before the next ':' (nullopt when there is none).
std::optional<std::string_view> next_field(std::string_view& rest) {
    const auto colon = rest.find(':');
    if (colon == std::string_view::npos) return std::nullopt;
    auto field = rest.substr(0, colon);
    rest.remove_prefix(colon + 1);
    return field;
}

struct KeyEntry {
    std::string_view kid, alg, state, source;
};

KeyEntry parse_entry(std::string_view entry) {
    std::string_view rest = entry;
    auto kid = next_field(rest);
    auto alg = next_field(rest);
    auto state = next_field(rest);
    if (!kid || !alg || !state || rest.empty())
        throw KeyringError("MTAPI_JWT_KEYS entry '" + std::string(entry) + "': expected kid:alg:state:source");
    return {*kid, *alg, *state, rest};
}

KeyState parse_state(std::string_view kid, std::string_view state) {
    if (state == "signing") return KeyState::signing;
    if (state == "verify_only") return KeyState::verify_only;
    throw KeyringError(key_error(kid, "unknown state '" + std::string(state) + "' (signing or verify_only)"));
}

std::string load_source(std::string_view kid, std::string_view source, Algorithm alg, const Keyring::EnvLookup& env) {
    if (source.starts_with("env:")) {
        auto name = source.substr(4);
        auto value = env(name);
        if (!value) throw KeyringError(key_error(kid, "environment variable " + std::string(name) + " is not set"));
        return std::move(*value);
    }
    if (source.starts_with("file:")) {
        auto data = read_file(kid, std::string(source.substr(5)));
        if (alg == Algorithm::hs256) strip_one_newline(data);
        return data;
    }
    throw KeyringError(key_error(kid, "unknown key source '" + std::string(source) + "' (env:NAME or file:/path)"));
}

Key load_entry(std::string_view text, const Keyring::EnvLookup& env) {
    const KeyEntry e = parse_entry(text);
    if (!valid_kid(e.kid))
        throw KeyringError("MTAPI_JWT_KEYS entry '" + std::string(text) + "': kid must be 1-64 of [A-Za-z0-9._-]");
    const auto alg = parse_algorithm(e.alg);
    if (!alg) throw KeyringError(key_error(e.kid, "unknown algorithm '" + std::string(e.alg) + "' (HS256 or EdDSA)"));
    const KeyState state = parse_state(e.kid, e.state);
    std::string material = load_source(e.kid, e.source, *alg, env);
    if (*alg == Algorithm::hs256) return Key::hs256(std::string(e.kid), state, std::move(material));
    Key key = Key::ed25519_pem(std::string(e.kid), state, material);
    OPENSSL_cleanse(material.data(), material.size());
    return key;
}

void load_spec(std::string_view spec, const Keyring::EnvLookup& env, std::vector<Key>& keys) {
    while (!spec.empty()) {
        const auto comma = spec.find(',');
        const auto entry = util::trim_blanks(spec.substr(0, comma));
        spec = comma == std::string_view::npos ? std::string_view{} : spec.substr(comma + 1);
        if (entry.empty()) continue;
        keys.push_back(load_entry(entry, env));
    }
}

}  // namespace

std::string_view algorithm_name(Algorithm alg) {
    return alg == Algorithm::hs256 ? "HS256" : "EdDSA";
}

std::optional<Algorithm> parse_algorithm(std::string_view name) {
    if (name == "HS256") return Algorithm::hs256;
    if (name == "EdDSA") return Algorithm::eddsa;
    return std::nullopt;
}

Key Key::hs256(std::string kid, KeyState state, std::string secret) {
    if (secret.size() < kMinHmacSecretBytes)
        throw KeyringError(key_error(kid, "an HS256 secret must be at least " + std::to_string(kMinHmacSecretBytes) +
                                              " bytes (got " + std::to_string(secret.size()) + ")"));
    Key key(std::move(kid), Algorithm::hs256, state);
    key.hmac_ = keyed_hmac_sha256(key.kid_, secret);
    OPENSSL_cleanse(secret.data(), secret.size());
    return key;
}

Key Key::ed25519(std::string kid, KeyState state, PkeyPtr pkey) {
    if (!pkey || EVP_PKEY_get_id(pkey.get()) != EVP_PKEY_ED25519)
        throw KeyringError(key_error(kid, "an EdDSA key must be an Ed25519 key"));
    if (state == KeyState::signing && !has_private_half(pkey.get()))
        throw KeyringError(key_error(kid, "a signing EdDSA key needs the private key, not only the public key"));
    Key key(std::move(kid), Algorithm::eddsa, state);
    key.pkey_ = std::move(pkey);
    return key;
}

Key Key::ed25519_pem(std::string kid, KeyState state, std::string_view pem) {
    PkeyPtr pkey = read_pem(pem);
    if (!pkey) throw KeyringError(key_error(kid, "not a PEM Ed25519 key (unencrypted PKCS#8 or SubjectPublicKeyInfo)"));
    return ed25519(std::move(kid), state, std::move(pkey));
}

Keyring::Keyring(std::vector<Key> keys) : keys_(std::move(keys)) {
    if (keys_.empty()) throw KeyringError("no JWT key configured (set MTAPI_JWT_SECRET or MTAPI_JWT_KEYS)");
    std::optional<std::size_t> signing;
    for (std::size_t i = 0; i < keys_.size(); ++i) {
        for (std::size_t j = 0; j < i; ++j)
            if (keys_[j].kid() == keys_[i].kid()) throw KeyringError(key_error(keys_[i].kid(), "configured twice"));
        if (!keys_[i].signing()) continue;
        if (signing)
            throw KeyringError("JWT keys '" + keys_[*signing].kid() + "' and '" + keys_[i].kid() +
                               "' are both signing keys; exactly one key may sign");
        signing = i;
    }
    if (!signing) throw KeyringError("no JWT signing key: exactly one key must have the state signing");
    signing_ = *signing;
}

std::shared_ptr<const Keyring> Keyring::from_env(const EnvLookup& env) {
    std::vector<Key> keys;
    if (auto secret = env("MTAPI_JWT_SECRET")) {
        std::string kid = env("MTAPI_JWT_KID").value_or("default");
        if (!valid_kid(kid)) throw KeyringError("MTAPI_JWT_KID: kid must be 1-64 of [A-Za-z0-9._-]");
        keys.push_back(Key::hs256(std::move(kid), KeyState::signing, std::move(*secret)));
    }
    if (auto spec = env("MTAPI_JWT_KEYS")) load_spec(*spec, env, keys);
    return std::make_shared<const Keyring>(std::move(keys));
}

std::shared_ptr<const Keyring> Keyring::from_spec(std::string_view spec, const EnvLookup& env) {
    std::vector<Key> keys;
    load_spec(spec, env, keys);
    return std::make_shared<const Keyring>(std::move(keys));
}

const Key* Keyring::find(std::string_view kid) const {
    for (const auto& key : keys_)
        if (key.kid() == kid) return &key;
    return nullptr;
}

std::optional<std::string> process_env(std::string_view name) {
    const char* value = std::getenv(std::string(name).c_str());
    if (value == nullptr) return std::nullopt;
    return std::string(value);
}

}  // namespace mtapi::auth
