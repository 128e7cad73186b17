// Admin API: migrations (platform_admin only).
//
//   GET  /api/v1/admin/migrations       platform version, tenant head, tenants at head/behind/failed
//   POST /api/v1/admin/migrations/run   bring every tenant schema to head; per-tenant failures

#include <boost/asio/awaitable.hpp>

#include "api/guard.hpp"
#include "api/v1/routes.hpp"
#include "migrate/migrations.hpp"
#include "migrate/runner.hpp"
#include "obs/log.hpp"

namespace mtapi::api::v1 {
namespace {

namespace asio = boost::asio;
using http::Problem;
using http::RequestContext;
using http::Response;

asio::awaitable<Response> status(app::App& app, RequestContext& ctx) {
    co_await authenticate_platform(app, ctx);
    const int head = migrate::head(migrate::tenant_migrations());
    std::optional<Problem> problem;
    std::string body;
    try {
        auto deadline = app.db_deadline();
        auto lease = co_await app.pool(ctx.shard).acquire(deadline);
        pg::Query q{
            "SELECT (SELECT coalesce(max(version), 0) FROM platform.schema_migrations), "
            "count(*) FILTER (WHERE schema_version >= $1::int AND migration_error IS NULL), "
            "count(*) FILTER (WHERE schema_version < $1::int AND migration_error IS NULL), "
            "count(*) FILTER (WHERE migration_error IS NOT NULL), count(*) FROM platform.tenants",
            {std::to_string(head)},
            true};
        auto r = co_await lease->query(std::move(q), deadline);
        body = "{\"platform_version\":" + std::string(r.text(0, 0)) +
               ",\"platform_head\":" + std::to_string(migrate::head(migrate::platform_migrations())) +
               ",\"tenant_head\":" + std::to_string(head) + ",\"tenants\":{\"total\":" + std::string(r.text(0, 4)) +
               ",\"at_head\":" + std::string(r.text(0, 1)) + ",\"behind\":" + std::string(r.text(0, 2)) +
               ",\"failed\":" + std::string(r.text(0, 3)) + "}}";
    } catch (const pg::Error& e) {
        problem = problem_for(e);
        if (!problem) throw;
    }
    if (problem) throw *problem;
    co_return Response::json(200, std::move(body));
}

asio::awaitable<Response> run(app::App& app, RequestContext& ctx) {
    co_await authenticate_platform(app, ctx);
    if (!ctx.body.empty() && ctx.body != "{}") throw Problem::bad_request("This endpoint takes no request body.");
    migrate::RunOptions opts;
    opts.database_url = app.config.database_url;
    opts.concurrency = app.config.migrate_concurrency;
    migrate::Report report;
    std::optional<Problem> problem;
    try {
        report = co_await migrate::run_all(*app.contexts.at(ctx.shard), opts);
    } catch (const std::exception& e) {
        obs::error("migration run failed", {{"request_id", ctx.request_id}, {"error", std::string_view(e.what())}});
        problem = Problem::of_status(503, "The migration run could not complete; see the server log.");
    }
    if (problem) throw *problem;
    std::string body = "{\"platform_version\":" + std::to_string(report.platform_version) +
                       ",\"tenant_head\":" + std::to_string(report.tenant_head) +
                       ",\"tenants\":{\"total\":" + std::to_string(report.tenants_total) +
                       ",\"migrated\":" + std::to_string(report.tenants_migrated) +
                       ",\"at_head\":" + std::to_string(report.tenants_at_head) +
                       ",\"failed\":" + std::to_string(report.tenants_failed) + "},\"failures\":[";
    for (std::size_t i = 0; i < report.failures.size(); ++i) {
        const auto& f = report.failures[i];
        if (i > 0) body.push_back(',');
        body.append("{\"tenant_id\":");
        obs::append_json_string(body, f.id);
        body.append(",\"slug\":");
        obs::append_json_string(body, f.slug);
        body.append(",\"error\":");
        obs::append_json_string(body, f.message);
        body.push_back('}');
    }
    body.append("]}");
    co_return Response::json(200, std::move(body));
}

}  // namespace

void add_admin_migration_routes(http::Router& router, app::App& app) {
    router.add(http::Method::get, "/api/v1/admin/migrations", [&app](RequestContext& c) { return status(app, c); });
    router.add(http::Method::post, "/api/v1/admin/migrations/run", [&app](RequestContext& c) { return run(app, c); });
}

}  // namespace mtapi::api::v1
