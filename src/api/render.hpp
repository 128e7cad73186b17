#pragma once
// JSON rendering shared by handlers.

#include <string>
#include <string_view>

#include "tenancy/tenant.hpp"

namespace mtapi::api {

// The tenant as the admin API shows it (SPEC §3 tenant fields).
void append_tenant_json(std::string& out, const tenancy::Tenant& t);
std::string tenant_json(const tenancy::Tenant& t);

// SQL expression rendering a timestamptz column as RFC 3339 UTC with microseconds.
std::string sql_ts(std::string_view column);

}  // namespace mtapi::api
