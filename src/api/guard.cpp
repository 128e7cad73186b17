#include "api/guard.hpp"

#include "app/rate_limiting.hpp"
#include "auth/jws.hpp"
#include "obs/log.hpp"
#include "util/uuid.hpp"

namespace mtapi::api {
namespace {

namespace asio = boost::asio;

// RFC 6750 §2.1: "Bearer" (any case), one space, the token. Query-string tokens are never read.
std::string_view bearer_token(const http::RequestContext& ctx) {
    std::string_view h = ctx.header("Authorization");
    if (h.size() < 8 || !http::iequals(h.substr(0, 7), "Bearer ")) return {};
    std::string_view token = h.substr(7);
    while (!token.empty() && token.front() == ' ')
        token.remove_prefix(1);
    while (!token.empty() && token.back() == ' ')
        token.remove_suffix(1);
    return token;
}

auth::Claims verified_claims(app::App& app, const http::RequestContext& ctx) {
    std::string_view token = bearer_token(ctx);
    if (token.empty()) {
        http::Problem p = http::Problem::of_status(401, "A bearer token is required.");
        p.with_header("WWW-Authenticate", "Bearer realm=\"mtapi\"");
        throw p;
    }
    auth::VerifyOptions opts;
    opts.issuer = app.config.jwt_issuer;
    opts.audience = app.config.jwt_audience;
    // Cached per shard by the exact token string; only the time checks are repeated on a hit.
    auto result = auth::verify_cached(app.keyring, token, opts);
    if (!result) {
        bool expired = result.error() == auth::VerifyError::expired;
        throw unauthorized(expired ? "The access token has expired." : "The access token is not valid.");
    }
    return std::move(result).claims();
}

unsigned role_bit(std::string_view role) {
    if (role == "admin") return kRoleAdmin;
    if (role == "dispatcher") return kRoleDispatcher;
    if (role == "viewer") return kRoleViewer;
    return 0;
}

}  // namespace

http::Problem unauthorized(std::string detail) {
    http::Problem p = http::Problem::of_status(401, std::move(detail));
    p.with_header("WWW-Authenticate", "Bearer realm=\"mtapi\", error=\"invalid_token\"");
    return p;
}

http::Problem forbidden(std::string detail) {
    return http::Problem::of_status(403, std::move(detail));
}

std::string roles_literal(unsigned allowed) {
    std::string out = "{";
    auto add = [&](unsigned bit, const char* name) {
        if ((allowed & bit) == 0) return;
        if (out.size() > 1) out.push_back(',');
        out.append(name);
    };
    add(kRoleAdmin, "admin");
    add(kRoleDispatcher, "dispatcher");
    add(kRoleViewer, "viewer");
    out.push_back('}');
    return out;
}

std::optional<http::Problem> problem_for(const pg::Error& e) {
    if (e.sqlstate() == "MT401") return unauthorized("The access token's user no longer exists.");
    if (e.sqlstate() == "MT403") return forbidden("Your role does not allow this.");
    // set_config('role', …) of a tenant dropped since the catalog was read.
    if (e.sqlstate() == "22023" || e.sqlstate() == "42704")
        return unauthorized("The access token's tenant no longer exists.");
    if (e.is_connection_problem()) {
        obs::warn("database unavailable", {{"error", std::string_view(e.what())}});
        return http::Problem::of_status(503, "The database is unavailable; retry shortly.");
    }
    return std::nullopt;
}

asio::awaitable<void> charge_rate_limit(app::App& app, http::RequestContext& ctx, const tenancy::Tenant& tenant) {
    ratelimit::Limiter* limiter = app.rate_limits ? app.rate_limits->limiter(ctx.shard) : nullptr;
    if (limiter == nullptr) co_return;
    ratelimit::Bucket bucket = app.rate_limits->bucket_for(tenant);
    ratelimit::Decision d;
    bool unavailable = false;
    try {
        d = co_await limiter->take(tenant.id_text, bucket);
    } catch (const ratelimit::Unavailable&) {
        unavailable = true;
    }
    if (unavailable) {
        http::Problem p = http::Problem::of_status(503, "Rate limiting is unavailable; retry shortly.");
        p.with_header("Retry-After", "1");
        throw p;
    }
    app.rate_limits->observe(ctx.shard, tenant, d);
    ctx.response_headers.push_back({"RateLimit-Limit", std::to_string(d.limit)});
    ctx.response_headers.push_back({"RateLimit-Remaining", std::to_string(d.remaining)});
    ctx.response_headers.push_back({"RateLimit-Reset", std::to_string(d.reset_seconds)});
    if (!d.allowed) {
        long long retry = std::max(1LL, d.retry_after_seconds);
        http::Problem p(429, "rate-limited", "Too Many Requests",
                        "This tenant's request rate limit is exhausted; retry after " + std::to_string(retry) +
                            (retry == 1 ? " second." : " seconds."));
        p.with_header("Retry-After", std::to_string(retry));
        throw p;
    }
}

asio::awaitable<Principal> authenticate_tenant(app::App& app, http::RequestContext& ctx, unsigned allowed) {
    auth::Claims claims = verified_claims(app, ctx);
    if (!claims.tenant_id) throw forbidden("Platform tokens cannot use tenant routes.");
    Principal p;
    p.user_id = util::to_string(claims.sub);
    p.role = claims.role;
    std::string tenant_id = util::to_string(*claims.tenant_id);
    try {
        p.tenant = co_await app.catalog->lookup_id(app.pool(ctx.shard), tenant_id);
    } catch (const pg::Error& e) {
        if (auto problem = problem_for(e)) throw *problem;
        throw;
    }
    if (!p.tenant) throw unauthorized("The access token's tenant does not exist.");
    if (!p.tenant->active()) {
        http::Problem suspended(403, "tenant-suspended", "Tenant Suspended", "This tenant is suspended.");
        throw suspended;
    }
    co_await charge_rate_limit(app, ctx, *p.tenant);
    if ((role_bit(claims.role) & allowed) == 0) throw forbidden("Your role does not allow this.");
    co_return p;
}

asio::awaitable<Principal> authenticate_platform(app::App& app, const http::RequestContext& ctx) {
    auth::Claims claims = verified_claims(app, ctx);
    if (claims.tenant_id || claims.role != "platform_admin") throw forbidden("Tenant tokens cannot use admin routes.");
    Principal p;
    p.user_id = util::to_string(claims.sub);
    p.role = claims.role;
    bool exists = false;
    try {
        auto deadline = app.db_deadline();
        auto lease = co_await app.pool(ctx.shard).acquire(deadline);
        pg::Query q{"SELECT 1 FROM platform.platform_admins WHERE id = $1::uuid", {p.user_id}, true};
        auto r = co_await lease->query(std::move(q), deadline);
        exists = r.rows() == 1;
    } catch (const pg::Error& e) {
        if (auto problem = problem_for(e)) throw *problem;
        throw;
    }
    if (!exists) throw unauthorized("The access token's administrator no longer exists.");
    co_return p;
}

}  // namespace mtapi::api
