// POST /api/v1/auth/login and POST /api/v1/admin/auth/login: credentials → access token.
//
// Every failure of tenant, email or password is the same 401, and costs the same: an unknown
// tenant or email still runs one verification against a dummy hash. Only correct credentials
// of a suspended tenant learn that it is suspended (403).
//
// Both are throttled against password guessing (ratelimit/login_throttle.hpp): per (tenant,
// email) and per client address (the TCP peer, or the client a trusted proxy forwards for:
// ratelimit/client_address.hpp), counting failed attempts only. A refused attempt answers 429
// with Retry-After and checks no password.

#include <boost/asio/awaitable.hpp>

#include "api/guard.hpp"
#include "api/json_body.hpp"
#include "api/v1/routes.hpp"
#include "app/rate_limiting.hpp"
#include "auth/jws.hpp"
#include "obs/log.hpp"
#include "tenancy/provisioner.hpp"
#include "tenancy/tenant_tx.hpp"
#include "util/uuid.hpp"

namespace mtapi::api::v1 {
namespace {

namespace asio = boost::asio;
using http::Problem;
using http::RequestContext;
using http::Response;

struct Credentials {
    std::string id;
    std::string role;
    std::string hash;
};

Problem bad_credentials() {
    Problem p(401, "invalid-credentials", "Unauthorized", "The credentials are not valid.");
    p.with_header("WWW-Authenticate", "Bearer realm=\"mtapi\"");
    return p;
}

Response token_response(app::App& app, const auth::Claims& claims) {
    std::string token = auth::sign(*app.keyring, claims);
    std::string body = "{\"access_token\":\"" + token +
                       "\",\"token_type\":\"Bearer\",\"expires_in\":" + std::to_string(app.config.jwt_ttl.count()) +
                       "}";
    Response r = Response::json(200, std::move(body));
    r.header("Cache-Control", "no-store");
    return r;
}

auth::Claims new_claims(app::App& app, const std::string& user_id, std::string role) {
    auth::Claims c;
    auto now = std::chrono::time_point_cast<std::chrono::seconds>(std::chrono::system_clock::now());
    c.iss = app.config.jwt_issuer;
    c.aud = app.config.jwt_audience;
    c.sub = *util::parse_uuid(user_id);
    c.role = std::move(role);
    c.iat = now;
    c.exp = now + app.config.jwt_ttl;
    c.jti = auth::new_jti();
    return c;
}

asio::awaitable<bool> verify_password(app::App& app, const std::string& hash, const std::string& password) {
    try {
        co_return co_await app.hasher->verify(hash, password);
    } catch (const auth::HasherOverloaded&) {
    }
    throw Problem::of_status(503, "Too many logins at once; retry shortly.");
}

asio::awaitable<void> dummy_verify(app::App& app, const std::string& password) {
    try {
        co_await app.hasher->verify_dummy(password);
        co_return;
    } catch (const auth::HasherOverloaded&) {
    }
    throw Problem::of_status(503, "Too many logins at once; retry shortly.");
}

asio::awaitable<std::optional<Credentials>> tenant_user(app::App& app, const RequestContext& ctx,
                                                        const tenancy::Tenant& tenant, const std::string& email) {
    auto body = [&](tenancy::TenantTx& tx) -> asio::awaitable<std::optional<Credentials>> {
        pg::Query q{"SELECT id::text, role, password_hash FROM users WHERE lower(email) = lower($1)", {email}, true};
        auto r = co_await tx.query_and_commit(std::move(q));
        if (r.rows() == 0) co_return std::nullopt;
        co_return Credentials{std::string(r.text(0, 0)), std::string(r.text(0, 1)), std::string(r.text(0, 2))};
    };
    std::optional<Problem> problem;
    try {
        co_return co_await tenancy::with_tenant(app.pool(ctx.shard), tenant, app.db_deadline(), body);
    } catch (const pg::Error& e) {
        problem = problem_for(e);
        if (!problem) throw;
    }
    throw *problem;
}

// Stores a new argon2id hash after a successful login with an old (bcrypt, or weaker) hash.
asio::awaitable<void> upgrade_hash(app::App& app, const RequestContext& ctx, const tenancy::Tenant& tenant,
                                   const std::string& user_id, const std::string& password) {
    try {
        std::string fresh = co_await app.hasher->hash(password);
        auto body = [&](tenancy::TenantTx& tx) -> asio::awaitable<void> {
            pg::Query q{
                "UPDATE users SET password_hash = $2, updated_at = now() WHERE id = $1::uuid", {user_id, fresh}, true};
            co_await tx.query_and_commit(std::move(q));
        };
        co_await tenancy::with_tenant(app.pool(ctx.shard), tenant, app.db_deadline(), body);
    } catch (const std::exception& e) {
        // The login itself succeeded; the rehash is retried at the next login.
        obs::warn("password rehash failed", {{"request_id", ctx.request_id}, {"error", std::string_view(e.what())}});
    }
}

// Runs `attempt` under the shard's login throttle. `scope` is the tenant slug ("" for platform
// administrators). The attempt reserved by begin() is given back unless `attempt` failed with 401
// (bad credentials), so only failures spend the budgets.
template <class F>
asio::awaitable<Response> throttled(app::App& app, const RequestContext& ctx, const std::string& scope,
                                    const std::string& email, F attempt) {
    ratelimit::LoginThrottle* throttle = app.rate_limits ? app.rate_limits->login(ctx.shard) : nullptr;
    if (throttle == nullptr) co_return co_await attempt();
    std::vector<std::string_view> forwarded;
    if (!app.rate_limits->trusted_proxies().empty())
        for (const auto& [name, value] : ctx.headers)
            if (http::iequals(name, "X-Forwarded-For")) forwarded.push_back(value);
    const std::string client = app.rate_limits->trusted_proxies().client_address(ctx.remote_address, forwarded);
    ratelimit::LoginVerdict verdict;
    bool unavailable = false;
    try {
        verdict = co_await throttle->begin(scope, email, client);
    } catch (const ratelimit::Unavailable&) {
        unavailable = true;
    }
    if (unavailable) {
        Problem p = Problem::of_status(503, "Login throttling is unavailable; retry shortly.");
        p.with_header("Retry-After", "1");
        throw p;
    }
    if (!verdict.allowed) {
        long long retry = std::max(1LL, verdict.retry_after_seconds);
        Problem p(429, "too-many-login-attempts", "Too Many Requests",
                  "Too many failed login attempts; retry after " + std::to_string(retry) +
                      (retry == 1 ? " second." : " seconds."));
        p.with_header("Retry-After", std::to_string(retry));
        throw p;
    }
    std::optional<Problem> problem;
    Response r;
    try {
        r = co_await attempt();
    } catch (const Problem& p) {
        problem = p;
    }
    if (!problem || problem->status() != 401) co_await throttle->succeeded(scope, email, client);
    if (problem) throw *problem;
    co_return r;
}

asio::awaitable<Response> check_tenant_login(app::App& app, const RequestContext& ctx, const std::string& slug,
                                             const std::string& email, const std::string& password) {
    tenancy::TenantPtr tenant;
    if (tenancy::valid_slug(slug)) {
        try {
            tenant = co_await app.catalog->lookup_slug(app.pool(ctx.shard), slug);
        } catch (const pg::Error& e) {
            if (auto problem = problem_for(e)) throw *problem;
            throw;
        }
    }
    std::optional<Credentials> user;
    if (tenant) user = co_await tenant_user(app, ctx, *tenant, email);
    if (!user) {
        co_await dummy_verify(app, password);
        throw bad_credentials();
    }
    if (!co_await verify_password(app, user->hash, password)) throw bad_credentials();
    if (!tenant->active()) throw Problem(403, "tenant-suspended", "Tenant Suspended", "This tenant is suspended.");
    if (app.hasher->needs_rehash(user->hash)) co_await upgrade_hash(app, ctx, *tenant, user->id, password);

    auth::Claims claims = new_claims(app, user->id, user->role);
    claims.tenant_id = tenant->id;
    co_return token_response(app, claims);
}

asio::awaitable<Response> tenant_login(app::App& app, RequestContext& ctx) {
    auto obj = parse_json_object(ctx);
    BodyFields f(obj);
    auto slug = f.required_string("tenant", {1, 64});
    auto email = f.required_string("email", {1, 320});
    auto password = f.required_string("password", {1, 1024, {}, true});
    f.finish();
    auto attempt = [&]() { return check_tenant_login(app, ctx, *slug, *email, *password); };
    co_return co_await throttled(app, ctx, *slug, *email, attempt);
}

asio::awaitable<Response> check_admin_login(app::App& app, const RequestContext& ctx, const std::string& email,
                                            const std::string& password) {
    std::optional<Credentials> admin;
    std::optional<Problem> problem;
    try {
        auto deadline = app.db_deadline();
        auto lease = co_await app.pool(ctx.shard).acquire(deadline);
        pg::Query q{"SELECT id::text, password_hash FROM platform.platform_admins WHERE lower(email) = lower($1)",
                    {email},
                    true};
        auto r = co_await lease->query(std::move(q), deadline);
        if (r.rows() == 1) admin = Credentials{std::string(r.text(0, 0)), "platform_admin", std::string(r.text(0, 1))};
    } catch (const pg::Error& e) {
        problem = problem_for(e);
        if (!problem) throw;
    }
    if (problem) throw *problem;
    if (!admin) {
        co_await dummy_verify(app, password);
        throw bad_credentials();
    }
    if (!co_await verify_password(app, admin->hash, password)) throw bad_credentials();
    co_return token_response(app, new_claims(app, admin->id, "platform_admin"));
}

asio::awaitable<Response> admin_login(app::App& app, RequestContext& ctx) {
    auto obj = parse_json_object(ctx);
    BodyFields f(obj);
    auto email = f.required_string("email", {1, 320});
    auto password = f.required_string("password", {1, 1024, {}, true});
    f.finish();
    auto attempt = [&]() { return check_admin_login(app, ctx, *email, *password); };
    const std::string platform_scope;
    co_return co_await throttled(app, ctx, platform_scope, *email, attempt);
}

}  // namespace

void add_auth_routes(http::Router& router, app::App& app) {
    router.add(http::Method::post, "/api/v1/auth/login",
               [&app](RequestContext& ctx) { return tenant_login(app, ctx); });
    router.add(http::Method::post, "/api/v1/admin/auth/login",
               [&app](RequestContext& ctx) { return admin_login(app, ctx); });
}

}  // namespace mtapi::api::v1
