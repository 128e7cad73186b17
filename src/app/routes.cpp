#include "app/routes.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <charconv>

#include "api/v1/routes.hpp"
#include "app/rate_limiting.hpp"
#include "http/problem.hpp"

namespace mtapi::app {
namespace {

namespace asio = boost::asio;
using http::Method;
using http::RequestContext;
using http::Response;

asio::awaitable<Response> health(RequestContext&) {
    co_return Response::json(200, R"({"status":"ok"})");
}

// Readiness (SPEC "Public"): PostgreSQL must answer a trivial query within a second on this
// shard's pool. Redis only matters when it is the rate limit backend: while any shard's
// connection to it is unusable the instance is "degraded" (200, limits enforced in process) in fail-open mode and
// "unavailable" (503) in fail-closed mode, where tenant requests would be refused anyway.
asio::awaitable<Response> ready(App& app, RequestContext& ctx) {
    bool pg_ok = false;
    try {
        auto deadline = pg::Clock::now() + std::chrono::seconds(1);
        auto lease = co_await app.pool(ctx.shard).acquire(deadline);
        pg::Query q{"SELECT 1", {}, true};
        auto r = co_await lease->query(std::move(q), deadline);
        pg_ok = r.rows() == 1;
    } catch (const pg::Error&) {
        pg_ok = false;
    }
    const RateLimiting* limits = app.rate_limits.get();
    std::string_view redis = "disabled";
    bool redis_down = false;
    if (limits != nullptr && limits->uses_redis()) {
        redis_down = limits->degraded();
        redis = redis_down ? "down" : "ok";
    }
    std::string_view status = "ready";
    int code = 200;
    if (!pg_ok || (redis_down && limits->fail_closed())) {
        status = "unavailable";
        code = 503;
    } else if (redis_down) {
        status = "degraded";
    }
    std::string body = "{\"status\":\"";
    body.append(status).append("\",\"checks\":{\"postgres\":\"").append(pg_ok ? "ok" : "down");
    body.append("\",\"redis\":\"").append(redis).append("\"}}");
    co_return Response::json(code, std::move(body));
}

// Holds the request for ?ms= milliseconds; lets the test suites keep requests in flight.
asio::awaitable<Response> test_sleep(RequestContext& ctx) {
    auto ms_text = ctx.query_param("ms").value_or("0");
    unsigned ms = 0;
    auto [p, ec] = std::from_chars(ms_text.data(), ms_text.data() + ms_text.size(), ms);
    if (ec != std::errc() || p != ms_text.data() + ms_text.size() || ms > 60'000)
        throw http::Problem::bad_request("Query parameter 'ms' must be an integer from 0 to 60000.");
    asio::steady_timer timer(co_await asio::this_coro::executor, std::chrono::milliseconds(ms));
    co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    co_return Response::json(200, "{\"slept_ms\":" + std::to_string(ms) + "}");
}

asio::awaitable<Response> test_echo(RequestContext& ctx) {
    co_return Response::json(200, "{\"bytes\":" + std::to_string(ctx.body.size()) + "}");
}

}  // namespace

std::shared_ptr<http::Router> build_router(App& app, std::shared_ptr<obs::MetricsRegistry> registry) {
    const Config& config = app.config;
    auto router = std::make_shared<http::Router>();
    router->add(Method::get, "/health", health);
    router->add(Method::get, "/ready", [&app](RequestContext& ctx) { return ready(app, ctx); });
    router->add(Method::get, "/metrics", [registry](RequestContext&) -> asio::awaitable<Response> {
        co_return Response::text(200, "text/plain; version=0.0.4; charset=utf-8", registry->render());
    });
    api::v1::add_openapi_routes(*router, app);
    api::v1::add_auth_routes(*router, app);
    api::v1::add_me_routes(*router, app);
    api::v1::add_vehicle_routes(*router, app);
    api::v1::add_driver_routes(*router, app);
    api::v1::add_trip_routes(*router, app);
    api::v1::add_user_routes(*router, app);
    api::v1::add_admin_tenant_routes(*router, app);
    api::v1::add_admin_migration_routes(*router, app);
    if (config.test_endpoints) {
        router->add(Method::get, "/__test/sleep", test_sleep);
        router->add(Method::post, "/__test/echo", test_echo);
    }
    return router;
}

}  // namespace mtapi::app
