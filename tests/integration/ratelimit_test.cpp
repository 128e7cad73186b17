// Per-tenant rate limiting and login throttling over HTTP (SPEC §4), against the real mtapi
// binary, PostgreSQL and the test Redis (the Redis backend: make test sets MTAPI_REDIS_URL).
//
// Every test uses tenants of its own, so the Redis buckets (rl:{<tenant uuid>}) are its own; the
// login address test uses a Redis database of its own because all tests share one address.
// Outages (Redis stopped) are in ratelimit_outage_test.cpp, which runs alone.

#include <atomic>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <mutex>
#include <thread>

#include "ratelimit_support.hpp"

namespace mtapi::rltest {
namespace {

using idtest::is_problem;
using idtest::tenant_login;
using test::http_request;

const std::string kVehicles = "/api/v1/vehicles?limit=1";

class RateLimits : public idtest::IdentityTest {};

::testing::AssertionResult has_limit_fields(const Response& r, long long limit) {
    long long l = header_number(r, "RateLimit-Limit");
    long long rem = header_number(r, "RateLimit-Remaining");
    long long reset = header_number(r, "RateLimit-Reset");
    if (l != limit || rem < 0 || rem > limit || reset < 0)
        return ::testing::AssertionFailure()
               << "status " << r.status << ": RateLimit-Limit '" << r.header("RateLimit-Limit") << "' (want " << limit
               << "), RateLimit-Remaining '" << r.header("RateLimit-Remaining") << "', RateLimit-Reset '"
               << r.header("RateLimit-Reset") << "'";
    return ::testing::AssertionSuccess();
}

::testing::AssertionResult is_rate_limited(const Response& r) {
    if (auto p = is_problem(r, 429); !p) return p;
    long long retry = header_number(r, "Retry-After");
    if (retry < 1)
        return ::testing::AssertionFailure()
               << "429 without a whole Retry-After >= 1: '" << r.header("Retry-After") << "'";
    return ::testing::AssertionSuccess();
}

TEST_F(RateLimits, capacity_10_lets_exactly_10_of_30_concurrent_requests_through_while_another_tenant_is_untouched) {
    auto a = new_tenant(env(), "rl-a");
    auto b = new_tenant(env(), "rl-b");
    patch_tenant(env(), b.info.id, R"({"rate_limit":{"capacity":1000,"refill_per_sec":0}})");
    set_limit(env(), a.info.id, 10, 0);

    std::vector<Response> ra, rb;
    std::thread other([&] { rb = burst(env().port(), kVehicles, b.token, 30); });
    ra = burst(env().port(), kVehicles, a.token, 30);
    other.join();

    EXPECT_EQ(count_status(ra, 200), 10);
    EXPECT_EQ(count_status(ra, 429), 20);
    for (const auto& r : ra) {
        EXPECT_TRUE(has_limit_fields(r, 10)) << r.error;
        if (r.status == 429) {
            EXPECT_TRUE(is_rate_limited(r));
            EXPECT_EQ(header_number(r, "RateLimit-Remaining"), 0);
        }
    }
    EXPECT_EQ(count_status(rb, 200), 30) << "tenant B was limited by tenant A's traffic";
    for (const auto& r : rb)
        EXPECT_TRUE(has_limit_fields(r, 1000));

    // Still spent: a new request of A is refused, and B is not.
    EXPECT_TRUE(is_rate_limited(idtest::get(env().port(), kVehicles, a.token)));
    EXPECT_EQ(idtest::get(env().port(), kVehicles, b.token).status, 200);
}

TEST_F(RateLimits, every_tenant_response_carries_the_fields_errors_included_and_remaining_counts_down) {
    auto t = new_tenant(env(), "rl-hdr");
    auto viewer = env().add_user(t.info, t.token, "viewer");
    set_limit(env(), t.info.id, 50, 0);  // a fresh bucket: the limit is changed after add_user

    std::vector<Response> rs;
    rs.push_back(idtest::get(env().port(), kVehicles, t.token));                                                // 200
    rs.push_back(idtest::get(env().port(), "/api/v1/vehicles/00000000-0000-7000-8000-000000000000", t.token));  // 404
    rs.push_back(idtest::send_json(env().port(), "POST", "/api/v1/vehicles", R"({"plate":""})", t.token));      // 422
    rs.push_back(
        idtest::send_json(env().port(), "POST", "/api/v1/vehicles", R"({"plate":"X-1"})", viewer.token));  // 403
    rs.push_back(idtest::get(env().port(), "/api/v1/me", t.token));                                        // 200
    ASSERT_EQ(rs[0].status, 200) << idtest::describe(rs[0]);
    ASSERT_EQ(rs[1].status, 404) << idtest::describe(rs[1]);
    ASSERT_EQ(rs[2].status, 422) << idtest::describe(rs[2]);
    ASSERT_EQ(rs[3].status, 403) << idtest::describe(rs[3]);
    ASSERT_EQ(rs[4].status, 200) << idtest::describe(rs[4]);
    long long last = 51;
    for (const auto& r : rs) {
        EXPECT_TRUE(has_limit_fields(r, 50));
        long long remaining = header_number(r, "RateLimit-Remaining");
        EXPECT_LT(remaining, last) << "RateLimit-Remaining must fall with every request";
        last = remaining;
        // No refill: the bucket is full again only when its idle state expires.
        EXPECT_GT(header_number(r, "RateLimit-Reset"), 0);
    }
    EXPECT_EQ(last, 45);

    // Not tenant-scoped: no fields.
    auto health = http_request(env().port(), "GET", "/health");
    EXPECT_FALSE(health.has_header("RateLimit-Limit"));
    auto login = tenant_login(env().port(), t.info.slug, t.info.admin_email, t.info.admin_password);
    EXPECT_EQ(login.status, 200);
    EXPECT_FALSE(login.has_header("RateLimit-Limit"));
    auto admin = idtest::get(env().port(), "/api/v1/admin/tenants/" + t.info.id, env().admin_token());
    EXPECT_EQ(admin.status, 200);
    EXPECT_FALSE(admin.has_header("RateLimit-Limit"));
    // Without a valid token there is no tenant to charge.
    auto anonymous = idtest::get(env().port(), kVehicles, "not-a-token");
    EXPECT_EQ(anonymous.status, 401);
    EXPECT_FALSE(anonymous.has_header("RateLimit-Limit"));
}

TEST_F(RateLimits, plan_defaults_apply_and_a_changed_limit_or_plan_takes_effect_within_1s) {
    auto server = env().start_server({{"MTAPI_RATE_LIMIT_FREE", "30:3"},
                                      {"MTAPI_RATE_LIMIT_STANDARD", "50:5"},
                                      {"MTAPI_RATE_LIMIT_ENTERPRISE", "70:7"}});
    auto t = new_tenant(env(), "rl-plan");  // plan standard by default
    auto limit_now = [&] { return header_number(idtest::get(server->port(), kVehicles, t.token), "RateLimit-Limit"); };
    EXPECT_EQ(limit_now(), 50);

    patch_tenant(env(), t.info.id, R"({"plan":"enterprise"})");
    std::this_thread::sleep_for(1s);
    EXPECT_EQ(limit_now(), 70);

    set_limit(env(), t.info.id, 12, 1);
    EXPECT_EQ(limit_now(), 12);
    auto shown = idtest::get(env().port(), "/api/v1/admin/tenants/" + t.info.id, env().admin_token());
    auto body = idtest::json_of(shown);
    ASSERT_TRUE(body);
    EXPECT_EQ(boost::json::serialize(body->at("rate_limit")), R"({"capacity":12,"refill_per_sec":1})");

    patch_tenant(env(), t.info.id, R"({"rate_limit":null})");
    std::this_thread::sleep_for(1s);
    EXPECT_EQ(limit_now(), 70) << "rate_limit null must restore the plan default";

    patch_tenant(env(), t.info.id, R"({"plan":"free"})");
    std::this_thread::sleep_for(1s);
    EXPECT_EQ(limit_now(), 30);
}

TEST_F(RateLimits, after_the_advertised_retry_after_the_tenant_succeeds_again) {
    auto t = new_tenant(env(), "rl-refill");
    set_limit(env(), t.info.id, 3, 0.5);  // one token every 2 s
    for (int i = 0; i < 3; ++i)
        ASSERT_EQ(idtest::get(env().port(), kVehicles, t.token).status, 200) << "request " << i;
    auto refused = idtest::get(env().port(), kVehicles, t.token);
    ASSERT_TRUE(is_rate_limited(refused));
    long long retry = header_number(refused, "Retry-After");
    EXPECT_GE(retry, 1);
    EXPECT_LE(retry, 2);
    // Reset: until all 3 tokens are back (about 6 s).
    EXPECT_GE(header_number(refused, "RateLimit-Reset"), 5);
    EXPECT_LE(header_number(refused, "RateLimit-Reset"), 6);

    std::this_thread::sleep_for(std::chrono::seconds(retry));
    auto again = idtest::get(env().port(), kVehicles, t.token);
    EXPECT_EQ(again.status, 200) << idtest::describe(again);
    EXPECT_EQ(header_number(again, "RateLimit-Remaining"), 0);
}

TEST_F(RateLimits, two_instances_sharing_redis_hold_one_capacity_between_them) {
    auto second = env().start_server();
    auto t = new_tenant(env(), "rl-two");
    set_limit(env(), t.info.id, 10, 0);

    std::vector<Response> r1, r2;
    std::thread other([&] { r2 = burst(second->port(), kVehicles, t.token, 15); });
    r1 = burst(env().port(), kVehicles, t.token, 15);
    other.join();

    int ok = count_status(r1, 200) + count_status(r2, 200);
    int limited = count_status(r1, 429) + count_status(r2, 429);
    EXPECT_EQ(ok, 10) << "first instance " << count_status(r1, 200) << ", second " << count_status(r2, 200);
    EXPECT_EQ(limited, 20);
    // Both instances served some of them (each had 15 requests and there were only 10 tokens).
    EXPECT_EQ(count_status(r1, 200) + count_status(r1, 429), 15);
    EXPECT_EQ(count_status(r2, 200) + count_status(r2, 429), 15);
}

TEST_F(RateLimits, busy_tenants_spend_reservations_and_two_instances_still_hold_capacity_plus_refill) {
    auto second = env().start_server();
    auto t = new_tenant(env(), "rl-busy");
    set_limit(env(), t.info.id, 300, 200);  // reservations of at most 20 tokens (200/s for 100 ms)
    const std::string reserved_series = "mtapi_ratelimit_redis_reserved_decisions_total";
    const double reserved_before = metric(env().port(), reserved_series) + metric(second->port(), reserved_series);
    std::atomic<bool> stop{false};
    std::atomic<int> ok{0}, limited{0}, other{0};
    std::string first_other;
    std::mutex m;
    std::vector<std::thread> clients;
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < 8; ++i) {
        const std::uint16_t port = i % 2 == 0 ? env().port() : second->port();
        clients.emplace_back([&, port] {
            test::Connection conn(port);
            while (!stop.load()) {
                conn.send(test::build_request("GET", kVehicles, idtest::bearer(t.token)));
                auto r = conn.read_response(5s);
                if (r && r->status == 200 && has_limit_fields(*r, 300)) {
                    ++ok;
                } else if (r && is_rate_limited(*r) && has_limit_fields(*r, 300)) {
                    ++limited;
                } else {
                    ++other;
                    std::lock_guard lock(m);
                    if (first_other.empty()) first_other = r ? idtest::describe(*r) : conn.error();
                    return;
                }
            }
        });
    }
    std::this_thread::sleep_for(1500ms);
    stop = true;
    for (auto& c : clients)
        c.join();
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_EQ(other.load(), 0) << first_other;
    EXPECT_GT(limited.load(), 0) << "the load must exceed the limit for the bound to mean anything";
    // Redis granted at most the capacity plus the refill between the first and the last request,
    // whatever the instances reserved ahead.
    EXPECT_LE(ok.load(), 300 + static_cast<int>(200 * elapsed) + 1) << elapsed << " s";
    EXPECT_GE(ok.load(), 300);
    const double reserved_after = metric(env().port(), reserved_series) + metric(second->port(), reserved_series);
    EXPECT_GT(reserved_after, reserved_before) << "a busy tenant spends tokens reserved ahead";
    std::printf("%d allowed, %d limited in %.2f s (capacity 300 + 200/s); %.0f from reservations\n", ok.load(),
                limited.load(), elapsed, reserved_after - reserved_before);
}

TEST_F(RateLimits, script_flush_while_serving_reaches_no_client_and_redis_keeps_deciding) {
    auto t = new_tenant(env(), "rl-flush");
    std::atomic<bool> stop{false};
    std::atomic<int> ok{0}, other{0};
    std::string first_other;
    std::mutex m;
    std::vector<std::thread> clients;
    for (int i = 0; i < 4; ++i) {
        clients.emplace_back([&] {
            test::Connection conn(env().port());
            while (!stop.load()) {
                conn.send(test::build_request("GET", kVehicles, idtest::bearer(t.token)));
                auto r = conn.read_response(5s);
                if (r && r->status == 200) {
                    ++ok;
                } else {
                    ++other;
                    std::lock_guard lock(m);
                    if (first_other.empty()) first_other = r ? idtest::describe(*r) : conn.error();
                    return;
                }
            }
        });
    }
    int flushes = 0;
    for (; flushes < 20; ++flushes) {
        ASSERT_EQ(redis_cli("SCRIPT FLUSH"), 0) << "redis-cli SCRIPT FLUSH failed";
        std::this_thread::sleep_for(100ms);
    }
    stop = true;
    for (auto& c : clients)
        c.join();
    EXPECT_EQ(other.load(), 0) << first_other;
    EXPECT_GT(ok.load(), 40);
    // Redis decided all along: nothing fell back to the in-process buckets.
    EXPECT_EQ(metric(env().port(), "mtapi_ratelimit_fallback_decisions_total"), 0);
    EXPECT_GE(metric(env().port(), R"(mtapi_ratelimit_decisions_total{backend="redis",result="allowed"})"), ok.load());
    std::printf("%d requests served during %d SCRIPT FLUSH\n", ok.load(), flushes);
}

TEST_F(RateLimits, decisions_are_counted_by_plan_in_metrics) {
    auto t = new_tenant(env(), "rl-metric");
    set_limit(env(), t.info.id, 2, 0);
    for (int i = 0; i < 3; ++i)
        idtest::get(env().port(), kVehicles, t.token);
    EXPECT_GE(metric(env().port(),
                     R"(mtapi_ratelimit_plan_decisions_total{plan="standard",result="allowed",fallback="false"})"),
              2);
    EXPECT_GE(metric(env().port(),
                     R"(mtapi_ratelimit_plan_decisions_total{plan="standard",result="limited",fallback="false"})"),
              1);
    EXPECT_GE(metric(env().port(), R"(mtapi_redis_command_duration_seconds_count)"), 3);
}

// ----------------------------------------------------------------------------- logins

class LoginThrottling : public idtest::IdentityTest {};

TEST_F(LoginThrottling, twenty_wrong_passwords_end_in_429_while_another_email_of_the_tenant_logs_in) {
    auto server = env().start_server({{"MTAPI_LOGIN_ACCOUNT_ATTEMPTS", "10"}});
    auto t = new_tenant(env(), "rl-login");
    auto victim = env().add_user(
        t.info, idtest::token_of(tenant_login(server->port(), t.info.slug, t.info.admin_email, t.info.admin_password)),
        "dispatcher");
    int unauthorized = 0, limited = 0;
    for (int i = 0; i < 20; ++i) {
        auto r = tenant_login(server->port(), t.info.slug, victim.email, "wrong-" + std::to_string(i));
        if (r.status == 401) {
            ++unauthorized;
            EXPECT_EQ(limited, 0) << "a 401 after a 429: the budget came back too early";
        } else {
            EXPECT_TRUE(is_rate_limited(r)) << "attempt " << i;
            ++limited;
        }
        // Another user of the same tenant is not affected by the guessing.
        if (i % 5 == 4) {
            EXPECT_EQ(tenant_login(server->port(), t.info.slug, t.info.admin_email, t.info.admin_password).status, 200)
                << "after attempt " << i;
        }
    }
    EXPECT_EQ(unauthorized, 10);
    EXPECT_EQ(limited, 10);
    // Even the right password is refused now: the attempt is not checked at all.
    auto right = tenant_login(server->port(), t.info.slug, victim.email, victim.password);
    EXPECT_TRUE(is_rate_limited(right));
    // The email is compared without case.
    std::string upper = victim.email;
    for (auto& c : upper)
        c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    EXPECT_TRUE(is_rate_limited(tenant_login(server->port(), t.info.slug, upper, "wrong")));
}

TEST_F(LoginThrottling, successful_logins_do_not_spend_the_budget) {
    auto server = env().start_server({{"MTAPI_LOGIN_ACCOUNT_ATTEMPTS", "3"}});
    auto t = new_tenant(env(), "rl-okay");
    for (int i = 0; i < 10; ++i)
        ASSERT_EQ(tenant_login(server->port(), t.info.slug, t.info.admin_email, t.info.admin_password).status, 200)
            << "login " << i;
    for (int i = 0; i < 3; ++i)
        EXPECT_EQ(tenant_login(server->port(), t.info.slug, t.info.admin_email, "wrong").status, 401);
    EXPECT_TRUE(is_rate_limited(tenant_login(server->port(), t.info.slug, t.info.admin_email, "wrong")));
}

TEST_F(LoginThrottling, one_address_guessing_many_accounts_is_limited) {
    // The address budget is shared by everything that logs in from 127.0.0.1: a Redis database
    // of this test's own keeps other suites out of it.
    const std::string url = redis_url_with_db(9);
    ASSERT_EQ(redis_cli("FLUSHDB", url), 0);
    auto server = env().start_server({{"MTAPI_REDIS_URL", url}, {"MTAPI_LOGIN_ADDRESS_ATTEMPTS", "5"}});
    auto t = new_tenant(env(), "rl-addr");
    int i = 0;
    for (; i < 5; ++i) {
        auto r = tenant_login(server->port(), t.info.slug, "nobody-" + std::to_string(i) + "@test.local", "wrong");
        EXPECT_EQ(r.status, 401) << "attempt " << i << ": " << idtest::describe(r);
    }
    // A sixth account, never tried before, from the same address.
    auto r = tenant_login(server->port(), t.info.slug, "nobody-" + std::to_string(i) + "@test.local", "wrong");
    EXPECT_TRUE(is_rate_limited(r));
    // Platform administrator logins share the address budget.
    auto admin = idtest::send_json(server->port(), "POST", "/api/v1/admin/auth/login",
                                   R"({"email":"nobody@test.local","password":"wrong"})");
    EXPECT_TRUE(is_rate_limited(admin));
    ASSERT_EQ(redis_cli("FLUSHDB", url), 0);
}

// POST /api/v1/auth/login with an X-Forwarded-For field, as a reverse proxy on 127.0.0.1 sends it.
Response login_forwarded_for(std::uint16_t port, const std::string& slug, const std::string& email,
                             const std::string& forwarded_for) {
    boost::json::object o;
    o["tenant"] = slug;
    o["email"] = email;
    o["password"] = "wrong";
    return http_request(port, "POST", "/api/v1/auth/login",
                        {{"Content-Type", "application/json"}, {"X-Forwarded-For", forwarded_for}},
                        boost::json::serialize(o), 10s);
}

// An address of 198.18.0.0/15 (set aside for benchmarks) that no other run uses.
std::string random_test_address() {
    const std::string hex = idtest::random_hex(3);
    return "198." + std::to_string(18 + std::stoi(hex.substr(0, 2), nullptr, 16) % 2) + "." +
           std::to_string(std::stoi(hex.substr(2, 2), nullptr, 16)) + "." +
           std::to_string(1 + std::stoi(hex.substr(4, 2), nullptr, 16) % 254);
}

TEST_F(LoginThrottling, behind_a_trusted_proxy_each_forwarded_client_has_its_own_address_budget) {
    auto server = env().start_server({{"MTAPI_TRUSTED_PROXIES", "127.0.0.1"}, {"MTAPI_LOGIN_ADDRESS_ATTEMPTS", "3"}});
    auto t = new_tenant(env(), "rl-xff");
    const std::string a = random_test_address();
    std::string b = random_test_address();
    while (b == a)
        b = random_test_address();
    int n = 0;
    auto email = [&] { return "nobody-" + std::to_string(n++) + "@test.local"; };
    for (int i = 0; i < 3; ++i) {
        auto r = login_forwarded_for(server->port(), t.info.slug, email(), a);
        EXPECT_EQ(r.status, 401) << "attempt " << i << ": " << idtest::describe(r);
    }
    EXPECT_TRUE(is_rate_limited(login_forwarded_for(server->port(), t.info.slug, email(), a)));
    // What the client wrote left of the proxy's entry is not believed.
    EXPECT_TRUE(is_rate_limited(login_forwarded_for(server->port(), t.info.slug, email(), b + ", " + a)));
    // Another client behind the same proxy keeps its own budget.
    auto other = login_forwarded_for(server->port(), t.info.slug, email(), b);
    EXPECT_EQ(other.status, 401) << idtest::describe(other);
}

TEST_F(LoginThrottling, without_trusted_proxies_x_forwarded_for_is_ignored) {
    // Every attempt counts against 127.0.0.1, which other suites share: a Redis database of this
    // test's own keeps them apart.
    const std::string url = redis_url_with_db(10);
    ASSERT_EQ(redis_cli("FLUSHDB", url), 0);
    auto server = env().start_server({{"MTAPI_REDIS_URL", url}, {"MTAPI_LOGIN_ADDRESS_ATTEMPTS", "3"}});
    auto t = new_tenant(env(), "rl-noxff");
    for (int i = 0; i < 3; ++i) {
        auto r = login_forwarded_for(server->port(), t.info.slug, "nobody-" + std::to_string(i) + "@test.local",
                                     random_test_address());
        EXPECT_EQ(r.status, 401) << "attempt " << i << ": " << idtest::describe(r);
    }
    EXPECT_TRUE(
        is_rate_limited(login_forwarded_for(server->port(), t.info.slug, "nobody-3@test.local", random_test_address())))
        << "a fresh X-Forwarded-For per attempt must not escape the address budget";
    ASSERT_EQ(redis_cli("FLUSHDB", url), 0);
}

TEST_F(LoginThrottling, platform_admin_logins_are_throttled_per_email) {
    auto server = env().start_server({{"MTAPI_LOGIN_ACCOUNT_ATTEMPTS", "2"}});
    const std::string body = R"({"email":"ghost-)" + idtest::random_hex(4) + R"(@test.local","password":"wrong"})";
    for (int i = 0; i < 2; ++i)
        EXPECT_EQ(idtest::send_json(server->port(), "POST", "/api/v1/admin/auth/login", body).status, 401);
    EXPECT_TRUE(is_rate_limited(idtest::send_json(server->port(), "POST", "/api/v1/admin/auth/login", body)));
}

}  // namespace
}  // namespace mtapi::rltest
