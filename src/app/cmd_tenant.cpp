// `mtapi tenant create|list|suspend|activate|delete`: tenant lifecycle from the command line.
// Each command runs one coroutine on a private io_context with a single connection.

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <cstdio>
#include <exception>
#include <functional>
#include <iostream>

#include "app/app.hpp"
#include "app/cli_support.hpp"
#include "app/commands.hpp"
#include "obs/log.hpp"
#include "tenancy/catalog.hpp"
#include "tenancy/provisioner.hpp"
#include "util/uuid.hpp"

namespace mtapi::app {
namespace {

namespace asio = boost::asio;
using ConnPtr = std::unique_ptr<pg::Connection>;

asio::awaitable<tenancy::TenantPtr> find_tenant(pg::Connection& conn, const std::string& key, pg::Deadline deadline) {
    bool by_id = util::parse_uuid(key).has_value();
    std::string sql = std::string("SELECT ") + tenancy::Catalog::select_columns() + " FROM platform.tenants WHERE " +
                      (by_id ? "id = $1::uuid" : "slug = $1");
    pg::Query q{sql, {key}, true};
    auto r = co_await conn.query(std::move(q), deadline);
    if (r.rows() == 0) co_return nullptr;
    co_return std::make_shared<const tenancy::Tenant>(tenancy::Catalog::from_row(r, 0));
}

}  // namespace

// Runs `body(connection)` to completion; prints one clear line and returns 1 on failure.
int run_with_connection(const Config& config, const char* what,
                        std::function<asio::awaitable<int>(asio::io_context&, pg::Connection&)> body) {
    asio::io_context ioc;
    int rc = kExitFailure;
    std::exception_ptr failure;
    asio::co_spawn(
        ioc,
        [&]() -> asio::awaitable<int> {
            pg::ConnectOptions opts = pool_options(config).connect;
            ConnPtr conn = co_await pg::Connection::connect(ioc, opts);
            co_return co_await body(ioc, *conn);
        },
        [&](std::exception_ptr e, int result) {
            failure = e;
            rc = result;
        });
    ioc.run();
    if (!failure) return rc;
    try {
        std::rethrow_exception(failure);
    } catch (const tenancy::InvalidTenantInput& e) {
        for (const auto& i : e.issues)
            std::cerr << "mtapi: " << what << ": " << i.field << " " << i.message << "\n";
    } catch (const tenancy::SlugTaken&) {
        std::cerr << "mtapi: " << what << ": slug is already taken\n";
    } catch (const std::exception& e) {
        std::cerr << "mtapi: " << what << ": " << e.what() << "\n";
    }
    return kExitFailure;
}

int cmd_tenant_create(const Config& config, const TenantCreateArgs& args) {
    auth::PasswordHasher hasher(1, 4, hash_params(config));
    return run_with_connection(
        config, "tenant create", [&](asio::io_context&, pg::Connection& conn) -> asio::awaitable<int> {
            tenancy::ProvisionRequest req{args.slug, args.name, args.plan, args.admin_email, args.admin_password};
            auto deadline = pg::Clock::now() + std::chrono::seconds(60);
            auto res = co_await tenancy::provision(conn, hasher, req, deadline);
            std::cout << "tenant " << res.tenant.slug << " created\n"
                      << "  id:       " << res.tenant.id_text << "\n"
                      << "  schema:   " << res.tenant.schema << " (version " << res.tenant.schema_version << ")\n"
                      << "  admin:    " << res.admin_email << "\n";
            if (res.password_generated) std::cout << "  password: " << res.admin_password << "  (shown once)\n";
            co_return kExitOk;
        });
}

int cmd_tenant_list(const Config& config) {
    return run_with_connection(
        config, "tenant list", [](asio::io_context&, pg::Connection& conn) -> asio::awaitable<int> {
            std::string sql = std::string("SELECT ") + tenancy::Catalog::select_columns() +
                              " FROM platform.tenants ORDER BY created_at, id";
            pg::Query q{sql, {}, true};
            auto r = co_await conn.query(std::move(q), pg::Clock::now() + std::chrono::seconds(30));
            std::printf("%-36s  %-24s  %-10s  %-9s  %s\n", "ID", "SLUG", "PLAN", "STATUS", "VERSION");
            for (int i = 0; i < r.rows(); ++i) {
                auto t = tenancy::Catalog::from_row(r, i);
                std::printf("%-36s  %-24s  %-10s  %-9s  %d\n", t.id_text.c_str(), t.slug.c_str(), t.plan.c_str(),
                            t.status.c_str(), t.schema_version);
            }
            co_return kExitOk;
        });
}

int cmd_tenant_suspend(const Config& config, const std::string& id_or_slug, bool suspend) {
    const char* what = suspend ? "tenant suspend" : "tenant activate";
    return run_with_connection(config, what, [&](asio::io_context&, pg::Connection& conn) -> asio::awaitable<int> {
        auto deadline = pg::Clock::now() + std::chrono::seconds(30);
        auto t = co_await find_tenant(conn, id_or_slug, deadline);
        if (!t) {
            std::cerr << "mtapi: " << what << ": no tenant '" << id_or_slug << "'\n";
            co_return kExitFailure;
        }
        co_await tenancy::set_status(conn, t->id_text, suspend ? "suspended" : "active", deadline);
        std::cout << "tenant " << t->slug << " " << (suspend ? "suspended" : "active") << "\n";
        co_return kExitOk;
    });
}

int cmd_tenant_delete(const Config& config, const std::string& id_or_slug) {
    return run_with_connection(config, "tenant delete",
                               [&](asio::io_context&, pg::Connection& conn) -> asio::awaitable<int> {
                                   auto deadline = pg::Clock::now() + std::chrono::seconds(60);
                                   auto t = co_await find_tenant(conn, id_or_slug, deadline);
                                   if (!t) {
                                       std::cerr << "mtapi: tenant delete: no tenant '" << id_or_slug << "'\n";
                                       co_return kExitFailure;
                                   }
                                   co_await tenancy::remove(conn, *t, deadline);
                                   std::cout << "tenant " << t->slug << " deleted (schema and role dropped)\n";
                                   co_return kExitOk;
                               });
}

}  // namespace mtapi::app
