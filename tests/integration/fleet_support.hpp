#pragma once
// Support for the fleet API suites (tests/integration/fleet_api_test.cpp and the cross-tenant suite
// tests/integration/isolation_test.cpp): tenants with their rate limit lifted, a small client of
// the tenant API bound to one token, valid sample bodies for every resource, list walking, and a
// keep-alive connection for load.
//
// The server, the platform admin and the tenants' lifecycle are the identity suites' IdentityEnv
// (one server per test process; every tenant created here is deleted when the process ends).

#include <boost/json/object.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "harness.hpp"
#include "identity_support.hpp"

namespace mtapi::fleettest {

namespace json = boost::json;
using idtest::describe;
using idtest::error_fields;
using idtest::IdentityEnv;
using idtest::is_problem;
using idtest::TenantInfo;
using idtest::UserInfo;
using test::Headers;
using test::Response;
using namespace std::chrono_literals;

// ----------------------------------------------------------------------------- JSON

// The body of `r` as an object; throws (with the response) when it is not one.
json::object object_of(const Response& r);
std::string to_json(const json::object& o);
// o[key] as a string; "" when absent or not a string.
std::string text(const json::object& o, std::string_view key);
// Equal JSON values, numbers compared by value (12.5 and 12.50 are the same distance).
bool same_value(const json::value& a, const json::value& b);
// A problem's body without what differs from one request to the next (request_id, and instance,
// the request path): what is left must not depend on whether an id exists elsewhere.
std::string comparable_problem(const Response& r);
// Every UUID (8-4-4-4-12 hex) in `text`, lower-cased.
std::vector<std::string> uuids_in(std::string_view text);
// A problem with `status` whose `errors` name `field` (each entry with a message).
::testing::AssertionResult names_field(const Response& r, int status, const std::string& field);
// A refused login: 401, or 429 when the login throttle (shared by every suite on this address)
// has had enough failures; either way no token.
::testing::AssertionResult login_refused(const Response& r);
// A fresh random UUID (v7) that names nothing.
std::string random_uuid();
// "<prefix><10 hex>": unique per call, for plates, licence numbers and email addresses.
std::string unique(std::string_view prefix);

// ----------------------------------------------------------------------------- sample bodies

// Valid POST bodies; fields that must be unique in a tenant get fresh values on every call.
// Timestamps are written the way the API renders them (microseconds, UTC), so a response can be
// compared with the request field by field.
json::object vehicle_body(std::string_view status = "active");
json::object driver_body(std::string_view status = "active");
json::object trip_body(const std::string& vehicle_id, const std::string& driver_id,
                       std::string_view status = "planned");
// email, name, role and a 24-character password.
json::object user_body(std::string_view role);

// ----------------------------------------------------------------------------- the tenant API

// A client of the tenant API with one bearer token (fresh connection per request).
class Api {
  public:
    Api(std::uint16_t port, std::string token) : port_(port), token_(std::move(token)) {}

    std::uint16_t port() const { return port_; }
    const std::string& token() const { return token_; }

    Response get(const std::string& target) const;
    Response post(const std::string& target, const json::object& body) const;
    Response patch(const std::string& target, const json::object& body) const;
    Response del(const std::string& target) const;
    // Any method, raw body bytes and content type (none when empty).
    Response send(std::string_view method, const std::string& target, std::string_view body,
                  const std::string& content_type = "application/json") const;

    // POST that must answer 201: the created object (throws with the response otherwise).
    json::object create(const std::string& path, const json::object& body) const;
    // Every item of a list, newest first, following next_cursor with pages of 100. `query` holds
    // filters without the '?' ("status=active"). Throws when a page is not a 200 list.
    std::vector<json::object> list_all(const std::string& path, const std::string& query = {}) const;
    // The ids of list_all.
    std::vector<std::string> list_ids(const std::string& path, const std::string& query = {}) const;

  private:
    std::uint16_t port_;
    std::string token_;
};

// ----------------------------------------------------------------------------- tenants

struct FleetTenant {
    TenantInfo info;
    std::string token;  // the tenant admin's access token
    Api api() const;
};

// A tenant created through the admin API (deleted when the process ends) whose rate limit is
// lifted far beyond what a suite sends, and whose first admin is logged in.
FleetTenant new_tenant(std::string_view prefix);
// A user with `role` created through POST /api/v1/users (by the tenant's first admin, or by the
// admin whose token is `by`) and logged in.
UserInfo new_user(const FleetTenant& t, const std::string& role, const std::string& by = {});

// ----------------------------------------------------------------------------- keep-alive

// One HTTP/1.1 connection reused for many requests (reconnecting when the server closes it), as
// a pooling client or a load balancer sends them: requests of different tenants may follow each
// other on it.
class KeepAlive {
  public:
    explicit KeepAlive(std::uint16_t port) : port_(port) {}
    Response request(std::string_view method, const std::string& target, const std::string& token,
                     std::string_view body = {});

  private:
    std::uint16_t port_;
    std::optional<test::Connection> conn_;
};

}  // namespace mtapi::fleettest
