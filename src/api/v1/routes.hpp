#pragma once
// Registration of the versioned API (/api/v1/...), one function per resource file.

#include "app/app.hpp"
#include "http/router.hpp"

namespace mtapi::api::v1 {

void add_auth_routes(http::Router& router, app::App& app);
void add_admin_tenant_routes(http::Router& router, app::App& app);
void add_admin_migration_routes(http::Router& router, app::App& app);
void add_me_routes(http::Router& router, app::App& app);
void add_vehicle_routes(http::Router& router, app::App& app);
void add_driver_routes(http::Router& router, app::App& app);
void add_trip_routes(http::Router& router, app::App& app);
void add_user_routes(http::Router& router, app::App& app);
void add_openapi_routes(http::Router& router, app::App& app);

}  // namespace mtapi::api::v1
