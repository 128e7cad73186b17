#include "ratelimit_support.hpp"

#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <latch>
#include <stdexcept>
#include <thread>

namespace mtapi::rltest {

Tenant new_tenant(IdentityEnv& env, std::string_view prefix) {
    Tenant t;
    t.info = env.create_tenant(prefix);
    t.token =
        idtest::token_of(idtest::tenant_login(env.port(), t.info.slug, t.info.admin_email, t.info.admin_password));
    return t;
}

void patch_tenant(IdentityEnv& env, const std::string& tenant_id, const std::string& body) {
    auto r = idtest::send_json(env.port(), "PATCH", "/api/v1/admin/tenants/" + tenant_id, body, env.admin_token());
    if (r.status != 200) throw std::runtime_error("PATCH tenant failed: " + idtest::describe(r));
}

void set_limit(IdentityEnv& env, const std::string& tenant_id, long long capacity, double refill_per_sec) {
    char rate[64];
    std::snprintf(rate, sizeof(rate), "%.6g", refill_per_sec);
    patch_tenant(env, tenant_id,
                 "{\"rate_limit\":{\"capacity\":" + std::to_string(capacity) + ",\"refill_per_sec\":" + rate + "}}");
    std::this_thread::sleep_for(1100ms);
}

std::vector<Response> burst(std::uint16_t port, const std::string& target, const std::string& token, int n) {
    std::vector<Response> out(static_cast<std::size_t>(n));
    std::latch connected(n);
    std::vector<std::thread> threads;
    for (int i = 0; i < n; ++i) {
        threads.emplace_back([&, i] {
            test::Connection conn(port);
            connected.arrive_and_wait();  // every connection open before any request is sent
            auto& r = out[static_cast<std::size_t>(i)];
            if (!conn.connected()) {
                r.error = "connect: " + conn.error();
                return;
            }
            if (!conn.send(test::build_request("GET", target, idtest::bearer(token)))) {
                r.error = "send: " + conn.error();
                return;
            }
            auto resp = conn.read_response(10s);
            if (resp)
                r = std::move(*resp);
            else
                r.error = "read: " + conn.error();
        });
    }
    for (auto& t : threads)
        t.join();
    return out;
}

int count_status(const std::vector<Response>& rs, int status) {
    int n = 0;
    for (const auto& r : rs)
        n += r.status == status ? 1 : 0;
    return n;
}

long long header_number(const Response& r, std::string_view name) {
    if (!r.has_header(name) || r.header_count(name) != 1) return -1;
    std::string v = r.header(name);
    long long n = -1;
    auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    if (ec != std::errc() || p != v.data() + v.size()) return -1;
    return n;
}

double metric(std::uint16_t port, const std::string& series) {
    auto r = test::http_request(port, "GET", "/metrics");
    if (r.status != 200) return -1;
    std::size_t pos = 0;
    while (pos < r.body.size()) {
        auto end = r.body.find('\n', pos);
        if (end == std::string::npos) end = r.body.size();
        std::string_view line(r.body.data() + pos, end - pos);
        if (line.size() > series.size() && line.substr(0, series.size()) == series && line[series.size()] == ' ')
            return std::strtod(std::string(line.substr(series.size() + 1)).c_str(), nullptr);
        pos = end + 1;
    }
    return -1;
}

std::string redis_url_with_db(int db) {
    std::string url = idtest::env_or_empty("MTAPI_REDIS_URL");
    if (url.empty()) throw std::runtime_error("MTAPI_REDIS_URL is not set (make test sets it)");
    auto scheme_end = url.find("://");
    auto slash = url.find('/', scheme_end == std::string::npos ? 0 : scheme_end + 3);
    if (slash != std::string::npos) url.resize(slash);
    return url + "/" + std::to_string(db);
}

int redis_cli(const std::string& args, const std::string& url) {
    std::string u = url.empty() ? idtest::env_or_empty("MTAPI_REDIS_URL") : url;
    std::string cmd = "redis-cli -u '" + u + "' " + args + " >/dev/null 2>&1";
    int rc = std::system(cmd.c_str());
    return rc;
}

}  // namespace mtapi::rltest
