#pragma once
// Authentication and authorisation of requests.
//
//   bearer token ──verify (keyring)──► claims ──► platform or tenant principal
//
// Tenant requests: the tenant comes from the verified token only; it must be in the catalog
// (unknown or deleted → 401) and active (suspended → 403). That `sub` is a current user of the
// tenant, and that the user's *current* role is allowed, is checked by mtapi_principal() at the
// head of the request's own tenant transaction (see tenant_tx.hpp): no cache to invalidate, no
// extra round trip, and a deleted or demoted user loses access with the next request.
// Platform requests: role platform_admin, and `sub` a row of platform.platform_admins.

#include <boost/asio/awaitable.hpp>
#include <string>

#include "app/app.hpp"
#include "http/problem.hpp"
#include "http/request.hpp"
#include "pg/error.hpp"
#include "tenancy/tenant_tx.hpp"

namespace mtapi::api {

// Roles as a bit set.
enum Roles : unsigned {
    kRoleAdmin = 1,
    kRoleDispatcher = 2,
    kRoleViewer = 4,
    kReaders = kRoleAdmin | kRoleDispatcher | kRoleViewer,
    kWriters = kRoleAdmin | kRoleDispatcher,
    kAdmins = kRoleAdmin,
};

struct Principal {
    std::string user_id;
    std::string role;
    tenancy::TenantPtr tenant;  // null for a platform admin
};

// Throws Problem 401 (missing/invalid token, unknown tenant), 403 (platform token on a tenant
// route, role not in `allowed`, tenant suspended), 429 (the tenant's bucket is empty) or 503
// (fail-closed rate limiting while Redis is unusable).
//
// Order: token → tenant (catalog) → status → rate limit → role. The rate limit is keyed by the
// verified tenant only and charged before any tenant transaction; from there on every response
// to the request, errors included, carries RateLimit-Limit/-Remaining/-Reset.
boost::asio::awaitable<Principal> authenticate_tenant(app::App& app, http::RequestContext& ctx, unsigned allowed);

// Takes one token from the tenant's bucket (see above); a no-op when limiting is off.
boost::asio::awaitable<void> charge_rate_limit(app::App& app, http::RequestContext& ctx, const tenancy::Tenant& tenant);
// Throws Problem 401 or 403 (tenant token on an admin route).
boost::asio::awaitable<Principal> authenticate_platform(app::App& app, const http::RequestContext& ctx);

http::Problem unauthorized(std::string detail);
http::Problem forbidden(std::string detail);

// Maps driver failures that are not the handler's business: MT401/MT403 from the principal
// check, a tenant role that no longer exists (deleted tenant) → 401, an unreachable database →
// 503. Returns nullopt for errors the caller should map itself (unique violation, …).
std::optional<http::Problem> problem_for(const pg::Error& e);

std::string roles_literal(unsigned allowed);

// Runs `body(TenantTx&)` in the principal's tenant transaction, guarded by the principal check.
template <class F>
auto in_tenant(app::App& app, const http::RequestContext& ctx, const Principal& p, unsigned allowed, F body)
    -> std::invoke_result_t<F, tenancy::TenantTx&> {
    auto deadline = app.db_deadline();
    std::optional<http::Problem> problem;
    try {
        auto guarded = [&](tenancy::TenantTx& tx) {
            tx.require_principal(p.user_id, roles_literal(allowed));
            return body(tx);
        };
        co_return co_await tenancy::with_tenant(app.pool(ctx.shard), *p.tenant, deadline, guarded);
    } catch (const pg::Error& e) {
        problem = problem_for(e);
        if (!problem) throw;
    }
    throw *problem;
}

}  // namespace mtapi::api
