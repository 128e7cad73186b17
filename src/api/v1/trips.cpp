// /api/v1/trips: the tenant's trips. A trip's vehicle and driver are foreign keys into the same
// tenant schema, so an id that names nothing, and an id of another tenant's vehicle or driver,
// fail the same way (trips_vehicle_id_fkey / trips_driver_id_fkey) and get the same 422: whether
// an id exists elsewhere is never revealed.

#include <chrono>
#include <compare>
#include <cstdint>

#include "api/guard.hpp"
#include "api/v1/fields.hpp"
#include "api/v1/resource.hpp"
#include "api/v1/routes.hpp"

namespace mtapi::api::v1 {
namespace {

const std::vector<std::string_view> kStatuses = {"planned", "in_progress", "completed", "cancelled"};

// A point in time (UTC) read from an RFC 3339 timestamp.
struct Instant {
    std::int64_t seconds = 0;
    std::int64_t nanos = 0;
    auto operator<=>(const Instant&) const = default;
};

// `s` already has the RFC 3339 shape (is_rfc3339). Returns nullopt for a date that does not
// exist (2026-02-30, year 0).
std::optional<Instant> instant(std::string_view s) {
    auto num = [&](std::size_t pos, std::size_t n) {
        int v = 0;
        for (std::size_t i = pos; i < pos + n; ++i)
            v = v * 10 + (s[i] - '0');
        return v;
    };
    using namespace std::chrono;
    year_month_day date{year{num(0, 4)}, month{static_cast<unsigned>(num(5, 2))},
                        day{static_cast<unsigned>(num(8, 2))}};
    if (num(0, 4) == 0 || !date.ok()) return std::nullopt;
    Instant out;
    out.seconds =
        sys_days(date).time_since_epoch().count() * 86'400 + num(11, 2) * 3'600 + num(14, 2) * 60 + num(17, 2);
    std::size_t i = 19;
    if (s[i] == '.') {
        std::int64_t scale = 100'000'000;
        for (++i; s[i] >= '0' && s[i] <= '9'; ++i, scale /= 10)
            out.nanos += (s[i] - '0') * scale;
    }
    if (s[i] == '+' || s[i] == '-') {
        std::int64_t offset = num(i + 1, 2) * 3'600 + num(i + 4, 2) * 60;
        out.seconds += s[i] == '+' ? -offset : offset;
    }
    return out;
}

std::vector<Column> parse(BodyFields& f, bool create) {
    std::vector<Column> cols;
    add_column(cols, f, "vehicle_id", f.uuid("vehicle_id"), create, true, false, "::uuid");
    add_column(cols, f, "driver_id", f.uuid("driver_id"), create, true, false, "::uuid");
    add_column(cols, f, "origin", f.string("origin", {1, 200}), create, true, false);
    add_column(cols, f, "destination", f.string("destination", {1, 200}), create, true, false);
    add_column(cols, f, "status", f.string("status", {.one_of = kStatuses}), create, false, false);
    auto timestamp = [&](const char* name) {
        auto field = f.timestamp(name);
        std::optional<Instant> at;
        if (field.value) {
            at = instant(*field.value);
            if (!at) {
                f.error(name, "is not a valid date");
                field.invalid = true;
                field.value.reset();
            }
        }
        add_column(cols, f, name, field, create, false, true, "::timestamptz");
        return at;
    };
    timestamp("scheduled_at");
    auto started = timestamp("started_at");
    auto completed = timestamp("completed_at");
    if (started && completed && *completed < *started) f.error("completed_at", "must not be before started_at");
    add_column(cols, f, "distance_km", f.number("distance_km", 0, 100'000), create, false, true, "::numeric");
    return cols;
}

}  // namespace

void add_trip_routes(http::Router& router, app::App& app) {
    auto def = std::make_shared<ResourceDef>();
    def->table = "trips";
    def->path = "/api/v1/trips";
    def->json =
        "json_build_object('id', id, 'vehicle_id', vehicle_id, 'driver_id', driver_id, 'origin', origin, "
        "'destination', destination, 'status', status, 'scheduled_at', " +
        ts("scheduled_at") + ", 'started_at', " + ts("started_at") + ", 'completed_at', " + ts("completed_at") +
        ", 'distance_km', distance_km, 'created_at', " + ts("created_at") + ", 'updated_at', " + ts("updated_at") +
        ")::text";
    def->filters = {
        {"status", "", kStatuses, false}, {"vehicle_id", "::uuid", {}, true}, {"driver_id", "::uuid", {}, true}};
    def->read_roles = kReaders;
    def->write_roles = kWriters;
    def->parse = parse;
    def->constraints = {
        {"trips_vehicle_id_fkey", 422, "vehicle_id", "does not name a vehicle of this tenant"},
        {"trips_driver_id_fkey", 422, "driver_id", "does not name a driver of this tenant"},
        {"trips_status_check", 422, "status", "must be one of planned, in_progress, completed, cancelled"},
        {"trips_distance_km_check", 422, "distance_km", "must be between 0 and 100000"},
        {"trips_completed_at_check", 422, "completed_at", "must not be before started_at"}};
    add_resource_routes(router, app, def);
}

}  // namespace mtapi::api::v1
