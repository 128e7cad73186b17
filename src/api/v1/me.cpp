// GET /api/v1/me: the caller's user and tenant.

#include "api/guard.hpp"
#include "api/render.hpp"
#include "api/v1/routes.hpp"
#include "obs/log.hpp"

namespace mtapi::api::v1 {
namespace {

namespace asio = boost::asio;
using http::RequestContext;
using http::Response;

asio::awaitable<Response> me(app::App& app, RequestContext& ctx) {
    Principal p = co_await authenticate_tenant(app, ctx, kReaders);
    static const std::string kSql =
        "SELECT json_build_object('id', id, 'email', email, 'name', name, 'role', role, "
        "'created_at', " +
        sql_ts("created_at") + ", 'updated_at', " + sql_ts("updated_at") + ")::text FROM users WHERE id = $1::uuid";
    auto load = [&](tenancy::TenantTx& tx) -> asio::awaitable<std::string> {
        pg::Query q{kSql, {p.user_id}, true};
        auto r = co_await tx.query_and_commit(std::move(q));
        co_return r.rows() == 1 ? std::string(r.text(0, 0)) : std::string();
    };
    std::string user = co_await in_tenant(app, ctx, p, kReaders, load);
    if (user.empty()) throw unauthorized("The access token's user no longer exists.");
    std::string body = "{\"user\":" + user + ",\"tenant\":{\"id\":";
    obs::append_json_string(body, p.tenant->id_text);
    body.append(",\"slug\":");
    obs::append_json_string(body, p.tenant->slug);
    body.append(",\"name\":");
    obs::append_json_string(body, p.tenant->name);
    body.append(",\"plan\":");
    obs::append_json_string(body, p.tenant->plan);
    body.append(",\"status\":");
    obs::append_json_string(body, p.tenant->status);
    body.append("}}");
    co_return Response::json(200, std::move(body));
}

}  // namespace

void add_me_routes(http::Router& router, app::App& app) {
    router.add(http::Method::get, "/api/v1/me", [&app](RequestContext& ctx) { return me(app, ctx); });
}

}  // namespace mtapi::api::v1
