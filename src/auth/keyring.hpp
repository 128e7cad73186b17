#pragma once
// The JWS keyring: every key the server signs or verifies tokens with, looked up by `kid`.
//
// A key has a `kid`, exactly one algorithm (HS256 or EdDSA/Ed25519) and a state: `signing` (new
// tokens are signed with it; exactly one key has this state) or `verify_only` (tokens it signed
// keep verifying, which lets keys rotate without logging everybody out). A keyring is immutable
// once loaded and is shared between threads as std::shared_ptr<const Keyring>.
//
// Configuration (environment):
//   MTAPI_JWT_SECRET  the HS256 signing secret, taken as raw bytes (at least 32 bytes)
//   MTAPI_JWT_KID     the kid of that secret (default "default")
//   MTAPI_JWT_KEYS    further keys: comma-separated entries `kid:alg:state:source`, where
//                     kid    is 1–64 characters from [A-Za-z0-9._-]
//                     alg    is `HS256` or `EdDSA` (exact case)
//                     state  is `signing` or `verify_only`
//                     source is `env:NAME` (the bytes of environment variable NAME) or
//                            `file:/path` (the bytes of a file; one trailing newline is
//                            stripped from an HS256 secret file)
//                     An HS256 source holds the raw secret (at least 32 bytes); an EdDSA source
//                     holds a PEM Ed25519 key: a private key for a signing key, a private or
//                     public key for a verify-only key.
// Either variable may be absent, but together they must name exactly one signing key and no kid
// twice. Rotation example: MTAPI_JWT_KID=k2, MTAPI_JWT_SECRET=<new secret>,
// MTAPI_JWT_KEYS=k1:HS256:verify_only:env:MTAPI_JWT_SECRET_OLD.

#include <openssl/evp.h>

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mtapi::auth {

enum class Algorithm { hs256, eddsa };
enum class KeyState { signing, verify_only };

// The JOSE `alg` names: "HS256" and "EdDSA".
std::string_view algorithm_name(Algorithm alg);
// Exact, case-sensitive match against the JOSE names.
std::optional<Algorithm> parse_algorithm(std::string_view name);

// A configuration problem; the message names the key concerned.
struct KeyringError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

struct PkeyDeleter {
    void operator()(EVP_PKEY* key) const noexcept { EVP_PKEY_free(key); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyDeleter>;

struct MacCtxDeleter {
    void operator()(EVP_MAC_CTX* ctx) const noexcept { EVP_MAC_CTX_free(ctx); }
};
using MacCtxPtr = std::unique_ptr<EVP_MAC_CTX, MacCtxDeleter>;

inline constexpr std::size_t kMinHmacSecretBytes = 32;

// One key. Immutable after construction, so concurrent verification needs no lock.
class Key {
  public:
    // Throws KeyringError when the secret is shorter than kMinHmacSecretBytes.
    static Key hs256(std::string kid, KeyState state, std::string secret);
    // Throws KeyringError unless `pkey` is Ed25519 and, for a signing key, holds the private half.
    static Key ed25519(std::string kid, KeyState state, PkeyPtr pkey);
    // Parses a PEM Ed25519 key (private, or public for a verify-only key). Throws KeyringError.
    static Key ed25519_pem(std::string kid, KeyState state, std::string_view pem);

    const std::string& kid() const { return kid_; }
    Algorithm algorithm() const { return alg_; }
    KeyState state() const { return state_; }
    bool signing() const { return state_ == KeyState::signing; }

    // HS256: a keyed HMAC-SHA256 context to duplicate per message (its key schedule is done once).
    const EVP_MAC_CTX* hmac() const { return hmac_.get(); }
    // EdDSA: the Ed25519 key.
    EVP_PKEY* pkey() const { return pkey_.get(); }

  private:
    Key(std::string kid, Algorithm alg, KeyState state) : kid_(std::move(kid)), alg_(alg), state_(state) {}

    std::string kid_;
    Algorithm alg_;
    KeyState state_;
    MacCtxPtr hmac_;
    PkeyPtr pkey_;
};

class Keyring {
  public:
    // Returns the value of an environment variable, or nullopt when it is unset.
    using EnvLookup = std::function<std::optional<std::string>(std::string_view)>;

    // Throws KeyringError on a repeated kid or unless exactly one key is signing.
    explicit Keyring(std::vector<Key> keys);

    // Loads MTAPI_JWT_SECRET, MTAPI_JWT_KID and MTAPI_JWT_KEYS (see above). Throws KeyringError.
    static std::shared_ptr<const Keyring> from_env(const EnvLookup& env);
    // Loads the keys of an MTAPI_JWT_KEYS-style list alone; `env` resolves `env:` sources.
    static std::shared_ptr<const Keyring> from_spec(std::string_view spec, const EnvLookup& env);

    // nullptr when no key has this kid.
    const Key* find(std::string_view kid) const;
    const Key& signing_key() const { return keys_[signing_]; }
    const std::vector<Key>& keys() const { return keys_; }

  private:
    std::vector<Key> keys_;
    std::size_t signing_ = 0;
};

// The process environment (std::getenv), for Keyring::from_env.
std::optional<std::string> process_env(std::string_view name);

}  // namespace mtapi::auth
