#include "api/render.hpp"

#include <cstdio>

#include "obs/log.hpp"

namespace mtapi::api {

void append_tenant_json(std::string& out, const tenancy::Tenant& t) {
    auto field = [&](std::string_view key, std::string_view value, bool first = false) {
        if (!first) out.push_back(',');
        obs::append_json_string(out, key);
        out.push_back(':');
        obs::append_json_string(out, value);
    };
    out.push_back('{');
    field("id", t.id_text, true);
    field("slug", t.slug);
    field("name", t.name);
    field("plan", t.plan);
    field("status", t.status);
    field("schema", t.schema);
    out.append(",\"schema_version\":").append(std::to_string(t.schema_version));
    out.append(",\"rate_limit\":");
    if (t.rate_limit_capacity && t.rate_limit_refill_per_sec) {
        char buf[64];
        std::snprintf(buf, sizeof(buf), "%.15g", *t.rate_limit_refill_per_sec);
        out.append("{\"capacity\":").append(std::to_string(*t.rate_limit_capacity));
        out.append(",\"refill_per_sec\":").append(buf).append("}");
    } else {
        out.append("null");
    }
    field("created_at", t.created_at);
    field("updated_at", t.updated_at);
    out.push_back('}');
}

std::string tenant_json(const tenancy::Tenant& t) {
    std::string out;
    out.reserve(400);
    append_tenant_json(out, t);
    return out;
}

std::string sql_ts(std::string_view column) {
    return "to_char(" + std::string(column) + " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')";
}

}  // namespace mtapi::api
