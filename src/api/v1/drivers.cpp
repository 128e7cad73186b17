// /api/v1/drivers: the tenant's drivers. A driver that trips still reference cannot be deleted
// (trips_driver_id_fkey is ON DELETE RESTRICT): DELETE answers 409 until those trips are deleted
// or moved to another driver.

#include "api/guard.hpp"
#include "api/v1/fields.hpp"
#include "api/v1/resource.hpp"
#include "api/v1/routes.hpp"
#include "tenancy/provisioner.hpp"

namespace mtapi::api::v1 {
namespace {

const std::vector<std::string_view> kStatuses = {"active", "inactive"};

std::vector<Column> parse(BodyFields& f, bool create) {
    std::vector<Column> cols;
    add_column(cols, f, "name", f.string("name", {1, 200}), create, true, false);
    add_column(cols, f, "license_number", f.string("license_number", {1, 50}), create, true, false);
    add_column(cols, f, "phone", f.string("phone", {1, 40}), create, false, true);
    auto email = f.string("email", {1, 254});
    if (email.value && !tenancy::valid_email(*email.value)) {
        f.error("email", "must be an email address");
        email.invalid = true;
        email.value.reset();
    }
    add_column(cols, f, "email", email, create, false, true);
    add_column(cols, f, "status", f.string("status", {.one_of = kStatuses}), create, false, false);
    return cols;
}

}  // namespace

void add_driver_routes(http::Router& router, app::App& app) {
    auto def = std::make_shared<ResourceDef>();
    def->table = "drivers";
    def->path = "/api/v1/drivers";
    def->json =
        "json_build_object('id', id, 'name', name, 'license_number', license_number, 'phone', phone, "
        "'email', email, 'status', status, 'created_at', " +
        ts("created_at") + ", 'updated_at', " + ts("updated_at") + ")::text";
    def->filters = {{"status", "", kStatuses, false}};
    def->read_roles = kReaders;
    def->write_roles = kWriters;
    def->parse = parse;
    def->constraints = {{"drivers_license_number_key", 409, "license_number", "is already used by another driver"},
                        {"drivers_status_check", 422, "status", "must be one of active, inactive"}};
    add_resource_routes(router, app, def);
}

}  // namespace mtapi::api::v1
