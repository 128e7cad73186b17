#include "tenancy/provisioner.hpp"

#include "migrate/runner.hpp"
#include "obs/log.hpp"
#include "tenancy/catalog.hpp"
#include "util/uuid.hpp"

namespace mtapi::tenancy {
namespace {

namespace asio = boost::asio;

// Schema and role names come only from schema_name_for(uuid): [a-z0-9_], so quoting is not needed;
// quote anyway so the SQL stays correct whatever the name.
std::string ident(const std::string& name) {
    return "\"" + name + "\"";
}

asio::awaitable<void> run_one(pg::Connection& conn, std::string sql, pg::Deadline deadline) {
    pg::Query q{sql, {}, false};
    co_await conn.execute(std::span<const pg::Query>(&q, 1), deadline);
}

asio::awaitable<void> rollback_quietly(pg::Connection& conn, pg::Deadline deadline) {
    if (conn.broken() || !conn.in_transaction()) co_return;
    try {
        co_await run_one(conn, "ROLLBACK", deadline);
    } catch (const std::exception& e) {
        obs::warn("rollback failed", {{"error", std::string_view(e.what())}});
    }
}

std::size_t utf8_length(std::string_view s) {
    std::size_t n = 0;
    for (unsigned char c : s)
        if ((c & 0xc0) != 0x80) ++n;
    return n;
}

}  // namespace

bool valid_slug(std::string_view s) {
    if (s.size() < 3 || s.size() > 40) return false;
    if (s[0] < 'a' || s[0] > 'z') return false;
    for (char c : s)
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
    return true;
}

bool valid_email(std::string_view e) {
    if (e.size() < 3 || e.size() > 254) return false;
    auto at = e.find('@');
    if (at == std::string_view::npos || at == 0 || at != e.rfind('@') || at + 1 >= e.size()) return false;
    auto domain = e.substr(at + 1);
    if (domain.find('.') == std::string_view::npos || domain.front() == '.' || domain.back() == '.') return false;
    for (unsigned char c : e)
        if (c <= 0x20 || c == 0x7f) return false;
    return true;
}

void validate(const ProvisionRequest& req) {
    std::vector<FieldIssue> issues;
    if (!valid_slug(req.slug)) issues.push_back({"slug", "must match ^[a-z][a-z0-9-]{2,39}$"});
    std::size_t name_len = utf8_length(req.name);
    if (name_len == 0 || name_len > 200) issues.push_back({"name", "must be 1 to 200 characters"});
    if (req.plan != "free" && req.plan != "standard" && req.plan != "enterprise")
        issues.push_back({"plan", "must be one of free, standard, enterprise"});
    if (!valid_email(req.admin_email)) issues.push_back({"admin_email", "must be an email address"});
    if (req.admin_password) {
        std::size_t n = utf8_length(*req.admin_password);
        if (n < 12 || n > 128) issues.push_back({"admin_password", "must be 12 to 128 characters"});
    }
    if (!issues.empty()) throw InvalidTenantInput(std::move(issues));
}

asio::awaitable<ProvisionResult> provision(pg::Connection& conn, auth::PasswordHasher& hasher, ProvisionRequest req,
                                           pg::Deadline deadline) {
    validate(req);
    ProvisionResult out;
    out.password_generated = !req.admin_password.has_value();
    out.admin_password = req.admin_password ? *req.admin_password : auth::generate_password();
    std::string password_hash = co_await hasher.hash(out.admin_password);

    const util::Uuid id = util::uuid_v7();
    const std::string id_text = util::to_string(id);
    const std::string schema = schema_name_for(id);
    const std::string admin_id = util::to_string(util::uuid_v7());

    std::exception_ptr failure;
    try {
        co_await run_one(conn, "BEGIN", deadline);
        // The catalog row first: a concurrent create of the same slug waits here on the unique
        // index and fails before doing any DDL.
        pg::Query insert{
            "INSERT INTO platform.tenants (id, slug, name, plan, status, schema_name, role_name, schema_version) "
            "VALUES ($1, $2, $3, $4, 'active', $5, $5, 0)",
            {id_text, req.slug, req.name, req.plan, schema},
            true};
        co_await conn.execute(std::span<const pg::Query>(&insert, 1), deadline);

        std::string ddl = "CREATE ROLE " + ident(schema) + " NOLOGIN; GRANT " + ident(schema) +
                          " TO CURRENT_USER; CREATE SCHEMA " + ident(schema) + " AUTHORIZATION " + ident(schema);
        // A new schema grants nothing to PUBLIC; only its owner (the tenant role) may use it.
        co_await conn.execute_script(ddl, deadline);

        // From here on the tenant's own role in the tenant's own schema, exactly as requests run.
        pg::Query bind{"SELECT set_config('search_path', $1, true), set_config('role', $2, true)",
                       {schema + ", pg_temp", schema},
                       true};
        co_await conn.execute(std::span<const pg::Query>(&bind, 1), deadline);
        int version = co_await migrate::apply_tenant_stream(conn, deadline);

        std::vector<pg::Query> seed;
        seed.push_back({"INSERT INTO users (id, email, name, role, password_hash) VALUES ($1, $2, $3, 'admin', $4)",
                        {admin_id, req.admin_email, "Administrator", password_hash},
                        true});
        seed.push_back({"RESET ROLE", {}, false});
        seed.push_back({"SELECT set_config('search_path', 'platform', true)", {}, false});
        seed.push_back({"UPDATE platform.tenants SET schema_version = $2 WHERE id = $1",
                        {id_text, std::to_string(version)},
                        true});
        seed.push_back({std::string("SELECT ") + Catalog::select_columns() + " FROM platform.tenants WHERE id = $1",
                        {id_text},
                        true});
        seed.push_back({"COMMIT", {}, false});
        auto results = co_await conn.execute(seed, deadline);
        out.tenant = Catalog::from_row(results[4], 0);
        out.admin_user_id = admin_id;
        out.admin_email = req.admin_email;
        co_return out;
    } catch (...) {
        failure = std::current_exception();
    }
    co_await rollback_quietly(conn, deadline);
    try {
        std::rethrow_exception(failure);
    } catch (const pg::Error& e) {
        if (e.kind() == pg::ErrorKind::unique_violation && e.constraint().find("slug") != std::string::npos)
            throw SlugTaken();
        throw;
    }
}

asio::awaitable<bool> set_status(pg::Connection& conn, const std::string& tenant_id, const std::string& status,
                                 pg::Deadline deadline) {
    pg::Query q{"UPDATE platform.tenants SET status = $2 WHERE id = $1", {tenant_id, status}, true};
    auto r = co_await conn.query(std::move(q), deadline);
    co_return r.affected() > 0;
}

asio::awaitable<bool> remove(pg::Connection& conn, const Tenant& tenant, pg::Deadline deadline) {
    const std::string& schema = tenant.schema;
    std::exception_ptr failure;
    try {
        co_await run_one(conn, "BEGIN", deadline);
        // Only the owner may drop the schema; the login role is NOINHERIT, so it acts as the role.
        std::string script = "SET LOCAL ROLE " + ident(tenant.role) + "; DROP SCHEMA IF EXISTS " + ident(schema) +
                             " CASCADE; RESET ROLE; DROP ROLE IF EXISTS " + ident(tenant.role);
        co_await conn.execute_script(script, deadline);
        pg::Query del{"DELETE FROM platform.tenants WHERE id = $1", {tenant.id_text}, true};
        auto r = co_await conn.query(std::move(del), deadline);
        co_await run_one(conn, "COMMIT", deadline);
        co_return r.affected() > 0;
    } catch (...) {
        failure = std::current_exception();
    }
    co_await rollback_quietly(conn, deadline);
    std::rethrow_exception(failure);
}

}  // namespace mtapi::tenancy
