// /api/v1/vehicles: the tenant's vehicles.

#include "api/guard.hpp"
#include "api/v1/fields.hpp"
#include "api/v1/resource.hpp"
#include "api/v1/routes.hpp"

namespace mtapi::api::v1 {
namespace {

const std::vector<std::string_view> kStatuses = {"active", "maintenance", "retired"};

std::vector<Column> parse(BodyFields& f, bool create) {
    std::vector<Column> cols;
    add_column(cols, f, "plate", f.string("plate", {1, 20}), create, true, false);
    add_column(cols, f, "vin", f.string("vin", {17, 17}), create, false, true);
    add_column(cols, f, "make", f.string("make", {1, 100}), create, false, true);
    add_column(cols, f, "model", f.string("model", {1, 100}), create, false, true);
    add_column(cols, f, "year", f.integer("year", 1886, 2100), create, false, true, "::int");
    add_column(cols, f, "status", f.string("status", {.one_of = kStatuses}), create, false, false);
    add_column(cols, f, "odometer_km", f.integer("odometer_km", 0, 100'000'000), create, false, false, "::bigint");
    return cols;
}

}  // namespace

void add_vehicle_routes(http::Router& router, app::App& app) {
    auto def = std::make_shared<ResourceDef>();
    def->table = "vehicles";
    def->path = "/api/v1/vehicles";
    def->json =
        "json_build_object('id', id, 'plate', plate, 'vin', vin, 'make', make, 'model', model, 'year', year, "
        "'status', status, 'odometer_km', odometer_km, 'created_at', " +
        ts("created_at") + ", 'updated_at', " + ts("updated_at") + ")::text";
    def->filters = {{"status", "", kStatuses, false}};
    def->read_roles = kReaders;
    def->write_roles = kWriters;
    def->parse = parse;
    def->constraints = {{"vehicles_plate_key", 409, "plate", "is already used by another vehicle"},
                        {"vehicles_vin_check", 422, "vin", "must be exactly 17 characters"},
                        {"vehicles_year_check", 422, "year", "must be between 1886 and 2100"}};
    add_resource_routes(router, app, def);
}

}  // namespace mtapi::api::v1
