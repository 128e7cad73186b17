#pragma once
// Support for the rate limit suites (tests/integration/ratelimit_*_test.cpp): tenants with a
// logged-in admin, the admin PATCH of a tenant's limit, bursts of simultaneous requests, and
// redis-cli against the test Redis.

#include <string>
#include <vector>

#include "identity_support.hpp"

namespace mtapi::rltest {

using idtest::IdentityEnv;
using idtest::TenantInfo;
using test::Env;
using test::Response;
using namespace std::chrono_literals;

struct Tenant {
    TenantInfo info;
    std::string token;  // the tenant admin's access token
};

// A new tenant (deleted at the end of the process) and its admin's token.
Tenant new_tenant(IdentityEnv& env, std::string_view prefix);

// PATCH /api/v1/admin/tenants/{id} with `body`; fails the test unless 200.
void patch_tenant(IdentityEnv& env, const std::string& tenant_id, const std::string& body);
// rate_limit {capacity, refill_per_sec}, then waits 1.1 s: SPEC §4 lets a change take up to 1 s.
void set_limit(IdentityEnv& env, const std::string& tenant_id, long long capacity, double refill_per_sec);

// `n` requests sent at the same moment, each on its own connection, to `port` (GET `target`
// with the bearer token); the responses in no particular order.
std::vector<Response> burst(std::uint16_t port, const std::string& target, const std::string& token, int n);

// Counts responses by status.
int count_status(const std::vector<Response>& rs, int status);

// The value of RateLimit-* or Retry-After as a number; -1 when absent or not a number.
long long header_number(const Response& r, std::string_view name);

// A metric sample's value from /metrics text: the first line starting with `series` (name and
// labels exactly as rendered); -1 when absent.
double metric(std::uint16_t port, const std::string& series);

// MTAPI_REDIS_URL with its database number replaced by `db`.
std::string redis_url_with_db(int db);
// Runs redis-cli against MTAPI_REDIS_URL (or `url`) with `args`; returns its exit status.
int redis_cli(const std::string& args, const std::string& url = {});

}  // namespace mtapi::rltest
