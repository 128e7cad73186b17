#pragma once
// Support for the identity suites (tests/integration/identity_*_test.cpp): the real mtapi binary
// with a known keyring, a platform admin and tenants created through the admin API, and the
// means to craft access tokens by hand (never with the server's own signer), so every attack of
// RFC 8725 is a small, deliberate change to a token that would otherwise be accepted.
//
// One IdentityEnv per test process, created on first use and torn down at the end of the
// process: the server (HS256 key `hs-main` with MTAPI_JWT_SECRET, plus an Ed25519 verify-only
// key `ed-main` read from a PEM file this process writes), a platform admin made with
// `mtapi admin create`, and every tenant created here (deleted again through the admin API).
//
// Environment: MTAPI_BINARY, MTAPI_DATABASE_URL, MTAPI_PG_SUPERUSER_URL, MTAPI_JWT_SECRET.

#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <boost/json/object.hpp>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "harness.hpp"

namespace mtapi::idtest {

using std::chrono::milliseconds;
using test::Clock;
using test::Env;
using test::Headers;
using test::Response;
using test::ServerProcess;
using namespace std::chrono_literals;

// ----------------------------------------------------------------------------- small helpers

std::string random_hex(std::size_t bytes);
std::string env_or_empty(const char* name);
// 'text' as an SQL literal (single quotes doubled).
std::string lit(std::string_view text);
std::optional<boost::json::object> json_of(const Response& r);
// o[key] as a string; "" when absent or not a string.
std::string str(const boost::json::object& o, std::string_view key);
// Status, reason and body, for failure messages.
std::string describe(const Response& r);

// ----------------------------------------------------------------------------- tokens by hand

std::string b64url(std::string_view bytes);
// The JSON text of the token's first segment, "" when it does not decode.
std::string token_header(std::string_view token);

// base64url(header) "." base64url(claims): what a JWS signature covers.
std::string signing_input(std::string_view header_json, std::string_view claims_json);
std::string hmac_sha256(std::string_view key, std::string_view data);

struct PkeyFree {
    void operator()(EVP_PKEY* k) const noexcept { EVP_PKEY_free(k); }
};

// An Ed25519 key pair generated in this process.
class Ed25519Key {
  public:
    Ed25519Key();
    std::string sign(std::string_view data) const;
    std::string public_pem() const;

  private:
    std::unique_ptr<EVP_PKEY, PkeyFree> key_;
};

// A compact JWS: signing input "." base64url(signature).
std::string hs256_token(std::string_view secret, std::string_view header_json, std::string_view claims_json);
std::string eddsa_token(const Ed25519Key& key, std::string_view header_json, std::string_view claims_json);

// Claims a server with the default issuer and audience accepts: iss, aud, sub, tenant_id
// (omitted when empty), role, iat = now, exp = now + 10 min, jti.
boost::json::object claims_for(const std::string& user_id, const std::string& tenant_id, const std::string& role);
std::string header_json(std::string_view alg, std::optional<std::string_view> kid);

// ----------------------------------------------------------------------------- passwords

// A bcrypt `$2b$` hash (libxcrypt) of `password` with cost `cost`, as another system made it.
std::string bcrypt_hash(const std::string& password, unsigned long cost = 4);

// ----------------------------------------------------------------------------- HTTP

Headers bearer(const std::string& token);
Response get(std::uint16_t port, const std::string& target, const std::string& token = {});
Response send_json(std::uint16_t port, std::string_view method, const std::string& target, const std::string& body,
                   const std::string& token = {}, milliseconds timeout = 10s);
Response del(std::uint16_t port, const std::string& target, const std::string& token);

// An RFC 9457 problem with this status: problem+json content type and a body whose `status`,
// `type`, `title`, `detail`, `instance` and `request_id` are present.
::testing::AssertionResult is_problem(const Response& r, int status);
// 401 problem with `WWW-Authenticate: Bearer …, error="invalid_token"`.
::testing::AssertionResult is_invalid_token(const Response& r);
// The `field` of every entry of a 422's `errors`.
std::vector<std::string> error_fields(const Response& r);

// POST /api/v1/auth/login.
Response tenant_login(std::uint16_t port, const std::string& slug, const std::string& email,
                      const std::string& password, milliseconds timeout = 10s);
// The access token of a 200 login; throws with the response otherwise.
std::string token_of(const Response& login);

// ----------------------------------------------------------------------------- the environment

struct TenantInfo {
    std::string id;
    std::string slug;
    std::string schema;
    std::string admin_id;
    std::string admin_email;
    std::string admin_password;
    boost::json::object created;  // the 201 body
};

struct UserInfo {
    std::string id;
    std::string email;
    std::string password;
    std::string role;
    std::string token;  // from a login
};

class IdentityEnv {
  public:
    static constexpr const char* kHsKid = "hs-main";
    static constexpr const char* kEdKid = "ed-main";

    // The environment of this test process, set up on first call (throws on failure).
    static IdentityEnv& get();
    // Deletes every tenant created here, the platform admin and the key file; stops the server.
    static void shutdown();

    std::uint16_t port() const { return server_->port(); }
    ServerProcess& server() { return *server_; }
    // The settings of the shared server (keys, issuer); a second instance started with these
    // shares its keys and its database.
    Env server_env() const;
    // Starts another server; throws when it does not come up.
    std::unique_ptr<ServerProcess> start_server(Env extra = {}) const;

    const std::string& hs_secret() const { return hs_secret_; }
    const Ed25519Key& ed_key() const { return ed_key_; }
    const std::string& admin_token() const { return admin_token_; }
    const std::string& admin_id() const { return admin_id_; }

    // "<prefix>-<8 hex>": a slug no other run uses.
    static std::string unique_slug(std::string_view prefix);
    // POST /api/v1/admin/tenants (201 required; throws otherwise); deleted at shutdown.
    TenantInfo create_tenant(std::string_view prefix, std::optional<std::string> admin_password = std::nullopt);
    // Remembers a tenant created otherwise, so shutdown deletes it.
    void track(const std::string& tenant_id) { tenants_.push_back(tenant_id); }
    // A user with `role` in `tenant`: through POST /api/v1/users as the tenant's admin, or, when
    // that route does not exist, inserted with SQL as the superuser. Logged in.
    UserInfo add_user(const TenantInfo& tenant, const std::string& admin_token, const std::string& role);
    // A user inserted with SQL with this password hash (no login).
    std::string insert_user(const TenantInfo& tenant, const std::string& email, const std::string& role,
                            const std::string& password_hash);
    // One value read as the superuser.
    std::string sql_value(const std::string& sql) const;
    std::vector<std::string> sql_column(const std::string& sql) const;
    void sql_exec(const std::string& sql) const;

  private:
    IdentityEnv();
    void setup();
    void teardown();

    std::string dir_;  // temporary directory holding the Ed25519 public key
    std::string hs_secret_;
    Ed25519Key ed_key_;
    std::unique_ptr<ServerProcess> server_;
    std::string admin_email_;
    std::string admin_id_;
    std::string admin_token_;
    std::vector<std::string> tenants_;
};

// Registers IdentityEnv::shutdown to run after the last test of the process.
class IdentityEnvironment : public ::testing::Environment {
  public:
    void TearDown() override { IdentityEnv::shutdown(); }
};

// Fixture base: skips nothing; a missing environment fails the test.
class IdentityTest : public ::testing::Test {
  protected:
    void SetUp() override;
    IdentityEnv& env() { return IdentityEnv::get(); }
};

// The p-th percentile (0–100) of `samples` (nearest rank); 0 when empty.
double percentile(std::vector<double> samples, double p);

}  // namespace mtapi::idtest
