#include "fleet_support.hpp"

#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <cctype>
#include <stdexcept>

#include "util/uuid.hpp"

namespace mtapi::fleettest {
namespace {

[[noreturn]] void fail(const std::string& what) {
    throw std::runtime_error(what);
}

bool is_hex(char c) {
    return std::isxdigit(static_cast<unsigned char>(c)) != 0;
}

Headers headers_for(const std::string& token, const std::string& content_type) {
    Headers h = idtest::bearer(token);
    if (!content_type.empty()) h.emplace_back("Content-Type", content_type);
    return h;
}

}  // namespace

// ----------------------------------------------------------------------------- JSON

json::object object_of(const Response& r) {
    auto body = test::parse_json_object(r.body);
    if (!body) fail("not a JSON object: " + describe(r));
    return std::move(*body);
}

std::string to_json(const json::object& o) {
    return json::serialize(o);
}

std::string text(const json::object& o, std::string_view key) {
    return idtest::str(o, key);
}

bool same_value(const json::value& a, const json::value& b) {
    if (a.is_number() && b.is_number()) return a.to_number<double>() == b.to_number<double>();
    return a == b;
}

std::string comparable_problem(const Response& r) {
    auto body = test::parse_json_object(r.body);
    if (!body) return r.body;
    body->erase("request_id");
    body->erase("instance");
    return json::serialize(*body);
}

::testing::AssertionResult names_field(const Response& r, int status, const std::string& field) {
    auto p = is_problem(r, status);
    if (!p) return p;
    json::object body = object_of(r);
    const json::value* errors = body.if_contains("errors");
    if (errors == nullptr || !errors->is_array()) return ::testing::AssertionFailure() << "no errors array: " << r.body;
    for (const auto& e : errors->as_array()) {
        if (!e.is_object() || text(e.as_object(), "message").empty())
            return ::testing::AssertionFailure() << "an error without a message: " << r.body;
        if (text(e.as_object(), "field") == field) return ::testing::AssertionSuccess();
    }
    return ::testing::AssertionFailure() << "errors do not name '" << field << "': " << r.body;
}

::testing::AssertionResult login_refused(const Response& r) {
    if (r.status == 429) return is_problem(r, 429);
    return is_problem(r, 401);
}

std::vector<std::string> uuids_in(std::string_view text) {
    static constexpr std::size_t kDashes[] = {8, 13, 18, 23};
    std::vector<std::string> out;
    for (std::size_t i = 0; i + 36 <= text.size();) {
        bool match = true;
        for (std::size_t k = 0; k < 36 && match; ++k) {
            bool dash = k == kDashes[0] || k == kDashes[1] || k == kDashes[2] || k == kDashes[3];
            match = dash ? text[i + k] == '-' : is_hex(text[i + k]);
        }
        if (!match) {
            ++i;
            continue;
        }
        std::string id(text.substr(i, 36));
        for (char& c : id)
            c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        out.push_back(std::move(id));
        i += 36;
    }
    return out;
}

std::string random_uuid() {
    return util::to_string(util::uuid_v7());
}

std::string unique(std::string_view prefix) {
    return std::string(prefix) + idtest::random_hex(5);
}

// ----------------------------------------------------------------------------- sample bodies

json::object vehicle_body(std::string_view status) {
    json::object o;
    o["plate"] = unique("PL-");
    o["vin"] = "1FTBW3XM" + idtest::random_hex(5).substr(0, 9);  // 17 characters
    o["make"] = "Ford";
    o["model"] = "Transit";
    o["year"] = 2021;
    o["status"] = status;
    o["odometer_km"] = 12'345;
    return o;
}

json::object driver_body(std::string_view status) {
    json::object o;
    o["name"] = "Dana Driver";
    o["license_number"] = unique("LIC-");
    o["phone"] = "+44 20 7946 0000";
    o["email"] = unique("driver-") + "@fleet.test";
    o["status"] = status;
    return o;
}

json::object trip_body(const std::string& vehicle_id, const std::string& driver_id, std::string_view status) {
    json::object o;
    o["vehicle_id"] = vehicle_id;
    o["driver_id"] = driver_id;
    o["origin"] = "Rotterdam";
    o["destination"] = "Duisburg";
    o["status"] = status;
    o["scheduled_at"] = "2026-03-01T08:00:00.000000Z";
    o["distance_km"] = 231.5;
    return o;
}

json::object user_body(std::string_view role) {
    json::object o;
    o["email"] = unique(std::string(role) + "-") + "@fleet.test";
    o["name"] = "Uma User";
    o["role"] = role;
    o["password"] = "pw-" + idtest::random_hex(10) + "-x";  // 24 characters
    return o;
}

// ----------------------------------------------------------------------------- the tenant API

Response Api::send(std::string_view method, const std::string& target, std::string_view body,
                   const std::string& content_type) const {
    return test::http_request(port_, method, target, headers_for(token_, content_type), body, 30s);
}

Response Api::get(const std::string& target) const {
    return test::http_request(port_, "GET", target, idtest::bearer(token_), {}, 30s);
}

Response Api::post(const std::string& target, const json::object& body) const {
    return send("POST", target, to_json(body));
}

Response Api::patch(const std::string& target, const json::object& body) const {
    return send("PATCH", target, to_json(body));
}

Response Api::del(const std::string& target) const {
    return test::http_request(port_, "DELETE", target, idtest::bearer(token_), {}, 30s);
}

json::object Api::create(const std::string& path, const json::object& body) const {
    Response r = post(path, body);
    if (r.status != 201) fail("POST " + path + " " + to_json(body) + " answered " + describe(r));
    return object_of(r);
}

std::vector<json::object> Api::list_all(const std::string& path, const std::string& query) const {
    std::vector<json::object> items;
    std::string cursor;
    for (int page = 0; page < 10'000; ++page) {
        std::string target = path + "?limit=100";
        if (!query.empty()) target += "&" + query;
        if (!cursor.empty()) target += "&cursor=" + cursor;  // base64url and '.': nothing to escape
        Response r = get(target);
        if (r.status != 200) fail("GET " + target + " answered " + describe(r));
        json::object body = object_of(r);
        const json::value* data = body.if_contains("data");
        const json::value* next = body.if_contains("next_cursor");
        if (data == nullptr || !data->is_array() || next == nullptr) fail("not a list page: " + r.body);
        for (const auto& item : data->as_array()) {
            if (!item.is_object()) fail("a list item is not an object: " + r.body);
            items.push_back(item.as_object());
        }
        if (next->is_null()) return items;
        if (!next->is_string() || next->as_string().empty()) fail("next_cursor is not a string: " + r.body);
        cursor = std::string(next->as_string());
    }
    fail("GET " + path + " never reached its last page");
}

std::vector<std::string> Api::list_ids(const std::string& path, const std::string& query) const {
    std::vector<std::string> ids;
    for (const auto& item : list_all(path, query))
        ids.push_back(text(item, "id"));
    return ids;
}

// ----------------------------------------------------------------------------- tenants

Api FleetTenant::api() const {
    return Api(IdentityEnv::get().port(), token);
}

FleetTenant new_tenant(std::string_view prefix) {
    IdentityEnv& env = IdentityEnv::get();
    FleetTenant t;
    t.info = env.create_tenant(prefix);
    // The suites send thousands of requests per tenant; the rate limiter has suites of its own.
    Response lifted =
        idtest::send_json(env.port(), "PATCH", "/api/v1/admin/tenants/" + t.info.id,
                          R"({"rate_limit":{"capacity":1000000000,"refill_per_sec":1000000}})", env.admin_token());
    if (lifted.status != 200) fail("lifting the rate limit of " + t.info.slug + " failed: " + describe(lifted));
    t.token =
        idtest::token_of(idtest::tenant_login(env.port(), t.info.slug, t.info.admin_email, t.info.admin_password));
    return t;
}

UserInfo new_user(const FleetTenant& t, const std::string& role, const std::string& by) {
    IdentityEnv& env = IdentityEnv::get();
    json::object body = user_body(role);
    json::object created = Api(env.port(), by.empty() ? t.token : by).create("/api/v1/users", body);
    UserInfo u;
    u.id = text(created, "id");
    u.email = text(body, "email");
    u.password = text(body, "password");
    u.role = role;
    u.token = idtest::token_of(idtest::tenant_login(env.port(), t.info.slug, u.email, u.password));
    return u;
}

// ----------------------------------------------------------------------------- keep-alive

Response KeepAlive::request(std::string_view method, const std::string& target, const std::string& token,
                            std::string_view body) {
    Headers h = idtest::bearer(token);
    if (!body.empty()) h.emplace_back("Content-Type", "application/json");
    const std::string bytes = test::build_request(method, target, h, body);
    Response failed;
    // A reused connection may have been closed by the server while idle: one retry on a fresh one.
    for (int attempt = 0; attempt < 2; ++attempt) {
        bool reused = conn_.has_value();
        if (!conn_) {
            conn_.emplace(port_, 5s);
            if (!conn_->connected()) {
                failed.error = "connect: " + conn_->error();
                conn_.reset();
                return failed;
            }
        }
        if (!conn_->send(bytes, 10s)) {
            failed.error = "send: " + conn_->error();
            conn_.reset();
            if (reused) continue;
            return failed;
        }
        auto r = conn_->read_response(30s, method == "HEAD");
        if (!r) {
            bool closed =
                conn_->last_status() == test::ReadStatus::eof || conn_->last_status() == test::ReadStatus::reset;
            failed.error = "read: " + std::string(test::to_string(conn_->last_status())) + " " + conn_->error();
            conn_.reset();
            if (reused && closed) continue;
            return failed;
        }
        if (test::iequals(r->header("Connection"), "close")) conn_.reset();
        return std::move(*r);
    }
    return failed;
}

}  // namespace mtapi::fleettest
