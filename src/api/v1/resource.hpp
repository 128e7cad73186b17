#pragma once
// A tenant resource served by generic handlers: GET one, list (keyset pages, exact-match
// filters), POST, PATCH, DELETE. Each resource file describes its table, its JSON, its fields and
// how database constraints map back to fields; the handlers here do the rest, each as one tenant
// transaction whose statements PostgreSQL renders straight to JSON text.

#include <boost/asio/awaitable.hpp>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "api/json_body.hpp"
#include "app/app.hpp"
#include "http/router.hpp"
#include "pg/connection.hpp"

namespace mtapi::api::v1 {

// One column value to write: `value` (nullopt = SQL NULL) bound as a parameter, `cast` appended
// to the placeholder ($3::int).
struct Column {
    std::string name;
    std::optional<std::string> value;
    std::string cast;
};

// How a violated constraint is answered: status 409 or 422, naming `field`.
struct ConstraintAnswer {
    std::string constraint;
    int status;
    std::string field;
    std::string message;
};

struct ResourceDef {
    std::string table;  // also the list name bound into cursors
    std::string path;   // /api/v1/vehicles
    std::string json;   // SQL expression: one row as JSON text (json_build_object(...)::text)
    struct Filter {
        std::string_view name;                 // query parameter and column
        std::string cast;                      // e.g. ::uuid
        std::vector<std::string_view> one_of;  // allowed values (empty: any; uuid filters validate)
        bool uuid = false;
    };
    std::vector<Filter> filters;
    unsigned read_roles;
    unsigned write_roles;
    // Reads the body's fields; on create, required fields must be present. Records errors in
    // `fields`; returns the columns to write.
    std::function<std::vector<Column>(BodyFields& fields, bool create)> parse;
    // Optional: async work on the columns before the transaction (e.g. hashing a password).
    std::function<boost::asio::awaitable<void>(app::App&, std::vector<Column>&)> prepare;
    std::vector<ConstraintAnswer> constraints;
    // Optional guard run in the transaction before a DELETE or PATCH of row $1: a query returning
    // one boolean; false → 409 with `guard_conflict`. (Users: never remove the last admin.)
    std::function<std::optional<pg::Query>(const std::string& id, const std::vector<Column>* patch)> guard;
    std::string guard_conflict;
};

void add_resource_routes(http::Router& router, app::App& app, std::shared_ptr<const ResourceDef> def);

// SQL snippet: to_char(<col>) as RFC 3339 UTC text.
std::string ts(std::string_view column);

}  // namespace mtapi::api::v1
