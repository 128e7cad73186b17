#pragma once
// JWS compact tokens (RFC 7515/7519) for access tokens, following RFC 8725's advice: the
// algorithm is pinned by the key that `kid` names, never chosen by the token.
//
// Verification rejects, in this order: a token longer than max_token_bytes (before decoding
// anything); anything but three non-empty, strictly base64url segments; a header that is not a
// JSON object, repeats a key, lacks a string `alg`, has a `typ` other than "JWT" or has `crit`
// (malformed); a missing or unknown `kid` (unknown_kid); an `alg` that is not exactly the key's
// algorithm, so `none` in any case and HS256/EdDSA confusion fail (alg_mismatch); a bad
// signature. Only then are the claims parsed: a JSON object without repeated keys whose `exp`
// (required), `nbf` and `iat` are JSON integers, `sub` a UUID, `tenant_id` (absent for
// platform_admin, required otherwise) a UUID, `role` one of admin, dispatcher, viewer,
// platform_admin and `jti` a non-empty string of at most 128 characters (bad_claims). `iss` and
// `aud` must be strings equal to the expected ones (an `aud` array is not accepted). Header
// parameters `jku`, `x5u`, `jwk` and `x5c` are ignored: keys only ever come from the keyring.

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

#include "auth/keyring.hpp"
#include "util/uuid.hpp"

namespace mtapi::auth {

inline constexpr std::chrono::seconds kAccessTokenTtl{15 * 60};  // SPEC: access tokens live 15 minutes
inline constexpr std::size_t kMaxJtiBytes = 128;

// The claims of an access token. `role` is one of "admin", "dispatcher", "viewer" (tenant roles,
// with tenant_id) or "platform_admin" (without tenant_id).
struct Claims {
    std::string iss;
    std::string aud;
    util::Uuid sub{};
    std::optional<util::Uuid> tenant_id;
    std::string role;
    std::optional<std::chrono::sys_seconds> iat;
    std::optional<std::chrono::sys_seconds> nbf;
    std::chrono::sys_seconds exp{};
    std::string jti;
};

// True for the four roles a token may carry.
bool is_token_role(std::string_view role);

// A fresh token id: 128 random bits, base64url (22 characters).
std::string new_jti();

// Signs `claims` with the keyring's signing key: header {"alg":…,"typ":"JWT","kid":…}.
// Throws std::invalid_argument for claims that verify() would reject as bad_claims (unknown
// role, role and tenant_id disagreeing, empty or over-long jti).
std::string sign(const Keyring& keyring, const Claims& claims);

enum class VerifyError {
    malformed,
    too_long,
    unknown_kid,
    alg_mismatch,
    bad_signature,
    expired,
    not_yet_valid,
    bad_issuer,
    bad_audience,
    bad_claims,
};

// Stable snake_case names ("unknown_kid", …) for logs and metrics.
std::string_view to_string(VerifyError error);

struct VerifyOptions {
    std::string_view issuer;                                                       // must outlive the verify() call
    std::string_view audience;                                                     // must outlive the verify() call
    std::chrono::system_clock::time_point now = std::chrono::system_clock::now();  // when the options are made
    std::chrono::seconds max_skew{30};   // tolerated clock difference for exp, nbf and iat
    std::size_t max_token_bytes = 4096;  // longer tokens are rejected before any decoding
};

// Either the verified claims or why the token was rejected.
class VerifyResult {
  public:
    VerifyResult(Claims claims) : value_(std::move(claims)) {}
    VerifyResult(VerifyError error) : value_(error) {}

    bool ok() const { return value_.index() == 0; }
    explicit operator bool() const { return ok(); }
    // Only when ok().
    const Claims& claims() const& { return std::get<Claims>(value_); }
    Claims&& claims() && { return std::get<Claims>(std::move(value_)); }
    // Only when !ok().
    VerifyError error() const { return std::get<VerifyError>(value_); }

  private:
    std::variant<Claims, VerifyError> value_;
};

// Never throws for any input token (only std::bad_alloc can escape).
VerifyResult verify(const Keyring& keyring, std::string_view token, const VerifyOptions& options);

// The time checks verify() makes (exp, nbf, iat against options.now and max_skew).
std::optional<VerifyError> check_times(const Claims& claims, const VerifyOptions& options);

// verify() with a small cache per thread (per shard) of tokens that verified, keyed by the exact
// token string. Everything verify() decides apart from the time checks depends only on the token,
// the keyring (immutable; the entry holds it, so its address cannot be reused), the issuer and
// the audience: a hit with the same keyring, issuer, audience and max_skew runs only
// check_times() again, so an expired token is rejected exactly as verify() would. Entries live at
// most kVerifiedTokenCacheTtl; failures are never cached (a rejected token is verified in full
// each time). Nothing about revocation changes: the token was never the revocation point (the
// database's principal check of every tenant transaction is).
inline constexpr std::chrono::seconds kVerifiedTokenCacheTtl{60};
inline constexpr std::size_t kVerifiedTokenCacheSize = 1024;
VerifyResult verify_cached(const std::shared_ptr<const Keyring>& keyring, std::string_view token,
                           const VerifyOptions& options);

}  // namespace mtapi::auth
