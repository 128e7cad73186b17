#pragma once
// A tenant as the catalog knows it: identity, lifecycle and where its data lives.

#include <optional>
#include <string>

#include "util/uuid.hpp"

namespace mtapi::tenancy {

struct Tenant {
    util::Uuid id{};
    std::string id_text;  // canonical UUID text
    std::string slug;
    std::string name;
    std::string plan;    // free | standard | enterprise
    std::string status;  // active | suspended
    std::string schema;  // tenant_<32 hex>; derived from id, never from input
    std::string role;    // same as schema
    int schema_version = 0;
    std::optional<long long> rate_limit_capacity;
    std::optional<double> rate_limit_refill_per_sec;
    std::string placement = "default";
    std::string created_at;
    std::string updated_at;

    bool active() const { return status == "active"; }
};

// tenant_<32 lowercase hex of the UUID>: the schema and role name of a tenant (SPEC §1).
std::string schema_name_for(const util::Uuid& id);

}  // namespace mtapi::tenancy
