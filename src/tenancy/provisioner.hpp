#pragma once
// Tenant lifecycle in the database: provisioning (role, schema, tables, first admin and catalog
// row in ONE transaction), status changes and deletion.

#include <boost/asio/awaitable.hpp>
#include <optional>
#include <string>
#include <vector>

#include "auth/password_hasher.hpp"
#include "pg/connection.hpp"
#include "tenancy/tenant.hpp"

namespace mtapi::tenancy {

struct FieldIssue {
    std::string field;
    std::string message;
};

// Input that cannot be provisioned; `issues` name the fields (→ 422).
struct InvalidTenantInput : std::runtime_error {
    explicit InvalidTenantInput(std::vector<FieldIssue> i)
        : std::runtime_error("invalid tenant input"), issues(std::move(i)) {}
    std::vector<FieldIssue> issues;
};

// The slug is taken (→ 409).
struct SlugTaken : std::runtime_error {
    SlugTaken() : std::runtime_error("slug is already taken") {}
};

struct ProvisionRequest {
    std::string slug;
    std::string name;
    std::string plan = "standard";
    std::string admin_email;
    std::optional<std::string> admin_password;  // generated when absent
};

struct ProvisionResult {
    Tenant tenant;
    std::string admin_user_id;
    std::string admin_email;
    std::string admin_password;  // as given, or generated; returned to the caller once
    bool password_generated = false;
};

// Checks slug, name, plan, email and password; throws InvalidTenantInput listing every problem.
void validate(const ProvisionRequest& req);

// Creates the tenant. Hashes the admin password on `hasher`'s threads before the transaction,
// then in one transaction: catalog row, role, schema owned by the role, every tenant migration
// (run as the tenant role), the first admin user. Any failure rolls back all of it.
boost::asio::awaitable<ProvisionResult> provision(pg::Connection& conn, auth::PasswordHasher& hasher,
                                                  ProvisionRequest req, pg::Deadline deadline);

// Sets status to active or suspended; returns false when no such tenant exists.
boost::asio::awaitable<bool> set_status(pg::Connection& conn, const std::string& tenant_id, const std::string& status,
                                        pg::Deadline deadline);

// Drops the schema (as its owner) and the role, and deletes the catalog row, in one transaction.
boost::asio::awaitable<bool> remove(pg::Connection& conn, const Tenant& tenant, pg::Deadline deadline);

bool valid_slug(std::string_view slug);
bool valid_email(std::string_view email);

}  // namespace mtapi::tenancy
