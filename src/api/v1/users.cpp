// /api/v1/users: the tenant's users, managed by its admins (everyone in the tenant may read).
//
// `password` is write-only: it is hashed (argon2id, on the hasher pool) before the transaction
// and only its hash is stored; no response carries it or the hash. Email addresses are unique
// whatever their capitalisation (users_email_key is on lower(email)).
//
// A tenant always keeps at least one admin: deleting the only admin, or changing its role, is a
// 409. The check runs in the writing transaction and locks every admin row (FOR UPDATE), so two
// concurrent requests removing the last two admins serialise and the second one fails.

#include "api/guard.hpp"
#include "api/v1/fields.hpp"
#include "api/v1/resource.hpp"
#include "api/v1/routes.hpp"
#include "auth/password_hasher.hpp"
#include "tenancy/provisioner.hpp"

namespace mtapi::api::v1 {
namespace {

namespace asio = boost::asio;

const std::vector<std::string_view> kRoles = {"admin", "dispatcher", "viewer"};

// True unless row $1 is an admin and no other admin exists.
constexpr const char* kKeepsAnAdmin =
    "SELECT NOT EXISTS (SELECT 1 FROM users WHERE id = $1::uuid AND role = 'admin') "
    "OR (SELECT count(*) FROM (SELECT 1 FROM users WHERE role = 'admin' FOR UPDATE) a) > 1";

std::vector<Column> parse(BodyFields& f, bool create) {
    std::vector<Column> cols;
    auto email = f.string("email", {1, 254});
    if (email.value && !tenancy::valid_email(*email.value)) {
        f.error("email", "must be an email address");
        email.invalid = true;
        email.value.reset();
    }
    add_column(cols, f, "email", email, create, true, false);
    add_column(cols, f, "name", f.string("name", {1, 200}), create, true, false);
    add_column(cols, f, "role", f.string("role", {.one_of = kRoles}), create, true, false);
    // Hashed into password_hash by hash_password() below.
    add_column(cols, f, "password", f.string("password", {12, 128, {}, true}), create, true, false);
    return cols;
}

asio::awaitable<void> hash_password(app::App& app, std::vector<Column>& cols) {
    for (auto& col : cols) {
        if (col.name != "password" || !col.value) continue;
        std::string password = std::move(*col.value);
        col.value.reset();
        try {
            std::string hash = co_await app.hasher->hash(std::move(password));
            col.name = "password_hash";
            col.value = std::move(hash);
        } catch (const auth::HasherOverloaded&) {
            throw http::Problem::of_status(503, "The server is busy hashing passwords; retry shortly.");
        }
    }
}

// DELETE of any user, or PATCH setting a role other than admin: the row must not be the last admin.
std::optional<pg::Query> last_admin_guard(const std::string& id, const std::vector<Column>* patch) {
    if (patch != nullptr) {
        bool demotes = false;
        for (const auto& col : *patch)
            if (col.name == "role" && col.value != "admin") demotes = true;
        if (!demotes) return std::nullopt;
    }
    return pg::Query{kKeepsAnAdmin, {id}, true};
}

}  // namespace

void add_user_routes(http::Router& router, app::App& app) {
    auto def = std::make_shared<ResourceDef>();
    def->table = "users";
    def->path = "/api/v1/users";
    def->json = "json_build_object('id', id, 'email', email, 'name', name, 'role', role, 'created_at', " +
                ts("created_at") + ", 'updated_at', " + ts("updated_at") + ")::text";
    def->read_roles = kReaders;
    def->write_roles = kAdmins;
    def->parse = parse;
    def->prepare = hash_password;
    def->constraints = {{"users_email_key", 409, "email", "is already used by another user"},
                        {"users_email_check", 422, "email", "must be 1 to 254 characters"},
                        {"users_role_check", 422, "role", "must be one of admin, dispatcher, viewer"}};
    def->guard = last_admin_guard;
    def->guard_conflict = "A tenant must keep at least one admin; make another user admin first.";
    add_resource_routes(router, app, def);
}

}  // namespace mtapi::api::v1
