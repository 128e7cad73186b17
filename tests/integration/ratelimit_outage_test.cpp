// Rate limiting through a Redis outage, over HTTP (SPEC §4): the test Redis is stopped while
// requests flow and started again.
//
// - fail-open (default): no 5xx, limits still enforced by the in-process buckets, /ready 200
//   "degraded", the fallback metric counts, one log line per transition; Redis decides again
//   within 5 s of its return, without a restart;
// - fail-closed: tenant requests 503 (problem+json), /ready 503 "unavailable";
// - login throttling keeps limiting (in process) while Redis is down.
//
// This stops the shared test Redis, so ctest runs it on its own (RUN_SERIAL); Redis is started
// again in TearDown whatever happens.

#include <atomic>
#include <thread>

#include "pg_test_support.hpp"
#include "ratelimit_support.hpp"

namespace mtapi::rltest {
namespace {

using idtest::is_problem;
using idtest::json_of;
using idtest::str;
using idtest::tenant_login;
using test::Clock;
using test::http_request;
using test::since;

const std::string kVehicles = "/api/v1/vehicles?limit=1";

class RateLimitOutage : public idtest::IdentityTest {
  protected:
    void SetUp() override {
        IdentityTest::SetUp();
        ASSERT_NE(std::getenv("MTAPI_SOURCE_DIR"), nullptr) << "MTAPI_SOURCE_DIR must point at the repository root";
    }
    void TearDown() override {
        auto r = pgtest::services("redis-start --test");
        EXPECT_EQ(r.status, 0) << r.output;
    }
};

// /ready's status and checks.redis.
struct Readiness {
    int code = 0;
    std::string status;
    std::string redis;
};

Readiness ready(std::uint16_t port) {
    auto r = http_request(port, "GET", "/ready");
    Readiness out{r.status, {}, {}};
    if (auto body = json_of(r)) {
        out.status = str(*body, "status");
        if (auto* checks = body->if_contains("checks"); checks != nullptr && checks->is_object())
            out.redis = str(checks->as_object(), "redis");
    }
    return out;
}

// Steady traffic of one tenant on one server from a few keep-alive connections.
class Load {
  public:
    Load(std::uint16_t port, std::string token, int connections = 3) {
        for (int i = 0; i < connections; ++i) {
            threads_.emplace_back([this, port, token] {
                test::Connection conn(port);
                while (!stop_.load()) {
                    if (!conn.connected()) conn = test::Connection(port);
                    auto resp = conn.send(test::build_request("GET", kVehicles, idtest::bearer(token)))
                                    ? conn.read_response(5s)
                                    : std::nullopt;
                    if (!resp) {
                        ++transport_errors_;
                        conn = test::Connection(port);
                        continue;
                    }
                    ++total_;
                    if (resp->status >= 500) ++server_errors_;
                    if (resp->status != 200) {
                        std::lock_guard lock(m_);
                        if (first_bad_.empty()) first_bad_ = idtest::describe(*resp);
                    }
                    std::this_thread::sleep_for(2ms);
                }
            });
        }
    }
    ~Load() { stop(); }
    void stop() {
        stop_ = true;
        for (auto& t : threads_)
            if (t.joinable()) t.join();
    }
    int total() const { return total_.load(); }
    int server_errors() const { return server_errors_.load(); }
    int transport_errors() const { return transport_errors_.load(); }
    std::string first_bad() {
        std::lock_guard lock(m_);
        return first_bad_;
    }

  private:
    std::atomic<bool> stop_{false};
    std::atomic<int> total_{0}, server_errors_{0}, transport_errors_{0};
    std::mutex m_;
    std::string first_bad_;
    std::vector<std::thread> threads_;
};

TEST_F(RateLimitOutage, redis_stopped_mid_load_fails_open_fails_closed_where_configured_and_recovers_within_5s) {
    auto& open = env().server();
    auto closed = env().start_server({{"MTAPI_RATE_LIMIT_FAIL", "closed"}});
    auto logins = env().start_server({{"MTAPI_LOGIN_ACCOUNT_ATTEMPTS", "10"}});
    auto busy = new_tenant(env(), "rlo-busy");
    auto small = new_tenant(env(), "rlo-small");
    auto guessed = env().add_user(busy.info, busy.token, "viewer");
    set_limit(env(), small.info.id, 5, 0);

    ASSERT_EQ(ready(env().port()).status, "ready");
    ASSERT_EQ(ready(env().port()).redis, "ok");
    ASSERT_EQ(ready(closed->port()).code, 200);
    ASSERT_EQ(idtest::get(closed->port(), kVehicles, busy.token).status, 200);

    Load load(env().port(), busy.token);
    std::this_thread::sleep_for(500ms);
    ASSERT_GT(load.total(), 0);

    auto stopped = pgtest::services("redis-stop --test");
    ASSERT_EQ(stopped.status, 0) << stopped.output;
    auto down_at = Clock::now();
    std::this_thread::sleep_for(1500ms);

    // Fail-open: degraded but ready, and limits still hold (from the in-process buckets).
    auto r = ready(env().port());
    EXPECT_EQ(r.code, 200);
    EXPECT_EQ(r.status, "degraded");
    EXPECT_EQ(r.redis, "down");
    int ok = 0, limited = 0;
    for (int i = 0; i < 8; ++i) {
        auto resp = idtest::get(env().port(), kVehicles, small.token);
        ok += resp.status == 200 ? 1 : 0;
        limited += resp.status == 429 ? 1 : 0;
        if (resp.status == 429) {
            EXPECT_GE(header_number(resp, "Retry-After"), 1);
        }
    }
    EXPECT_EQ(ok, 5);
    EXPECT_EQ(limited, 3);
    EXPECT_GT(metric(env().port(), "mtapi_ratelimit_fallback_decisions_total"), 0);
    EXPECT_EQ(metric(env().port(), "mtapi_ratelimit_degraded"), 1);

    // Fail-closed: refused, and not ready.
    auto refused = idtest::get(closed->port(), kVehicles, busy.token);
    EXPECT_TRUE(is_problem(refused, 503)) << idtest::describe(refused);
    auto rc = ready(closed->port());
    EXPECT_EQ(rc.code, 503);
    EXPECT_EQ(rc.status, "unavailable");
    EXPECT_EQ(rc.redis, "down");

    // Login throttling still limits guessing, and does not lock out another user.
    int unauthorized = 0, throttled = 0;
    for (int i = 0; i < 12; ++i) {
        auto resp = tenant_login(logins->port(), busy.info.slug, guessed.email, "wrong");
        unauthorized += resp.status == 401 ? 1 : 0;
        throttled += resp.status == 429 ? 1 : 0;
    }
    EXPECT_EQ(unauthorized, 10);
    EXPECT_EQ(throttled, 2);
    EXPECT_EQ(tenant_login(logins->port(), busy.info.slug, busy.info.admin_email, busy.info.admin_password).status,
              200);

    std::printf("Redis down for %lld ms; %d requests so far\n", static_cast<long long>(since(down_at).count()),
                load.total());
    auto started = pgtest::services("redis-start --test");
    ASSERT_EQ(started.status, 0) << started.output;
    auto up_at = Clock::now();
    bool back = false;
    while (since(up_at) < 5s) {
        if (ready(env().port()).status == "ready" && ready(closed->port()).code == 200) {
            back = true;
            break;
        }
        std::this_thread::sleep_for(50ms);
    }
    EXPECT_TRUE(back) << "/ready did not report Redis back within 5 s";
    std::printf("Redis decides again %lld ms after its restart\n", static_cast<long long>(since(up_at).count()));

    // Back to Redis decisions: the fallback counter stands still while requests are decided.
    std::this_thread::sleep_for(300ms);
    double fallback = metric(env().port(), "mtapi_ratelimit_fallback_decisions_total");
    double redis_before = metric(env().port(), R"(mtapi_ratelimit_decisions_total{backend="redis",result="allowed"})");
    // 20 fresh connections: both shards get some of them (SO_REUSEPORT spreads connections).
    for (int i = 0; i < 20; ++i)
        EXPECT_EQ(idtest::get(env().port(), kVehicles, busy.token).status, 200);
    EXPECT_EQ(metric(env().port(), "mtapi_ratelimit_fallback_decisions_total"), fallback);
    EXPECT_GE(metric(env().port(), R"(mtapi_ratelimit_decisions_total{backend="redis",result="allowed"})"),
              redis_before + 20);
    EXPECT_EQ(metric(env().port(), "mtapi_ratelimit_degraded"), 0);
    EXPECT_EQ(idtest::get(closed->port(), kVehicles, busy.token).status, 200);

    load.stop();
    EXPECT_EQ(load.server_errors(), 0) << load.first_bad();
    EXPECT_EQ(load.transport_errors(), 0);
    EXPECT_GT(load.total(), 100);

    // One line per transition, however many shards.
    auto restored = open.wait_for_line(
        [](std::string_view l) { return l.find("rate limiting restored") != std::string_view::npos; }, 2s);
    EXPECT_TRUE(restored) << "no log line says Redis decides again";
    int degraded_lines = 0, restored_lines = 0;
    for (const auto& line : open.lines()) {
        degraded_lines += line.find("rate limiting degraded") != std::string::npos ? 1 : 0;
        restored_lines += line.find("rate limiting restored") != std::string::npos ? 1 : 0;
    }
    EXPECT_EQ(degraded_lines, 1);
    EXPECT_EQ(restored_lines, 1);
}

}  // namespace
}  // namespace mtapi::rltest
