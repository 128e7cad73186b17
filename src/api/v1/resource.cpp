#include "api/v1/resource.hpp"

#include <algorithm>

#include "api/guard.hpp"
#include "api/pagination.hpp"
#include "http/problem.hpp"
#include "obs/log.hpp"
#include "util/uuid.hpp"

namespace mtapi::api::v1 {
namespace {

namespace asio = boost::asio;
using http::Problem;
using http::RequestContext;
using http::Response;
using Def = std::shared_ptr<const ResourceDef>;

// A path id that is not a UUID names nothing: 404, like an id of another tenant.
std::string path_id(const RequestContext& ctx) {
    auto id = util::parse_uuid(ctx.param("id"));
    if (!id) throw Problem::not_found();
    return util::to_string(*id);
}

Problem not_found(const ResourceDef& def) {
    return Problem::not_found("No " + def.table.substr(0, def.table.size() - 1) + " has this id.");
}

// Constraint violations → 409/422 naming the field; nullopt for errors that are not the client's.
std::optional<Problem> write_problem(const ResourceDef& def, const pg::Error& e, bool deleting) {
    using pg::ErrorKind;
    if (deleting && e.kind() == ErrorKind::foreign_key_violation)
        return Problem::of_status(409, "Other records still refer to this " +
                                           def.table.substr(0, def.table.size() - 1) +
                                           "; delete or change them first.");
    for (const auto& c : def.constraints) {
        if (c.constraint != e.constraint()) continue;
        Problem p = Problem::of_status(c.status);
        p.with_error(c.field, c.message);
        return p;
    }
    switch (e.kind()) {
        case ErrorKind::unique_violation:
            return Problem::of_status(409, "A record with these values already exists.");
        case ErrorKind::check_violation:
        case ErrorKind::foreign_key_violation:
        case ErrorKind::not_null_violation: {
            Problem p = Problem::of_status(422);
            p.with_error(e.column().empty() ? "body" : e.column(), "is not acceptable");
            return p;
        }
        case ErrorKind::data_exception: {
            Problem p = Problem::of_status(422);
            p.with_error("body", "a value is out of range");
            return p;
        }
        default:
            return std::nullopt;
    }
}

struct Ctx {
    app::App& app;
    Def def;
};

asio::awaitable<Response> get_one(Ctx c, RequestContext& ctx) {
    Principal p = co_await authenticate_tenant(c.app, ctx, c.def->read_roles);
    std::string id = path_id(ctx);
    auto body = [&](tenancy::TenantTx& tx) -> asio::awaitable<std::string> {
        pg::Query q{"SELECT " + c.def->json + " FROM " + c.def->table + " WHERE id = $1::uuid", {id}, true};
        auto r = co_await tx.query_and_commit(std::move(q));
        co_return r.rows() == 1 ? std::string(r.text(0, 0)) : std::string();
    };
    std::string json = co_await in_tenant(c.app, ctx, p, c.def->read_roles, body);
    if (json.empty()) throw not_found(*c.def);
    co_return Response::json(200, std::move(json));
}

asio::awaitable<Response> list(Ctx c, RequestContext& ctx) {
    Principal p = co_await authenticate_tenant(c.app, ctx, c.def->read_roles);
    std::vector<std::string_view> names;
    for (const auto& f : c.def->filters)
        names.push_back(f.name);
    std::vector<std::optional<std::string>> values;
    PageRequest page = parse_page(ctx, *c.app.cursors, p.tenant->id_text, c.def->table, names, values);

    std::string sql =
        "SELECT " + c.def->json + ", " + ts("created_at") + ", id::text FROM " + c.def->table + " WHERE true";
    std::vector<std::optional<std::string>> params;
    for (std::size_t i = 0; i < c.def->filters.size(); ++i) {
        if (!values[i]) continue;
        const auto& f = c.def->filters[i];
        if (f.uuid) {
            auto id = util::parse_uuid(*values[i]);
            if (!id) throw Problem::bad_request("Query parameter '" + std::string(f.name) + "' must be a UUID.");
            values[i] = util::to_string(*id);
        } else if (!f.one_of.empty() &&
                   std::find(f.one_of.begin(), f.one_of.end(), std::string_view(*values[i])) == f.one_of.end()) {
            throw Problem::bad_request("Query parameter '" + std::string(f.name) + "' has an unknown value.");
        }
        params.push_back(values[i]);
        sql += " AND " + std::string(f.name) + " = $" + std::to_string(params.size()) + f.cast;
    }
    if (page.after) {
        params.push_back(page.after->created_at);
        params.push_back(page.after->id);
        sql += " AND (created_at, id) < ($" + std::to_string(params.size() - 1) + "::timestamptz, $" +
               std::to_string(params.size()) + "::uuid)";
    }
    params.push_back(std::to_string(page.limit + 1));
    sql += " ORDER BY created_at DESC, id DESC LIMIT $" + std::to_string(params.size()) + "::int";

    auto body = [&](tenancy::TenantTx& tx) -> asio::awaitable<pg::Result> {
        pg::Query q{sql, params, true};
        co_return co_await tx.query_and_commit(std::move(q));
    };
    pg::Result r = co_await in_tenant(c.app, ctx, p, c.def->read_roles, body);
    int shown = std::min(r.rows(), page.limit);
    std::vector<std::string> items;
    items.reserve(static_cast<std::size_t>(shown));
    for (int i = 0; i < shown; ++i)
        items.emplace_back(r.text(i, 0));
    std::optional<util::CursorPosition> next;
    if (r.rows() > page.limit)
        next = util::CursorPosition{std::string(r.text(shown - 1, 1)), std::string(r.text(shown - 1, 2))};
    std::vector<std::pair<std::string_view, std::optional<std::string>>> links;
    for (std::size_t i = 0; i < c.def->filters.size(); ++i)
        links.emplace_back(c.def->filters[i].name, values[i]);
    Page out = render_page(ctx, *c.app.cursors, page, items, next, links);
    Response resp = Response::json(200, std::move(out.body));
    if (out.link) resp.header("Link", *out.link);
    co_return resp;
}

std::vector<Column> read_body(const ResourceDef& def, const RequestContext& ctx, bool create) {
    auto obj = parse_json_object(ctx);
    BodyFields fields(obj);
    std::vector<Column> cols = def.parse(fields, create);
    fields.finish();
    return cols;
}

// Runs a write `body` in the principal's tenant transaction; database errors the resource can
// name (unique, foreign key, check) become its problem, anything else propagates.
template <class F>
auto write_in_tenant(Ctx c, RequestContext& ctx, const Principal& p, bool deleting, F body)
    -> std::invoke_result_t<F, tenancy::TenantTx&> {
    std::optional<Problem> problem;
    try {
        co_return co_await in_tenant(c.app, ctx, p, c.def->write_roles, body);
    } catch (const pg::Error& e) {
        problem = write_problem(*c.def, e, deleting);
        if (!problem) throw;
    }
    throw *problem;
}

asio::awaitable<Response> create(Ctx c, RequestContext& ctx) {
    Principal p = co_await authenticate_tenant(c.app, ctx, c.def->write_roles);
    std::vector<Column> cols = read_body(*c.def, ctx, true);
    if (c.def->prepare) co_await c.def->prepare(c.app, cols);
    std::string id = util::to_string(util::uuid_v7());
    std::string names = "id", placeholders = "$1::uuid";
    std::vector<std::optional<std::string>> params = {id};
    for (auto& col : cols) {
        params.push_back(std::move(col.value));
        names += ", " + col.name;
        placeholders += ", $" + std::to_string(params.size()) + col.cast;
    }
    std::string sql =
        "INSERT INTO " + c.def->table + " (" + names + ") VALUES (" + placeholders + ") RETURNING " + c.def->json;
    auto body = [&](tenancy::TenantTx& tx) -> asio::awaitable<std::string> {
        pg::Query q{sql, std::move(params), true};
        auto r = co_await tx.query_and_commit(std::move(q));
        co_return std::string(r.text(0, 0));
    };
    std::string json = co_await write_in_tenant(c, ctx, p, false, body);
    Response r = Response::json(201, std::move(json));
    r.header("Location", c.def->path + "/" + id);
    co_return r;
}

// Runs the resource's guard for row `id`; throws 409 when it answers false.
asio::awaitable<void> check_guard(const ResourceDef& def, tenancy::TenantTx& tx, const std::string& id,
                                  const std::vector<Column>* patch) {
    if (!def.guard) co_return;
    auto q = def.guard(id, patch);
    if (!q) co_return;
    auto r = co_await tx.query(std::move(*q));
    if (r.rows() == 1 && !r.boolean(0, 0)) throw Problem::of_status(409, def.guard_conflict);
}

asio::awaitable<Response> patch(Ctx c, RequestContext& ctx) {
    Principal p = co_await authenticate_tenant(c.app, ctx, c.def->write_roles);
    std::string id = path_id(ctx);
    std::vector<Column> cols = read_body(*c.def, ctx, false);
    if (c.def->prepare) co_await c.def->prepare(c.app, cols);
    std::string sql;
    std::vector<std::optional<std::string>> params = {id};
    if (cols.empty()) {
        sql = "SELECT " + c.def->json + " FROM " + c.def->table + " WHERE id = $1::uuid";
    } else {
        sql = "UPDATE " + c.def->table + " SET updated_at = now()";
        for (const auto& col : cols) {
            params.push_back(col.value);
            sql += ", " + col.name + " = $" + std::to_string(params.size()) + col.cast;
        }
        sql += " WHERE id = $1::uuid RETURNING " + c.def->json;
    }
    auto body = [&](tenancy::TenantTx& tx) -> asio::awaitable<std::string> {
        co_await check_guard(*c.def, tx, id, &cols);
        pg::Query q{sql, std::move(params), true};
        auto r = co_await tx.query_and_commit(std::move(q));
        co_return r.rows() == 1 ? std::string(r.text(0, 0)) : std::string();
    };
    std::string json = co_await write_in_tenant(c, ctx, p, false, body);
    if (json.empty()) throw not_found(*c.def);
    co_return Response::json(200, std::move(json));
}

asio::awaitable<Response> remove(Ctx c, RequestContext& ctx) {
    Principal p = co_await authenticate_tenant(c.app, ctx, c.def->write_roles);
    std::string id = path_id(ctx);
    auto body = [&](tenancy::TenantTx& tx) -> asio::awaitable<std::int64_t> {
        co_await check_guard(*c.def, tx, id, nullptr);
        pg::Query q{"DELETE FROM " + c.def->table + " WHERE id = $1::uuid", {id}, true};
        auto r = co_await tx.query_and_commit(std::move(q));
        co_return r.affected();
    };
    std::int64_t deleted = co_await write_in_tenant(c, ctx, p, true, body);
    if (deleted == 0) throw not_found(*c.def);
    co_return Response::no_content();
}

}  // namespace

std::string ts(std::string_view column) {
    return "to_char(" + std::string(column) + " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')";
}

void add_resource_routes(http::Router& router, app::App& app, Def def) {
    using http::Method;
    Ctx c{app, def};
    std::string item = def->path + "/{id}";
    router.add(Method::get, def->path, [c](RequestContext& ctx) { return list(c, ctx); });
    router.add(Method::post, def->path, [c](RequestContext& ctx) { return create(c, ctx); });
    router.add(Method::get, item, [c](RequestContext& ctx) { return get_one(c, ctx); });
    router.add(Method::patch, item, [c](RequestContext& ctx) { return patch(c, ctx); });
    router.add(Method::del, item, [c](RequestContext& ctx) { return remove(c, ctx); });
}

}  // namespace mtapi::api::v1
