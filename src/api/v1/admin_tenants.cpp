// Admin API: tenants (platform_admin only).
//
//   POST   /api/v1/admin/tenants          provision (201 + Location; all or nothing)
//   GET    /api/v1/admin/tenants          cursor-paginated list, newest first
//   GET    /api/v1/admin/tenants/{id}     by id or slug
//   PATCH  /api/v1/admin/tenants/{id}     name, plan, status, rate_limit
//   DELETE /api/v1/admin/tenants/{id}     drop schema, role and row (204)

#include <boost/asio/awaitable.hpp>

#include "api/guard.hpp"
#include "api/json_body.hpp"
#include "api/pagination.hpp"
#include "api/render.hpp"
#include "api/v1/routes.hpp"
#include "obs/log.hpp"
#include "tenancy/provisioner.hpp"
#include "util/uuid.hpp"

namespace mtapi::api::v1 {
namespace {

namespace asio = boost::asio;
using http::Problem;
using http::RequestContext;
using http::Response;

const std::vector<std::string_view> kPlans = {"free", "standard", "enterprise"};

// Runs `fn(connection)` on a pooled connection as the login role (platform data only).
template <class F>
auto on_platform(app::App& app, const RequestContext& ctx, F fn) -> std::invoke_result_t<F, pg::Connection&> {
    std::optional<Problem> problem;
    try {
        auto lease = co_await app.pool(ctx.shard).acquire(app.db_deadline());
        co_return co_await fn(*lease);
    } catch (const pg::Error& e) {
        problem = problem_for(e);
        if (!problem) throw;
    }
    throw *problem;
}

asio::awaitable<tenancy::TenantPtr> find(app::App& app, const RequestContext& ctx, const std::string& key) {
    auto read = [&](pg::Connection& conn) -> asio::awaitable<tenancy::TenantPtr> {
        bool by_id = util::parse_uuid(key).has_value();
        if (!by_id && !tenancy::valid_slug(key)) co_return nullptr;
        std::string sql = std::string("SELECT ") + tenancy::Catalog::select_columns() +
                          " FROM platform.tenants WHERE " + (by_id ? "id = $1::uuid" : "slug = $1");
        pg::Query q{sql, {by_id ? util::to_string(*util::parse_uuid(key)) : key}, true};
        auto r = co_await conn.query(std::move(q), app.db_deadline());
        if (r.rows() == 0) co_return nullptr;
        co_return std::make_shared<const tenancy::Tenant>(tenancy::Catalog::from_row(r, 0));
    };
    co_return co_await on_platform(app, ctx, read);
}

asio::awaitable<Response> create(app::App& app, RequestContext& ctx) {
    co_await authenticate_platform(app, ctx);
    auto obj = parse_json_object(ctx);
    BodyFields f(obj);
    tenancy::ProvisionRequest req;
    req.slug = f.required_string("slug", {1, 100}).value_or("");
    req.name = f.required_string("name", {1, 200}).value_or("");
    auto plan = f.string("plan", {.one_of = kPlans});
    if (plan.value)
        req.plan = *plan.value;
    else if (plan.is_null())
        f.error("plan", "must be one of free, standard, enterprise");
    req.admin_email = f.required_string("admin_email", {3, 254}).value_or("");
    auto password = f.string("admin_password", {12, 128, {}, true});
    if (password.value)
        req.admin_password = *password.value;
    else if (password.is_null())
        f.error("admin_password", "must be a string of 12 to 128 characters");
    if (!f.has_errors() && !tenancy::valid_slug(req.slug)) f.error("slug", "must match ^[a-z][a-z0-9-]{2,39}$");
    if (!f.has_errors() && !tenancy::valid_email(req.admin_email)) f.error("admin_email", "must be an email address");
    f.finish();

    tenancy::ProvisionResult res;
    try {
        auto run = [&](pg::Connection& conn) -> asio::awaitable<tenancy::ProvisionResult> {
            auto deadline = pg::Clock::now() + std::max(app.config.db_timeout, std::chrono::milliseconds(30'000));
            co_return co_await tenancy::provision(conn, *app.hasher, req, deadline);
        };
        res = co_await on_platform(app, ctx, run);
    } catch (const tenancy::InvalidTenantInput& e) {
        std::vector<http::FieldError> errors;
        for (const auto& i : e.issues)
            errors.push_back({i.field, i.message});
        throw Problem::validation(std::move(errors));
    } catch (const tenancy::SlugTaken&) {
        Problem p = Problem::of_status(409, "A tenant with this slug already exists.");
        p.with_error("slug", "is already taken");
        throw p;
    } catch (const auth::HasherOverloaded&) {
        throw Problem::of_status(503, "The server is busy hashing passwords; retry shortly.");
    }
    app.catalog->put(std::make_shared<const tenancy::Tenant>(res.tenant));

    std::string body = tenant_json(res.tenant);
    body.pop_back();
    body.append(",\"admin\":{\"id\":");
    obs::append_json_string(body, res.admin_user_id);
    body.append(",\"email\":");
    obs::append_json_string(body, res.admin_email);
    body.append(",\"password\":");
    obs::append_json_string(body, res.admin_password);
    body.append("}}");
    Response r = Response::json(201, std::move(body));
    r.header("Location", "/api/v1/admin/tenants/" + res.tenant.id_text);
    r.header("Cache-Control", "no-store");
    co_return r;
}

asio::awaitable<Response> list(app::App& app, RequestContext& ctx) {
    co_await authenticate_platform(app, ctx);
    std::vector<std::optional<std::string>> filters;
    PageRequest page = parse_page(ctx, *app.cursors, "platform", "admin.tenants", {"status", "plan"}, filters);
    auto read = [&](pg::Connection& conn) -> asio::awaitable<pg::Result> {
        std::string sql =
            std::string("SELECT ") + tenancy::Catalog::select_columns() +
            " FROM platform.tenants WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR plan = $2)";
        std::vector<std::optional<std::string>> params = {filters[0], filters[1]};
        if (page.after) {
            sql += " AND (created_at, id) < ($4::timestamptz, $5::uuid)";
        }
        sql += " ORDER BY created_at DESC, id DESC LIMIT $3";
        params.push_back(std::to_string(page.limit + 1));
        if (page.after) {
            params.push_back(page.after->created_at);
            params.push_back(page.after->id);
        }
        pg::Query q{sql, std::move(params), true};
        co_return co_await conn.query(std::move(q), app.db_deadline());
    };
    pg::Result r = co_await on_platform(app, ctx, read);
    std::vector<std::string> items;
    std::optional<util::CursorPosition> next;
    int shown = std::min(r.rows(), page.limit);
    for (int i = 0; i < shown; ++i)
        items.push_back(tenant_json(tenancy::Catalog::from_row(r, i)));
    if (r.rows() > page.limit) {
        auto last = tenancy::Catalog::from_row(r, shown - 1);
        next = util::CursorPosition{last.created_at, last.id_text};
    }
    Page out = render_page(ctx, *app.cursors, page, items, next, {{"status", filters[0]}, {"plan", filters[1]}});
    Response resp = Response::json(200, std::move(out.body));
    if (out.link) resp.header("Link", *out.link);
    co_return resp;
}

asio::awaitable<Response> get_one(app::App& app, RequestContext& ctx) {
    co_await authenticate_platform(app, ctx);
    auto t = co_await find(app, ctx, ctx.param("id"));
    if (!t) throw Problem::not_found("No tenant has this id or slug.");
    co_return Response::json(200, tenant_json(*t));
}

asio::awaitable<Response> patch(app::App& app, RequestContext& ctx) {
    co_await authenticate_platform(app, ctx);
    auto t = co_await find(app, ctx, ctx.param("id"));
    if (!t) throw Problem::not_found("No tenant has this id or slug.");
    auto obj = parse_json_object(ctx);
    BodyFields f(obj);
    auto name = f.string("name", {1, 200});
    auto plan = f.string("plan", {.one_of = kPlans});
    auto status = f.string("status", {.one_of = {"active", "suspended"}});
    auto rate = f.object("rate_limit");
    if (name.is_null()) f.error("name", "must not be null");
    if (plan.is_null()) f.error("plan", "must not be null");
    if (status.is_null()) f.error("status", "must not be null");
    std::optional<std::string> capacity, refill;
    if (rate.value) {
        BodyFields rf(*rate.value);
        auto c = rf.required_integer("capacity", 1, 1'000'000'000);
        auto fill = rf.number("refill_per_sec", 0, 1'000'000'000);
        if (!fill.present)
            rf.error("refill_per_sec", "is required");
        else if (fill.is_null())
            rf.error("refill_per_sec", "must not be null");
        try {
            rf.finish();
        } catch (const Problem& p) {
            for (const auto& e : p.errors())
                f.error("rate_limit." + e.field, e.message);
        }
        if (c) capacity = std::to_string(*c);
        refill = fill.value;
    }
    f.finish();

    auto update = [&](pg::Connection& conn) -> asio::awaitable<pg::Result> {
        // Column names are fixed here; only values come from the request, as parameters.
        std::string sql = "UPDATE platform.tenants SET updated_at = now()";
        std::vector<std::optional<std::string>> params = {t->id_text};
        auto set = [&](const char* column, std::optional<std::string> value, const char* cast) {
            params.push_back(std::move(value));
            sql += std::string(", ") + column + " = $" + std::to_string(params.size()) + cast;
        };
        if (name.value) set("name", name.value, "");
        if (plan.value) set("plan", plan.value, "");
        if (status.value) set("status", status.value, "");
        if (rate.present) {
            set("rate_limit_capacity", capacity, "::int");
            set("rate_limit_refill_per_sec", refill, "::double precision");
        }
        sql += std::string(" WHERE id = $1::uuid RETURNING ") + tenancy::Catalog::select_columns();
        pg::Query q{sql, std::move(params), true};
        co_return co_await conn.query(std::move(q), app.db_deadline());
    };
    pg::Result r = co_await on_platform(app, ctx, update);
    if (r.rows() == 0) throw Problem::not_found("No tenant has this id or slug.");
    auto updated = std::make_shared<const tenancy::Tenant>(tenancy::Catalog::from_row(r, 0));
    app.catalog->put(updated);
    co_return Response::json(200, tenant_json(*updated));
}

asio::awaitable<Response> remove(app::App& app, RequestContext& ctx) {
    co_await authenticate_platform(app, ctx);
    auto t = co_await find(app, ctx, ctx.param("id"));
    if (!t) throw Problem::not_found("No tenant has this id or slug.");
    auto drop = [&](pg::Connection& conn) -> asio::awaitable<bool> {
        co_return co_await tenancy::remove(conn, *t, pg::Clock::now() + std::chrono::seconds(60));
    };
    co_await on_platform(app, ctx, drop);
    app.catalog->erase(t->id_text);
    co_return Response::no_content();
}

}  // namespace

void add_admin_tenant_routes(http::Router& router, app::App& app) {
    using http::Method;
    router.add(Method::post, "/api/v1/admin/tenants", [&app](RequestContext& c) { return create(app, c); });
    router.add(Method::get, "/api/v1/admin/tenants", [&app](RequestContext& c) { return list(app, c); });
    router.add(Method::get, "/api/v1/admin/tenants/{id}", [&app](RequestContext& c) { return get_one(app, c); });
    router.add(Method::patch, "/api/v1/admin/tenants/{id}", [&app](RequestContext& c) { return patch(app, c); });
    router.add(Method::del, "/api/v1/admin/tenants/{id}", [&app](RequestContext& c) { return remove(app, c); });
}

}  // namespace mtapi::api::v1
