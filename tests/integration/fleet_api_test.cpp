// The fleet API against the real server and PostgreSQL (SPEC §3): users, vehicles, drivers and
// trips round trip through POST, GET, PATCH and DELETE; every body is validated (422 naming the
// fields, 400 for what is not a JSON object, 415 for what is not JSON); unique columns answer 409
// naming the field; lists filter by exact match and page by keyset cursors that are bound to
// their tenant, list and filters.
//
// Each test makes its own tenants, so every count below is exact.

#include <algorithm>
#include <atomic>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <cctype>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "fleet_support.hpp"

namespace mtapi::fleettest {
namespace {

const std::string kUsers = "/api/v1/users";
const std::string kVehicles = "/api/v1/vehicles";
const std::string kDrivers = "/api/v1/drivers";
const std::string kTrips = "/api/v1/trips";

class FleetTest : public idtest::IdentityTest {};

bool contains_id(const std::vector<std::string>& ids, const std::string& id) {
    return std::find(ids.begin(), ids.end(), id) != ids.end();
}

std::set<std::string> as_set(const std::vector<std::string>& v) {
    return {v.begin(), v.end()};
}

std::string dump(const json::value& v) {
    return json::serialize(v);
}

// ============================================================================= CRUD round trips

struct RoundTrip {
    std::string path;
    json::object create;                  // a valid POST body
    json::object change;                  // a PATCH: exactly these fields must change
    std::string clear;                    // an optional field that PATCH null clears ("": none)
    std::vector<std::string> write_only;  // fields accepted but never shown (users' password)
};

bool write_only(const RoundTrip& rt, std::string_view key) {
    return std::find(rt.write_only.begin(), rt.write_only.end(), key) != rt.write_only.end();
}

// `after` is `before` with `change` applied: same keys, the changed fields have their new value,
// every other field is as it was, created_at is kept and updated_at advanced.
void expect_changed_only(const RoundTrip& rt, const json::object& before, const json::object& after,
                         const json::object& change) {
    EXPECT_EQ(before.size(), after.size()) << dump(before) << " → " << dump(after);
    for (const auto& [key, old] : before) {
        const json::value* now = after.if_contains(key);
        ASSERT_NE(now, nullptr) << "PATCH dropped '" << key << "': " << dump(after);
        if (key == "updated_at") {
            // Fixed-width UTC renderings: text order is time order.
            EXPECT_GT(dump(*now), dump(old)) << "updated_at must advance";
        } else if (const json::value* wanted = change.if_contains(key)) {
            EXPECT_TRUE(same_value(*now, *wanted))
                << "'" << key << "' should be " << dump(*wanted) << ", is " << dump(*now);
        } else {
            EXPECT_TRUE(same_value(*now, old))
                << "'" << key << "' was not in the PATCH but changed from " << dump(old) << " to " << dump(*now);
        }
    }
    for (const auto& [key, value] : change)
        if (write_only(rt, key)) {
            EXPECT_FALSE(after.contains(key)) << "write-only '" << key << "' shown";
        }
}

// POST (201 + Location) → GET Location → list → PATCH → PATCH null → DELETE (204) → 404.
// Every response is appended to `seen` for the caller's own checks.
void round_trip(const Api& api, const RoundTrip& rt, std::vector<Response>& seen) {
    Response created = api.post(rt.path, rt.create);
    seen.push_back(created);
    ASSERT_EQ(created.status, 201) << describe(created);
    EXPECT_EQ(created.header("Content-Type").rfind("application/json", 0), 0u) << created.header("Content-Type");
    const json::object body = object_of(created);
    const std::string id = text(body, "id");
    ASSERT_TRUE(test::is_uuid(id)) << created.body;
    const std::string location = rt.path + "/" + id;
    EXPECT_EQ(created.header("Location"), location);
    for (const auto& [key, value] : rt.create) {
        if (write_only(rt, key)) {
            EXPECT_FALSE(body.contains(key)) << "write-only '" << key << "' shown: " << created.body;
            continue;
        }
        const json::value* got = body.if_contains(key);
        ASSERT_NE(got, nullptr) << "'" << key << "' missing: " << created.body;
        EXPECT_TRUE(same_value(*got, value)) << "'" << key << "': sent " << dump(value) << ", got " << dump(*got);
    }
    EXPECT_FALSE(text(body, "created_at").empty()) << created.body;
    EXPECT_FALSE(text(body, "updated_at").empty()) << created.body;

    // The Location names what was created.
    Response fetched = api.get(created.header("Location"));
    seen.push_back(fetched);
    ASSERT_EQ(fetched.status, 200) << describe(fetched);
    EXPECT_EQ(object_of(fetched), body) << "GET Location differs from the 201 body";

    // The list shows it, once, with the same body.
    auto items = api.list_all(rt.path);
    auto same_id = [&](const json::object& o) { return text(o, "id") == id; };
    ASSERT_EQ(std::count_if(items.begin(), items.end(), same_id), 1);
    EXPECT_EQ(*std::find_if(items.begin(), items.end(), same_id), body);

    // PATCH changes the given fields only.
    std::this_thread::sleep_for(2ms);
    Response patched = api.patch(location, rt.change);
    seen.push_back(patched);
    ASSERT_EQ(patched.status, 200) << describe(patched);
    json::object current = object_of(patched);
    ASSERT_NO_FATAL_FAILURE(expect_changed_only(rt, body, current, rt.change));

    // null clears an optional field, and nothing else.
    if (!rt.clear.empty()) {
        ASSERT_TRUE(current.contains(rt.clear) && !current.at(rt.clear).is_null())
            << "the field to clear must be set first: " << dump(current);
        json::object clear;
        clear[rt.clear] = nullptr;
        std::this_thread::sleep_for(2ms);
        Response cleared = api.patch(location, clear);
        seen.push_back(cleared);
        ASSERT_EQ(cleared.status, 200) << describe(cleared);
        json::object after = object_of(cleared);
        ASSERT_NO_FATAL_FAILURE(expect_changed_only(rt, current, after, clear));
        current = after;
    }
    Response again = api.get(location);
    seen.push_back(again);
    ASSERT_EQ(again.status, 200) << describe(again);
    EXPECT_EQ(object_of(again), current) << "GET after PATCH differs from the PATCH answer";

    // DELETE: 204 without a body, then the id names nothing.
    Response deleted = api.del(location);
    EXPECT_EQ(deleted.status, 204) << describe(deleted);
    EXPECT_TRUE(deleted.body.empty()) << deleted.body;
    EXPECT_TRUE(is_problem(api.get(location), 404));
    EXPECT_TRUE(is_problem(api.patch(location, rt.change), 404));
    EXPECT_TRUE(is_problem(api.del(location), 404));
    EXPECT_FALSE(contains_id(api.list_ids(rt.path), id));
}

class CrudRoundTrip : public FleetTest {};

// One tenant's requests one after another find the connection it used last: the pool's tenant
// affinity (ADR 006) shows in /metrics.
TEST_F(CrudRoundTrip, sequential_requests_of_a_tenant_reuse_its_connection) {
    FleetTenant t = new_tenant("fl-affinity");
    Api api = t.api();
    auto hits = [&] {
        auto r = test::http_request(api.port(), "GET", "/metrics");
        const std::string series = "mtapi_db_affinity_total{result=\"hit\"} ";
        auto pos = r.body.find(series);
        return pos == std::string::npos ? -1.0 : std::strtod(r.body.c_str() + pos + series.size(), nullptr);
    };
    const double before = hits();
    ASSERT_GE(before, 0) << "no mtapi_db_affinity_total in /metrics";
    for (int i = 0; i < 10; ++i)
        ASSERT_EQ(api.get(kVehicles).status, 200);
    EXPECT_GE(hits() - before, 5) << "sequential requests of one tenant should mostly get its last connection";
}

TEST_F(CrudRoundTrip, vehicles) {
    FleetTenant t = new_tenant("fl-crud-v");
    json::object change;
    change["model"] = "Transit Custom";
    change["odometer_km"] = 13'000;
    change["status"] = "retired";
    std::vector<Response> seen;
    round_trip(t.api(), {kVehicles, vehicle_body("maintenance"), change, "vin", {}}, seen);
}

TEST_F(CrudRoundTrip, drivers) {
    FleetTenant t = new_tenant("fl-crud-d");
    json::object change;
    change["name"] = "Dana Renamed";
    change["status"] = "inactive";
    std::vector<Response> seen;
    ASSERT_NO_FATAL_FAILURE(round_trip(t.api(), {kDrivers, driver_body(), change, "phone", {}}, seen));
    // The other optional field clears the same way.
    Api api = t.api();
    json::object d = api.create(kDrivers, driver_body());
    Response r = api.patch(kDrivers + "/" + text(d, "id"), json::parse(R"({"email":null})").as_object());
    ASSERT_EQ(r.status, 200) << describe(r);
    EXPECT_TRUE(object_of(r).at("email").is_null()) << r.body;
    EXPECT_EQ(text(object_of(r), "phone"), text(d, "phone"));
}

TEST_F(CrudRoundTrip, trips) {
    FleetTenant t = new_tenant("fl-crud-t");
    Api api = t.api();
    const std::string v1 = text(api.create(kVehicles, vehicle_body()), "id");
    const std::string v2 = text(api.create(kVehicles, vehicle_body()), "id");
    const std::string d1 = text(api.create(kDrivers, driver_body()), "id");
    json::object change;
    change["vehicle_id"] = v2;
    change["status"] = "in_progress";
    change["started_at"] = "2026-03-01T08:05:00.000000Z";
    std::vector<Response> seen;
    ASSERT_NO_FATAL_FAILURE(round_trip(api, {kTrips, trip_body(v1, d1), change, "distance_km", {}}, seen));

    // Timestamps with an offset are stored as the instant they name and shown in UTC; the
    // remaining optional fields clear with null too.
    json::object body = trip_body(v1, d1, "completed");
    body["started_at"] = "2026-03-01T10:00:00+02:00";
    body["completed_at"] = "2026-03-01T11:30:00.25+02:00";
    json::object trip = api.create(kTrips, body);
    EXPECT_EQ(text(trip, "started_at"), "2026-03-01T08:00:00.000000Z");
    EXPECT_EQ(text(trip, "completed_at"), "2026-03-01T09:30:00.250000Z");
    Response cleared =
        api.patch(kTrips + "/" + text(trip, "id"),
                  json::parse(R"({"scheduled_at":null,"started_at":null,"completed_at":null})").as_object());
    ASSERT_EQ(cleared.status, 200) << describe(cleared);
    for (const char* key : {"scheduled_at", "started_at", "completed_at"})
        EXPECT_TRUE(object_of(cleared).at(key).is_null()) << key << ": " << cleared.body;
}

// Users: the password is write-only (no response shows it or its hash), the new user logs in,
// a changed password replaces the old one, a deleted user cannot log in.
TEST_F(CrudRoundTrip, users_never_show_a_password_and_log_in) {
    FleetTenant t = new_tenant("fl-crud-u");
    Api api = t.api();
    const auto port = api.port();
    std::vector<Response> seen;
    std::vector<std::string> passwords;

    json::object change;
    change["name"] = "Uma Renamed";
    change["role"] = "viewer";
    change["password"] = "a-new-password-" + idtest::random_hex(4);
    RoundTrip rt{kUsers, user_body("dispatcher"), change, "", {"password"}};
    passwords.push_back(text(rt.create, "password"));
    passwords.push_back(text(change, "password"));
    ASSERT_NO_FATAL_FAILURE(round_trip(api, rt, seen));

    // A user's lifetime seen from the login side.
    json::object body = user_body("dispatcher");
    const std::string email = text(body, "email");
    const std::string first = text(body, "password");
    passwords.push_back(first);
    Response created = api.post(kUsers, body);
    seen.push_back(created);
    ASSERT_EQ(created.status, 201) << describe(created);
    const std::string id = text(object_of(created), "id");
    Response login = idtest::tenant_login(port, t.info.slug, email, first);
    ASSERT_EQ(login.status, 200) << "the new user logs in: " << describe(login);
    Response me = idtest::get(port, "/api/v1/me", idtest::token_of(login));
    seen.push_back(me);
    EXPECT_EQ(me.status, 200) << describe(me);

    const std::string second = "second-password-" + idtest::random_hex(4);
    passwords.push_back(second);
    Response changed = api.patch(kUsers + "/" + id, json::parse(R"({"password":")" + second + R"("})").as_object());
    seen.push_back(changed);
    ASSERT_EQ(changed.status, 200) << describe(changed);
    EXPECT_TRUE(login_refused(idtest::tenant_login(port, t.info.slug, email, first))) << "the old password";
    EXPECT_EQ(idtest::tenant_login(port, t.info.slug, email, second).status, 200) << "the new password";

    seen.push_back(api.get(kUsers + "/" + id));
    seen.push_back(api.get(kUsers + "?limit=100"));
    ASSERT_EQ(api.del(kUsers + "/" + id).status, 204);
    EXPECT_TRUE(login_refused(idtest::tenant_login(port, t.info.slug, email, second))) << "a deleted user";

    for (const auto& r : seen) {
        EXPECT_EQ(r.body.find("password"), std::string::npos) << r.body;
        EXPECT_EQ(r.body.find("$argon2"), std::string::npos) << r.body;
        for (const auto& p : passwords)
            EXPECT_EQ(r.body.find(p), std::string::npos) << "a password in a response: " << r.body;
    }
}

// ============================================================================= roles

class Roles : public FleetTest {};

TEST_F(Roles, viewers_read_dispatchers_write_the_fleet_admins_manage_users) {
    FleetTenant t = new_tenant("fl-roles");
    Api admin = t.api();
    UserInfo viewer_user = new_user(t, "viewer");
    UserInfo dispatcher_user = new_user(t, "dispatcher");
    Api viewer(admin.port(), viewer_user.token);
    Api dispatcher(admin.port(), dispatcher_user.token);
    const json::object vehicle = admin.create(kVehicles, vehicle_body());
    const std::string vehicle_at = kVehicles + "/" + text(vehicle, "id");
    const std::string driver_id = text(admin.create(kDrivers, driver_body()), "id");
    const std::string viewer_at = kUsers + "/" + viewer_user.id;
    const auto rename = json::parse(R"({"name":"Renamed"})").as_object();

    // A viewer reads everything, users included, and writes nothing.
    for (const auto& path : {kUsers, kVehicles, kDrivers, kTrips})
        EXPECT_EQ(viewer.get(path).status, 200) << path;
    EXPECT_EQ(viewer.get(vehicle_at).status, 200);
    EXPECT_EQ(viewer.get(viewer_at).status, 200);
    EXPECT_TRUE(is_problem(viewer.post(kVehicles, vehicle_body()), 403));
    EXPECT_TRUE(is_problem(viewer.patch(vehicle_at, json::parse(R"({"model":"X"})").as_object()), 403));
    EXPECT_TRUE(is_problem(viewer.del(vehicle_at), 403));
    EXPECT_TRUE(is_problem(viewer.post(kDrivers, driver_body()), 403));
    EXPECT_TRUE(is_problem(viewer.post(kTrips, trip_body(text(vehicle, "id"), driver_id)), 403));
    EXPECT_TRUE(is_problem(viewer.post(kUsers, user_body("viewer")), 403));
    EXPECT_TRUE(is_problem(viewer.patch(viewer_at, rename), 403)) << "not even its own user";
    EXPECT_EQ(object_of(admin.get(vehicle_at)), vehicle) << "a refused write changed nothing";

    // A dispatcher writes vehicles, drivers and trips, and only reads users.
    json::object v = dispatcher.create(kVehicles, vehicle_body());
    const std::string v_at = kVehicles + "/" + text(v, "id");
    EXPECT_EQ(dispatcher.patch(v_at, json::parse(R"({"model":"Sprinter"})").as_object()).status, 200);
    json::object d = dispatcher.create(kDrivers, driver_body());
    json::object trip = dispatcher.create(kTrips, trip_body(text(v, "id"), text(d, "id")));
    EXPECT_EQ(dispatcher.del(kTrips + "/" + text(trip, "id")).status, 204);
    EXPECT_EQ(dispatcher.del(v_at).status, 204);
    EXPECT_EQ(dispatcher.get(kUsers).status, 200);
    EXPECT_EQ(dispatcher.get(viewer_at).status, 200);
    EXPECT_TRUE(is_problem(dispatcher.post(kUsers, user_body("viewer")), 403));
    EXPECT_TRUE(is_problem(dispatcher.patch(viewer_at, rename), 403));
    EXPECT_TRUE(is_problem(
        dispatcher.patch(kUsers + "/" + dispatcher_user.id, json::parse(R"({"role":"admin"})").as_object()), 403))
        << "a dispatcher cannot promote itself";
    EXPECT_TRUE(is_problem(dispatcher.del(viewer_at), 403));
    EXPECT_EQ(text(object_of(admin.get(viewer_at)), "name"), "Uma User") << "a refused write changed nothing";
    EXPECT_EQ(text(object_of(admin.get(kUsers + "/" + dispatcher_user.id)), "role"), "dispatcher");
}

TEST_F(Roles, the_last_admin_cannot_delete_or_demote_itself) {
    FleetTenant t = new_tenant("fl-lastadm");
    Api admin = t.api();
    const std::string self = kUsers + "/" + t.info.admin_id;

    EXPECT_TRUE(is_problem(admin.del(self), 409)) << "deleting the only admin";
    EXPECT_TRUE(is_problem(admin.patch(self, json::parse(R"({"role":"viewer"})").as_object()), 409))
        << "demoting the only admin";
    Response still = admin.get(self);
    ASSERT_EQ(still.status, 200) << describe(still);
    EXPECT_EQ(text(object_of(still), "role"), "admin");
    EXPECT_EQ(admin.patch(self, json::parse(R"({"name":"Still Admin"})").as_object()).status, 200)
        << "other changes to the last admin are fine";

    // With a second admin the first may go; then the second is the last one.
    UserInfo second = new_user(t, "admin");
    Api other(admin.port(), second.token);
    EXPECT_EQ(other.del(self).status, 204);
    EXPECT_TRUE(is_problem(other.del(kUsers + "/" + second.id), 409));
    EXPECT_EQ(other.list_ids(kUsers).size(), 1u);
}

// Two admins removing each other at the same moment: the check and the removal are one
// transaction that locks the admin rows, so one of them succeeds and the tenant keeps an admin.
TEST_F(Roles, two_admins_removing_each_other_at_once_leave_one_admin) {
    FleetTenant t = new_tenant("fl-admrace");
    const auto port = t.api().port();
    UserInfo keeper;
    keeper.id = t.info.admin_id;
    keeper.token = t.token;
    for (int round = 0; round < 4; ++round) {
        UserInfo other = new_user(t, "admin", keeper.token);
        const bool demote = round % 2 == 1;  // DELETE in even rounds, PATCH role=viewer in odd ones
        auto remove = [&](const UserInfo& by, const UserInfo& victim) {
            Api api(port, by.token);
            const std::string at = kUsers + "/" + victim.id;
            return demote ? api.patch(at, json::parse(R"({"role":"viewer"})").as_object()) : api.del(at);
        };
        std::atomic<int> ready{0};
        Response first, second;
        auto run = [&](Response& out, const UserInfo& by, const UserInfo& victim) {
            ready.fetch_add(1);
            while (ready.load() < 2)
                std::this_thread::yield();
            out = remove(by, victim);
        };
        std::thread a([&] { run(first, keeper, other); });
        std::thread b([&] { run(second, other, keeper); });
        a.join();
        b.join();
        const bool first_won = first.status == 200 || first.status == 204;
        const bool second_won = second.status == 200 || second.status == 204;
        EXPECT_FALSE(first_won && second_won)
            << "round " << round << ": both succeeded: " << describe(first) << " / " << describe(second);
        EXPECT_TRUE(first_won || second_won)
            << "round " << round << ": neither succeeded: " << describe(first) << " / " << describe(second);
        // The loser was refused: 409 by the check, or 401/403 when the winner's change came first.
        for (const Response* r : {&first, &second}) {
            if (r->status != 200 && r->status != 204) {
                EXPECT_TRUE(r->status == 409 || r->status == 401 || r->status == 403) << describe(*r);
            }
        }
        const UserInfo& survivor = first_won ? keeper : other;
        std::size_t admins = 0;
        for (const auto& u : Api(port, survivor.token).list_all(kUsers))
            admins += text(u, "role") == "admin" ? 1 : 0;
        EXPECT_EQ(admins, 1u) << "round " << round;
        keeper = survivor;
    }
}

// ============================================================================= validation

class Validation : public FleetTest {};

struct Invalid {
    std::string what;
    std::string method;
    std::string target;
    std::string body;   // JSON text
    std::string field;  // the field the 422 must name
};

TEST_F(Validation, invalid_fields_answer_422_naming_them_and_write_nothing) {
    FleetTenant t = new_tenant("fl-valid");
    Api api = t.api();
    const json::object vehicle = api.create(kVehicles, vehicle_body());
    const json::object driver = api.create(kDrivers, driver_body());
    const std::string v_id = text(vehicle, "id");
    const std::string d_id = text(driver, "id");
    const json::object trip = api.create(kTrips, trip_body(v_id, d_id));
    const std::string v_at = kVehicles + "/" + v_id;
    const std::string d_at = kDrivers + "/" + d_id;
    const std::string t_at = kTrips + "/" + text(trip, "id");
    const std::string u_at = kUsers + "/" + t.info.admin_id;
    const std::string refs = R"("vehicle_id":")" + v_id + R"(","driver_id":")" + d_id + R"(",)";
    const std::string route = R"("origin":"A","destination":"B")";

    const std::vector<Invalid> cases = {
        // Missing required fields.
        {"vehicle without plate", "POST", kVehicles, R"({"make":"Ford"})", "plate"},
        {"empty vehicle", "POST", kVehicles, "{}", "plate"},
        {"driver without name", "POST", kDrivers, R"({"license_number":"L-1"})", "name"},
        {"driver without licence", "POST", kDrivers, R"({"name":"N"})", "license_number"},
        {"trip without vehicle", "POST", kTrips, R"({"driver_id":")" + d_id + R"(",)" + route + "}", "vehicle_id"},
        {"trip without driver", "POST", kTrips, R"({"vehicle_id":")" + v_id + R"(",)" + route + "}", "driver_id"},
        {"trip without origin", "POST", kTrips, "{" + refs + R"("destination":"B"})", "origin"},
        {"trip without destination", "POST", kTrips, "{" + refs + R"("origin":"A"})", "destination"},
        {"user without password", "POST", kUsers, R"({"email":"np@x.test","name":"N","role":"viewer"})", "password"},
        {"user without email", "POST", kUsers, R"({"name":"N","role":"viewer","password":"long-enough-pw"})", "email"},
        {"user without role", "POST", kUsers, R"({"email":"nr@x.test","name":"N","password":"long-enough-pw"})",
         "role"},
        // Wrong JSON types.
        {"plate as number", "POST", kVehicles, R"({"plate":12})", "plate"},
        {"year as string", "POST", kVehicles, R"({"plate":"T-1","year":"2020"})", "year"},
        {"year with a fraction", "POST", kVehicles, R"({"plate":"T-1","year":2020.5})", "year"},
        {"odometer as bool", "POST", kVehicles, R"({"plate":"T-1","odometer_km":true})", "odometer_km"},
        {"status as array", "POST", kVehicles, R"({"plate":"T-1","status":["active"]})", "status"},
        {"driver name as object", "POST", kDrivers, R"({"name":{},"license_number":"L-2"})", "name"},
        {"distance as string", "POST", kTrips, "{" + refs + route + R"(,"distance_km":"12"})", "distance_km"},
        {"vehicle_id not a UUID", "POST", kTrips, R"({"vehicle_id":"v-1","driver_id":")" + d_id + R"(",)" + route + "}",
         "vehicle_id"},
        {"driver_id as number", "POST", kTrips, R"({"vehicle_id":")" + v_id + R"(","driver_id":7,)" + route + "}",
         "driver_id"},
        {"scheduled_at not RFC 3339", "POST", kTrips, "{" + refs + route + R"(,"scheduled_at":"tomorrow"})",
         "scheduled_at"},
        {"started_at without offset", "POST", kTrips, "{" + refs + route + R"(,"started_at":"2026-03-01T08:00:00"})",
         "started_at"},
        {"role as number", "POST", kUsers, R"({"email":"r@x.test","name":"N","role":1,"password":"long-enough-pw"})",
         "role"},
        // Out of range.
        {"year 1800", "POST", kVehicles, R"({"plate":"T-1","year":1800})", "year"},
        {"year 2101", "POST", kVehicles, R"({"plate":"T-1","year":2101})", "year"},
        {"odometer -1", "POST", kVehicles, R"({"plate":"T-1","odometer_km":-1})", "odometer_km"},
        {"vin of 16 characters", "POST", kVehicles, R"({"plate":"T-1","vin":"1FTBW3XM6HKA1234"})", "vin"},
        {"vin of 18 characters", "POST", kVehicles, R"({"plate":"T-1","vin":"1FTBW3XM6HKA123456"})", "vin"},
        {"empty plate", "POST", kVehicles, R"({"plate":""})", "plate"},
        {"blank plate", "POST", kVehicles, R"({"plate":"   "})", "plate"},
        {"blank driver name", "POST", kDrivers, R"({"name":"\t \n","license_number":"L-3"})", "name"},
        {"blank trip origin", "POST", kTrips, "{" + refs + R"("origin":" ","destination":"B"})", "origin"},
        {"blank vehicle make in a patch", "PATCH", v_at, R"({"make":"  "})", "make"},
        {"plate of 21 characters", "POST", kVehicles, R"({"plate":"ABCDEFGHIJKLMNOPQRSTU"})", "plate"},
        {"distance -1", "POST", kTrips, "{" + refs + route + R"(,"distance_km":-1})", "distance_km"},
        {"distance 100001", "POST", kTrips, "{" + refs + route + R"(,"distance_km":100001})", "distance_km"},
        {"a date that does not exist", "POST", kTrips,
         "{" + refs + route + R"(,"scheduled_at":"2026-02-30T08:00:00Z"})", "scheduled_at"},
        {"completed before started", "POST", kTrips,
         "{" + refs + route + R"(,"started_at":"2026-03-01T10:00:00Z","completed_at":"2026-03-01T09:00:00Z"})",
         "completed_at"},
        {"password of 11 characters", "POST", kUsers,
         R"({"email":"p@x.test","name":"N","role":"viewer","password":"eleven-char"})", "password"},
        {"password of 129 characters", "POST", kUsers,
         R"({"email":"p@x.test","name":"N","role":"viewer","password":")" + std::string(129, 'p') + R"("})",
         "password"},
        {"email without @", "POST", kUsers,
         R"({"email":"nobody","name":"N","role":"viewer","password":"long-enough-pw"})", "email"},
        {"driver email without @", "POST", kDrivers, R"({"name":"N","license_number":"L-3","email":"nobody"})",
         "email"},
        // Bad enums.
        {"vehicle status", "POST", kVehicles, R"({"plate":"T-1","status":"parked"})", "status"},
        {"vehicle status in capitals", "POST", kVehicles, R"({"plate":"T-1","status":"ACTIVE"})", "status"},
        {"driver status", "POST", kDrivers, R"({"name":"N","license_number":"L-4","status":"retired"})", "status"},
        {"trip status", "POST", kTrips, "{" + refs + route + R"(,"status":"done"})", "status"},
        {"user role", "POST", kUsers, R"({"email":"o@x.test","name":"N","role":"owner","password":"long-enough-pw"})",
         "role"},
        // Unknown fields.
        {"unknown vehicle field", "POST", kVehicles, R"({"plate":"T-1","colour":"red"})", "colour"},
        {"id in a POST", "POST", kVehicles, R"({"plate":"T-1","id":")" + random_uuid() + R"("})", "id"},
        {"unknown driver field", "POST", kDrivers, R"({"name":"N","license_number":"L-5","age":40})", "age"},
        {"unknown trip field", "POST", kTrips, "{" + refs + route + R"(,"cargo":"steel"})", "cargo"},
        {"password_hash in a POST", "POST", kUsers,
         R"({"email":"h@x.test","name":"N","role":"viewer","password":"long-enough-pw","password_hash":"x"})",
         "password_hash"},
        // PATCH: the same rules, and null only where a field is optional.
        {"PATCH plate null", "PATCH", v_at, R"({"plate":null})", "plate"},
        {"PATCH status null", "PATCH", v_at, R"({"status":null})", "status"},
        {"PATCH year 1800", "PATCH", v_at, R"({"year":1800})", "year"},
        {"PATCH odometer -1", "PATCH", v_at, R"({"odometer_km":-1})", "odometer_km"},
        {"PATCH vin of 16", "PATCH", v_at, R"({"vin":"1FTBW3XM6HKA1234"})", "vin"},
        {"PATCH unknown field", "PATCH", v_at, R"({"colour":"red"})", "colour"},
        {"PATCH created_at", "PATCH", v_at, R"({"created_at":"2020-01-01T00:00:00Z"})", "created_at"},
        {"PATCH driver name null", "PATCH", d_at, R"({"name":null})", "name"},
        {"PATCH driver status", "PATCH", d_at, R"({"status":"away"})", "status"},
        {"PATCH trip vehicle_id null", "PATCH", t_at, R"({"vehicle_id":null})", "vehicle_id"},
        {"PATCH trip distance -1", "PATCH", t_at, R"({"distance_km":-1})", "distance_km"},
        {"PATCH trip status", "PATCH", t_at, R"({"status":"lost"})", "status"},
        {"PATCH user name null", "PATCH", u_at, R"({"name":null})", "name"},
        {"PATCH user role", "PATCH", u_at, R"({"role":"root"})", "role"},
        {"PATCH user password short", "PATCH", u_at, R"({"password":"short"})", "password"},
    };

    auto count_all = [&] {
        std::map<std::string, std::size_t> counts;
        for (const auto& path : {kUsers, kVehicles, kDrivers, kTrips})
            counts[path] = api.list_ids(path).size();
        return counts;
    };
    const auto counts = count_all();
    const json::object vehicle_before = object_of(api.get(v_at));
    const json::object driver_before = object_of(api.get(d_at));
    const json::object trip_before = object_of(api.get(t_at));
    const json::object user_before = object_of(api.get(u_at));

    for (const auto& c : cases) {
        Response r = api.send(c.method, c.target, c.body);
        EXPECT_TRUE(names_field(r, 422, c.field)) << c.what << ": " << c.method << " " << c.target << " " << c.body;
    }
    // Several problems are reported together.
    Response many = api.post(kVehicles, json::parse(R"({"year":1800,"status":"parked","colour":"red"})").as_object());
    for (const char* field : {"plate", "year", "status", "colour"})
        EXPECT_TRUE(names_field(many, 422, field)) << field;

    EXPECT_EQ(count_all(), counts) << "a rejected POST created something";
    EXPECT_EQ(object_of(api.get(v_at)), vehicle_before) << "a rejected PATCH changed the vehicle";
    EXPECT_EQ(object_of(api.get(d_at)), driver_before) << "a rejected PATCH changed the driver";
    EXPECT_EQ(object_of(api.get(t_at)), trip_before) << "a rejected PATCH changed the trip";
    EXPECT_EQ(object_of(api.get(u_at)), user_before) << "a rejected PATCH changed the user";
}

TEST_F(Validation, bodies_that_are_not_json_objects_answer_400_or_415) {
    FleetTenant t = new_tenant("fl-bodies");
    Api api = t.api();
    const json::object vehicle = api.create(kVehicles, vehicle_body());
    const std::string v_at = kVehicles + "/" + text(vehicle, "id");
    const std::string valid = to_json(vehicle_body());

    struct Case {
        std::string what;
        std::string method;
        std::string target;
        std::string body;
        std::string content_type;
        int status;
    };
    const std::vector<Case> cases = {
        {"malformed JSON", "POST", kVehicles, R"({"plate":)", "application/json", 400},
        {"trailing garbage", "POST", kVehicles, R"({"plate":"T-1"} x)", "application/json", 400},
        {"single quotes", "POST", kVehicles, R"({'plate':'T-1'})", "application/json", 400},
        {"a JSON array", "POST", kVehicles, "[" + valid + "]", "application/json", 400},
        {"an empty array", "POST", kVehicles, "[]", "application/json", 400},
        {"JSON null", "POST", kVehicles, "null", "application/json", 400},
        {"a JSON number", "POST", kVehicles, "42", "application/json", 400},
        {"a JSON string", "POST", kVehicles, R"("plate")", "application/json", 400},
        {"an empty body", "POST", kVehicles, "", "application/json", 400},
        {"invalid UTF-8 (0xff)", "POST", kVehicles, "{\"plate\":\"T-\xff\"}", "application/json", 400},
        {"invalid UTF-8 (truncated sequence)", "POST", kVehicles, "{\"plate\":\"T-\xc3\"}", "application/json", 400},
        {"invalid UTF-8 (encoded surrogate)", "POST", kVehicles, "{\"plate\":\"T-\xed\xa0\x80\"}", "application/json",
         400},
        {"invalid UTF-8 (overlong)", "POST", kVehicles, "{\"plate\":\"T-\xc0\xaf\"}", "application/json", 400},
        {"nested 100 levels", "POST", kVehicles, "{\"plate\":" + std::string(100, '[') + std::string(100, ']') + "}",
         "application/json", 400},
        {"text/plain", "POST", kVehicles, valid, "text/plain", 415},
        {"no content type", "POST", kVehicles, valid, "", 415},
        {"form encoded", "POST", kVehicles, "plate=T-1", "application/x-www-form-urlencoded", 415},
        {"application/jsonx", "POST", kVehicles, valid, "application/jsonx", 415},
        {"PATCH malformed", "PATCH", v_at, R"({"model":)", "application/json", 400},
        {"PATCH array", "PATCH", v_at, "[]", "application/json", 400},
        {"PATCH empty body", "PATCH", v_at, "", "application/json", 400},
        {"PATCH invalid UTF-8", "PATCH", v_at, "{\"model\":\"\xff\"}", "application/json", 400},
        {"PATCH text/plain", "PATCH", v_at, R"({"model":"X"})", "text/plain", 415},
        {"users POST array", "POST", kUsers, "[]", "application/json", 400},
        {"drivers POST text/plain", "POST", kDrivers, to_json(driver_body()), "text/plain", 415},
        {"trips POST malformed", "POST", kTrips, "{", "application/json", 400},
    };
    for (const auto& c : cases) {
        Response r = api.send(c.method, c.target, c.body, c.content_type);
        EXPECT_TRUE(is_problem(r, c.status)) << c.what;
    }
    EXPECT_EQ(api.list_ids(kVehicles).size(), 1u) << "a rejected body created a vehicle";
    EXPECT_EQ(object_of(api.get(v_at)), vehicle) << "a rejected body changed the vehicle";

    // The charset parameter is fine, and so is the media type in capitals.
    EXPECT_EQ(api.send("POST", kVehicles, to_json(vehicle_body()), "application/json; charset=utf-8").status, 201);
    EXPECT_EQ(api.send("POST", kVehicles, to_json(vehicle_body()), "Application/JSON").status, 201);
}

TEST_F(Validation, unique_columns_answer_409_naming_the_field) {
    FleetTenant t = new_tenant("fl-unique");
    Api api = t.api();

    const json::object first = api.create(kVehicles, vehicle_body());
    json::object dup = vehicle_body();
    dup["plate"] = first.at("plate");
    EXPECT_TRUE(names_field(api.post(kVehicles, dup), 409, "plate"));
    const json::object second = api.create(kVehicles, vehicle_body());
    json::object to_dup;
    to_dup["plate"] = first.at("plate");
    EXPECT_TRUE(names_field(api.patch(kVehicles + "/" + text(second, "id"), to_dup), 409, "plate"));
    EXPECT_EQ(object_of(api.get(kVehicles + "/" + text(second, "id"))), second);
    EXPECT_EQ(api.list_ids(kVehicles).size(), 2u);

    const json::object driver = api.create(kDrivers, driver_body());
    json::object dup_driver = driver_body();
    dup_driver["license_number"] = driver.at("license_number");
    EXPECT_TRUE(names_field(api.post(kDrivers, dup_driver), 409, "license_number"));
    const json::object driver2 = api.create(kDrivers, driver_body());
    json::object to_dup_driver;
    to_dup_driver["license_number"] = driver.at("license_number");
    EXPECT_TRUE(names_field(api.patch(kDrivers + "/" + text(driver2, "id"), to_dup_driver), 409, "license_number"));
    EXPECT_EQ(api.list_ids(kDrivers).size(), 2u);

    // Email addresses are unique whatever their capitalisation.
    json::object user = user_body("viewer");
    std::string email = text(user, "email");
    user["email"] = "Mixed." + email;
    const json::object created = api.create(kUsers, user);
    std::string upper = "MIXED." + email;
    std::transform(upper.begin(), upper.end(), upper.begin(),
                   [](char c) { return static_cast<char>(std::toupper(c)); });
    json::object dup_user = user_body("viewer");
    dup_user["email"] = upper;
    EXPECT_TRUE(names_field(api.post(kUsers, dup_user), 409, "email"));
    json::object dup_admin = user_body("viewer");
    std::string admin_upper = t.info.admin_email;
    std::transform(admin_upper.begin(), admin_upper.end(), admin_upper.begin(),
                   [](char c) { return static_cast<char>(std::toupper(c)); });
    dup_admin["email"] = admin_upper;
    EXPECT_TRUE(names_field(api.post(kUsers, dup_admin), 409, "email")) << "the tenant admin's address";
    json::object to_dup_user;
    to_dup_user["email"] = t.info.admin_email;
    EXPECT_TRUE(names_field(api.patch(kUsers + "/" + text(created, "id"), to_dup_user), 409, "email"));
    EXPECT_EQ(api.list_ids(kUsers).size(), 2u);
}

TEST_F(Validation, path_ids_that_are_not_uuids_answer_404) {
    FleetTenant t = new_tenant("fl-pathid");
    Api api = t.api();
    const std::string v_id = text(api.create(kVehicles, vehicle_body()), "id");
    const std::vector<std::string> bad = {"123",
                                          "not-a-uuid",
                                          v_id.substr(0, 35),
                                          v_id + "0",
                                          v_id.substr(0, 8) + v_id.substr(9),
                                          "%20",
                                          "00000000-0000-0000-0000-00000000000g",
                                          "1%27%20OR%20%271%27%3D%271"};
    const auto change = json::parse(R"({"name":"X"})").as_object();
    for (const auto& path : {kUsers, kVehicles, kDrivers, kTrips}) {
        for (const auto& id : bad) {
            const std::string target = path + "/" + id;
            EXPECT_TRUE(is_problem(api.get(target), 404)) << "GET " << target;
            EXPECT_TRUE(is_problem(api.patch(target, change), 404)) << "PATCH " << target;
            EXPECT_TRUE(is_problem(api.del(target), 404)) << "DELETE " << target;
        }
        // A well-formed id that names nothing.
        EXPECT_TRUE(is_problem(api.get(path + "/" + random_uuid()), 404)) << path;
    }
    EXPECT_EQ(api.get(kVehicles + "/" + v_id).status, 200) << "nothing was deleted";
}

// A trip's vehicle and driver must exist (422 naming the field); a vehicle or driver that trips
// reference cannot be deleted (409) until those trips are.
TEST_F(Validation, trip_references_must_exist_and_keep_their_vehicle_and_driver) {
    FleetTenant t = new_tenant("fl-tripref");
    Api api = t.api();
    const std::string v = text(api.create(kVehicles, vehicle_body()), "id");
    const std::string d = text(api.create(kDrivers, driver_body()), "id");

    EXPECT_TRUE(names_field(api.post(kTrips, trip_body(random_uuid(), d)), 422, "vehicle_id"));
    EXPECT_TRUE(names_field(api.post(kTrips, trip_body(v, random_uuid())), 422, "driver_id"));
    EXPECT_TRUE(api.list_ids(kTrips).empty()) << "a trip naming a missing vehicle or driver was created";

    const json::object trip = api.create(kTrips, trip_body(v, d));
    const std::string trip_at = kTrips + "/" + text(trip, "id");
    json::object to_missing_vehicle;
    to_missing_vehicle["vehicle_id"] = random_uuid();
    EXPECT_TRUE(names_field(api.patch(trip_at, to_missing_vehicle), 422, "vehicle_id"));
    json::object to_missing_driver;
    to_missing_driver["driver_id"] = random_uuid();
    EXPECT_TRUE(names_field(api.patch(trip_at, to_missing_driver), 422, "driver_id"));
    EXPECT_EQ(object_of(api.get(trip_at)), trip);

    EXPECT_TRUE(is_problem(api.del(kVehicles + "/" + v), 409)) << "a vehicle a trip references";
    EXPECT_TRUE(is_problem(api.del(kDrivers + "/" + d), 409)) << "a driver a trip references";
    EXPECT_EQ(api.get(kVehicles + "/" + v).status, 200);
    EXPECT_EQ(api.get(kDrivers + "/" + d).status, 200);
    EXPECT_EQ(object_of(api.get(trip_at)), trip);

    ASSERT_EQ(api.del(trip_at).status, 204);
    EXPECT_EQ(api.del(kVehicles + "/" + v).status, 204) << "no trip references it any more";
    EXPECT_EQ(api.del(kDrivers + "/" + d).status, 204);
}

// Values that pass JSON parsing but that PostgreSQL cannot hold as sent. Either the API stores
// them exactly as sent, or it refuses them with a 422 naming the field: never a value cut short,
// never a 422 that only says "body".
//   - U+0000 in a string: PostgreSQL text cannot hold it, and the database driver passes
//     parameters as C strings, so the value would end at the NUL.
//   - RFC 3339 offsets out of range (+99:00, +05:99) or beyond PostgreSQL's ±15:59.
TEST_F(Validation, values_the_database_cannot_hold_are_refused_naming_their_field) {
    FleetTenant t = new_tenant("fl-nul");
    Api api = t.api();
    const std::string vehicle = text(api.create(kVehicles, vehicle_body()), "id");
    const std::string driver = text(api.create(kDrivers, driver_body()), "id");
    const std::string refs =
        R"({"vehicle_id":")" + vehicle + R"(","driver_id":")" + driver + R"(","origin":"A","destination":"B",)";

    struct Case {
        std::string method;
        std::string target;
        std::string field;
        std::string body;
        std::optional<std::string> stored;  // when accepted, the value the answer must show
    };
    const std::string nul = std::string("NUL\0", 4) + "X";
    const std::vector<Case> cases = {
        {"POST", kVehicles, "plate", R"({"plate":"NUL\u0000X"})", nul},
        {"POST", kVehicles, "model", R"({"plate":"NUL-M","model":"NUL\u0000X"})", nul},
        {"POST", kDrivers, "license_number", R"({"name":"N","license_number":"NUL\u0000X"})", nul},
        {"POST", kTrips, "origin",
         R"({"vehicle_id":")" + vehicle + R"(","driver_id":")" + driver +
             R"(","origin":"NUL\u0000X","destination":"B"})",
         nul},
        {"PATCH", kVehicles + "/" + vehicle, "make", R"({"make":"NUL\u0000X"})", nul},
        {"PATCH", kDrivers + "/" + driver, "name", R"({"name":"NUL\u0000X"})", nul},
        {"POST", kTrips, "scheduled_at", refs + R"("scheduled_at":"2026-03-01T08:00:00+99:00"})", std::nullopt},
        {"POST", kTrips, "started_at", refs + R"("started_at":"2026-03-01T08:00:00+05:99"})", std::nullopt},
        {"POST", kTrips, "completed_at", refs + R"("completed_at":"2026-03-01T08:00:00-23:59"})", std::nullopt},
    };
    for (const auto& c : cases) {
        Response r = api.send(c.method, c.target, c.body);
        const std::string what = c.method + " " + c.target + " " + c.body;
        if (r.status == 200 || r.status == 201) {
            if (c.stored) {
                EXPECT_EQ(text(object_of(r), c.field), *c.stored) << what << " stored something else: " << r.body;
            }
        } else {
            EXPECT_TRUE(names_field(r, 422, c.field)) << what;
        }
    }
}

// POST refuses a trip completed before it started; a PATCH must not reach that state either
// (by changing one of the two timestamps of a stored trip).
TEST_F(Validation, a_patch_cannot_make_a_trip_complete_before_it_started) {
    FleetTenant t = new_tenant("fl-tripts");
    Api api = t.api();
    const std::string v = text(api.create(kVehicles, vehicle_body()), "id");
    const std::string d = text(api.create(kDrivers, driver_body()), "id");
    json::object body = trip_body(v, d, "in_progress");
    body["started_at"] = "2026-03-01T10:00:00.000000Z";
    const json::object trip = api.create(kTrips, body);
    const std::string at = kTrips + "/" + text(trip, "id");

    EXPECT_TRUE(names_field(api.patch(at, json::parse(R"({"completed_at":"2026-03-01T09:00:00Z"})").as_object()), 422,
                            "completed_at"))
        << "completed_at before the stored started_at";
    ASSERT_EQ(api.patch(at, json::parse(R"({"completed_at":"2026-03-01T11:00:00Z"})").as_object()).status, 200);
    Response later_start = api.patch(at, json::parse(R"({"started_at":"2026-03-01T12:00:00Z"})").as_object());
    EXPECT_EQ(later_start.status, 422) << "started_at after the stored completed_at: " << describe(later_start);
    Response now = api.get(at);
    ASSERT_EQ(now.status, 200);
    EXPECT_LE(text(object_of(now), "started_at"), text(object_of(now), "completed_at")) << now.body;
}

// ============================================================================= filters

class Filters : public FleetTest {};

TEST_F(Filters, exact_matches_combine_and_bad_parameters_answer_400) {
    FleetTenant t = new_tenant("fl-filter");
    Api api = t.api();
    auto create = [&](const std::string& path, const json::object& body) { return text(api.create(path, body), "id"); };
    const std::string va1 = create(kVehicles, vehicle_body("active"));
    const std::string vm = create(kVehicles, vehicle_body("maintenance"));
    const std::string va2 = create(kVehicles, vehicle_body("active"));
    const std::string vr = create(kVehicles, vehicle_body("retired"));
    const std::string da = create(kDrivers, driver_body("active"));
    const std::string di = create(kDrivers, driver_body("inactive"));
    const std::string t1 = create(kTrips, trip_body(va1, da, "planned"));
    const std::string t2 = create(kTrips, trip_body(va1, di, "completed"));
    const std::string t3 = create(kTrips, trip_body(vm, da, "planned"));
    const std::string t4 = create(kTrips, trip_body(vm, di, "cancelled"));

    using Ids = std::vector<std::string>;
    struct Case {
        std::string path;
        std::string query;
        Ids expected;  // newest first
    };
    const std::vector<Case> cases = {
        {kVehicles, "", {vr, va2, vm, va1}},
        {kVehicles, "status=active", {va2, va1}},
        {kVehicles, "status=maintenance", {vm}},
        {kVehicles, "status=retired", {vr}},
        {kDrivers, "status=active", {da}},
        {kDrivers, "status=inactive", {di}},
        {kTrips, "status=planned", {t3, t1}},
        {kTrips, "status=completed", {t2}},
        {kTrips, "status=in_progress", {}},
        {kTrips, "vehicle_id=" + va1, {t2, t1}},
        {kTrips, "vehicle_id=" + va2, {}},
        {kTrips, "driver_id=" + da, {t3, t1}},
        {kTrips, "vehicle_id=" + vm + "&driver_id=" + di, {t4}},
        {kTrips, "status=planned&vehicle_id=" + vm, {t3}},
        {kTrips, "status=planned&vehicle_id=" + vm + "&driver_id=" + di, {}},
        {kTrips, "status=cancelled&driver_id=" + di, {t4}},
        {kTrips, "vehicle_id=" + random_uuid(), {}},
    };
    for (const auto& c : cases)
        EXPECT_EQ(api.list_ids(c.path, c.query), c.expected) << c.path << "?" << c.query;

    const std::vector<std::string> bad = {
        // Values outside a filter's domain.
        kVehicles + "?status=parked", kVehicles + "?status=", kVehicles + "?status=ACTIVE",
        kDrivers + "?status=retired", kTrips + "?status=done", kTrips + "?vehicle_id=abc", kTrips + "?driver_id=123",
        kTrips + "?vehicle_id=",
        // Parameters a list does not have.
        kVehicles + "?colour=red", kVehicles + "?vehicle_id=" + va1, kVehicles + "?Status=active",
        kDrivers + "?sort=name", kUsers + "?status=active", kUsers + "?role=admin", kTrips + "?offset=10",
        kVehicles + "?page=2"};
    for (const auto& target : bad)
        EXPECT_TRUE(is_problem(api.get(target), 400)) << target;
}

// ============================================================================= pagination

class Pagination : public FleetTest {};

struct Page {
    std::vector<json::object> items;
    std::string next_cursor;  // "" when null
    std::string link;         // the Link header
};

Page read_page(const Api& api, const std::string& target) {
    Page p;
    Response r = api.get(target);
    EXPECT_EQ(r.status, 200) << target << ": " << describe(r);
    if (r.status != 200) return p;
    json::object body = object_of(r);
    for (const auto& item : body.at("data").as_array())
        p.items.push_back(item.as_object());
    const json::value& next = body.at("next_cursor");
    EXPECT_TRUE(next.is_null() || (next.is_string() && !next.as_string().empty())) << r.body;
    if (next.is_string()) p.next_cursor = std::string(next.as_string());
    p.link = r.header("Link");
    EXPECT_LE(r.header_count("Link"), 1u);
    return p;
}

// The target of `Link: <…>; rel="next"` (an absolute URL is reduced to its path and query).
std::string link_target(const std::string& link) {
    auto open = link.find('<');
    auto close = link.find('>');
    if (open == std::string::npos || close == std::string::npos || close < open) return {};
    std::string url = link.substr(open + 1, close - open - 1);
    if (auto scheme = url.find("://"); scheme != std::string::npos) {
        auto path = url.find('/', scheme + 3);
        url = path == std::string::npos ? "/" : url.substr(path);
    }
    return url;
}

bool rel_next(const std::string& link) {
    return link.find("rel=\"next\"") != std::string::npos || link.find("rel=next") != std::string::npos;
}

// (created_at, id) of each item strictly decreasing.
::testing::AssertionResult newest_first(const std::vector<json::object>& items) {
    for (std::size_t i = 1; i < items.size(); ++i) {
        auto key = [&](std::size_t k) { return std::make_pair(text(items[k], "created_at"), text(items[k], "id")); };
        if (!(key(i) < key(i - 1)))
            return ::testing::AssertionFailure()
                   << "item " << i << " " << to_json(items[i]) << " is not older than " << to_json(items[i - 1]);
    }
    return ::testing::AssertionSuccess();
}

std::vector<std::string> create_vehicles(const Api& api, int n) {
    std::vector<std::string> ids;
    for (int i = 0; i < n; ++i)
        ids.push_back(text(api.create(kVehicles, vehicle_body(i % 3 == 0 ? "maintenance" : "active")), "id"));
    return ids;
}

TEST_F(Pagination, walking_250_rows_in_pages_of_7_returns_each_once_newest_first) {
    FleetTenant t = new_tenant("fl-page");
    Api api = t.api();
    std::vector<std::string> created = create_vehicles(api, 250);
    const std::vector<std::string> expected(created.rbegin(), created.rend());  // newest first

    std::vector<json::object> walked;
    std::string target = kVehicles + "?limit=7";
    int pages = 0;
    while (!target.empty() && pages < 100) {
        Page p = read_page(api, target);
        ++pages;
        walked.insert(walked.end(), p.items.begin(), p.items.end());
        if (p.next_cursor.empty()) {
            EXPECT_EQ(p.items.size(), 250u % 7) << "the last page";
            EXPECT_TRUE(p.link.empty()) << "no Link on the last page: " << p.link;
            break;
        }
        EXPECT_EQ(p.items.size(), 7u) << "page " << pages;
        EXPECT_TRUE(rel_next(p.link)) << "page " << pages << " Link: '" << p.link << "'";
        // Alternately follow the Link header and next_cursor: both lead to the same page.
        if (pages % 2 == 1) {
            target = link_target(p.link);
            EXPECT_NE(target.find("cursor="), std::string::npos) << p.link;
        } else {
            target = kVehicles + "?limit=7&cursor=" + p.next_cursor;
        }
    }
    EXPECT_EQ(pages, (250 + 6) / 7);
    std::vector<std::string> ids;
    for (const auto& item : walked)
        ids.push_back(text(item, "id"));
    EXPECT_EQ(as_set(ids).size(), ids.size()) << "a row was returned twice";
    EXPECT_EQ(ids, expected) << "each row once, newest first";
    EXPECT_TRUE(newest_first(walked));

    // Limits: 1 to 100, default 20; anything else is a 400.
    EXPECT_EQ(read_page(api, kVehicles).items.size(), 20u) << "the default";
    EXPECT_EQ(read_page(api, kVehicles + "?limit=1").items.size(), 1u);
    Page hundred = read_page(api, kVehicles + "?limit=100");
    EXPECT_EQ(hundred.items.size(), 100u);
    EXPECT_FALSE(hundred.next_cursor.empty());
    for (const char* limit : {"0", "101", "-1", "abc", "", "1.5", "7x", "2147483648", "99999999999999999999", "%2B5"})
        EXPECT_TRUE(is_problem(api.get(kVehicles + "?limit=" + limit), 400)) << "limit=" << limit;
}

TEST_F(Pagination, rows_inserted_while_walking_duplicate_nothing_and_skip_nothing) {
    FleetTenant t = new_tenant("fl-pagemv");
    Api api = t.api();
    const std::vector<std::string> before = create_vehicles(api, 60);

    std::vector<std::string> seen;
    std::vector<json::object> walked;
    std::string cursor;
    for (int page = 0; page < 100; ++page) {
        Page p = read_page(api, kVehicles + "?limit=7" + (cursor.empty() ? "" : "&cursor=" + cursor));
        for (const auto& item : p.items)
            seen.push_back(text(item, "id"));
        walked.insert(walked.end(), p.items.begin(), p.items.end());
        create_vehicles(api, 3);  // newer than every row of the walk
        if (p.next_cursor.empty()) break;
        cursor = p.next_cursor;
    }
    EXPECT_EQ(as_set(seen).size(), seen.size()) << "a row was returned twice";
    for (const auto& id : before)
        EXPECT_EQ(std::count(seen.begin(), seen.end(), id), 1) << "pre-existing row " << id;
    EXPECT_TRUE(newest_first(walked));
    EXPECT_EQ(api.list_ids(kVehicles).size(), 60u + 3u * ((60 + 6) / 7)) << "every insert happened";
}

// Cursors are opaque and tamper-evident, and bound to the tenant, the list and the filters.
TEST_F(Pagination, modified_and_replayed_cursors_answer_400) {
    FleetTenant a = new_tenant("fl-cursa");
    FleetTenant b = new_tenant("fl-cursb");
    Api api = a.api();
    Api other = b.api();
    create_vehicles(api, 3);  // maintenance, active, active
    create_vehicles(other, 3);
    api.create(kVehicles, vehicle_body("retired"));
    api.create(kVehicles, vehicle_body("retired"));
    api.create(kDrivers, driver_body());
    api.create(kDrivers, driver_body());

    auto cursor_of = [](const Api& c, const std::string& target) {
        Page p = read_page(c, target);
        EXPECT_FALSE(p.next_cursor.empty()) << target << " has a next page";
        return p.next_cursor;
    };
    const std::string all = cursor_of(api, kVehicles + "?limit=1");
    const std::string active = cursor_of(api, kVehicles + "?limit=1&status=active");
    const std::string drivers = cursor_of(api, kDrivers + "?limit=1");
    const std::string of_b = cursor_of(other, kVehicles + "?limit=1");
    const std::string tenants =
        cursor_of(Api(api.port(), IdentityEnv::get().admin_token()), "/api/v1/admin/tenants?limit=1");

    // Each cursor works where it was issued.
    EXPECT_EQ(api.get(kVehicles + "?limit=1&cursor=" + all).status, 200);
    EXPECT_EQ(api.get(kVehicles + "?limit=1&status=active&cursor=" + active).status, 200);
    EXPECT_EQ(api.get(kDrivers + "?limit=1&cursor=" + drivers).status, 200);
    EXPECT_EQ(other.get(kVehicles + "?limit=1&cursor=" + of_b).status, 200);

    // Any one character changed.
    int modified = 0;
    for (std::size_t i = 0; i < all.size(); ++i) {
        std::string bad = all;
        bad[i] = bad[i] == 'A' ? 'B' : 'A';
        EXPECT_TRUE(is_problem(api.get(kVehicles + "?limit=1&cursor=" + bad), 400)) << "character " << i << ": " << bad;
        ++modified;
    }
    EXPECT_GT(modified, 20);
    for (const std::string& bad : {all.substr(0, all.size() - 1), all + "A", std::string("abc"),
                                   all.substr(0, all.find('.')), std::string("%00")})
        EXPECT_TRUE(is_problem(api.get(kVehicles + "?limit=1&cursor=" + bad), 400)) << "cursor=" << bad;

    const std::vector<std::pair<std::string, std::string>> replays = {
        {"tenant B's cursor used by tenant A", kVehicles + "?limit=1&cursor=" + of_b},
        {"a vehicles cursor on drivers", kDrivers + "?limit=1&cursor=" + all},
        {"a vehicles cursor on trips", kTrips + "?limit=1&cursor=" + all},
        {"a vehicles cursor on users", kUsers + "?limit=1&cursor=" + all},
        {"a drivers cursor on vehicles", kVehicles + "?limit=1&cursor=" + drivers},
        {"the admin tenant list's cursor on vehicles", kVehicles + "?limit=1&cursor=" + tenants},
        {"status=active cursor with status=retired", kVehicles + "?limit=1&status=retired&cursor=" + active},
        {"status=active cursor without the filter", kVehicles + "?limit=1&cursor=" + active},
        {"unfiltered cursor with status=active", kVehicles + "?limit=1&status=active&cursor=" + all},
    };
    for (const auto& [what, target] : replays)
        EXPECT_TRUE(is_problem(api.get(target), 400)) << what;
    EXPECT_TRUE(is_problem(other.get(kVehicles + "?limit=1&cursor=" + all), 400)) << "tenant A's cursor used by B";
}

}  // namespace
}  // namespace mtapi::fleettest
