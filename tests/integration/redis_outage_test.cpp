// A Redis outage seen by one shard's rate limiter: Redis is stopped for a few seconds and started
// again. Meanwhile fail-open decisions must keep coming from the in-process buckets (marked
// fallback, never an exception, never a slow answer), fail-closed must refuse with Unavailable,
// login throttling must keep limiting; afterwards Redis must decide again within 5 s without any
// help.
//
// This stops the shared test Redis, so ctest runs it on its own (RUN_SERIAL). Redis is started
// again in TearDown, and by the watchdog if the test thread gets stuck.

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "pg_test_support.hpp"
#include "ratelimit/failover_limiter.hpp"
#include "ratelimit/login_throttle.hpp"
#include "ratelimit/memory_limiter.hpp"
#include "redis/client.hpp"
#include "util/uuid.hpp"

namespace mtapi::redistest {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using pgtest::run;
using pgtest::services;
using pgtest::services_async;
using pgtest::set_on_hang;
using pgtest::since;
using pgtest::sleep_for;
using ratelimit::Bucket;
using ratelimit::Decision;
using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

class RedisOutage : public ::testing::Test {
  protected:
    void SetUp() override {
        const char* url = std::getenv("MTAPI_REDIS_URL");
        ASSERT_TRUE(url != nullptr && *url != '\0') << "MTAPI_REDIS_URL must be set (make test sets it)";
        ASSERT_NE(std::getenv("MTAPI_SOURCE_DIR"), nullptr) << "MTAPI_SOURCE_DIR must point at the repository root";
        set_on_hang([] { services("redis-start --test"); });
    }
    void TearDown() override {
        // Whatever happened above: leave Redis running for everything else.
        auto r = services("redis-start --test");
        EXPECT_EQ(r.status, 0) << r.output;
        set_on_hang(nullptr);
    }
};

std::string fresh_id() {
    return util::to_string(util::uuid_v7());
}

// Takes from the fail-closed limiter; true when it refused with Unavailable.
asio::awaitable<bool> refused_as_unavailable(ratelimit::FailoverLimiter& closed, std::string id, Bucket bucket) {
    try {
        co_await closed.take(id, bucket);
    } catch (const ratelimit::Unavailable&) {
        co_return true;
    }
    co_return false;
}

TEST_F(RedisOutage, decisions_continue_in_process_and_return_to_redis_by_themselves) {
    run(
        [](asio::io_context& ioc) -> asio::awaitable<void> {
            redis::ClientOptions o;
            o.url = std::getenv("MTAPI_REDIS_URL");
            redis::Client client(ioc, o);
            ratelimit::MemoryLimiter memory;
            auto monitor = std::make_shared<ratelimit::FailoverMonitor>();
            ratelimit::FailoverLimiter open(client, memory, {}, monitor);
            ratelimit::FailoverOptions closed_options;
            closed_options.mode = ratelimit::FailMode::closed;
            ratelimit::FailoverLimiter closed(client, memory, closed_options, monitor);
            ratelimit::LoginThrottle logins(open);

            PGTEST_CO_ASSERT_TRUE(co_await client.wait_healthy(pgtest::after(5s)));
            const std::string busy = fresh_id();
            const Bucket roomy{1'000'000, 1000};
            Decision d = co_await open.take(busy, roomy);
            EXPECT_TRUE(d.allowed);
            EXPECT_FALSE(d.fallback);
            EXPECT_FALSE(co_await refused_as_unavailable(closed, busy, roomy));
            EXPECT_FALSE(open.degraded());

            // A steady stream of decisions while Redis goes away.
            bool stop = false;
            int decisions = 0, fallbacks = 0, exceptions = 0;
            milliseconds slowest_while_down{0};
            std::optional<Clock::time_point> first_fallback;
            pgtest::Join stream(ioc);
            asio::co_spawn(
                ioc,
                [&]() -> asio::awaitable<void> {
                    while (!stop) {
                        const auto t0 = Clock::now();
                        try {
                            Decision x = co_await open.take(busy, roomy);
                            ++decisions;
                            if (x.fallback) {
                                ++fallbacks;
                                if (!first_fallback) first_fallback = Clock::now();
                                slowest_while_down = std::max(slowest_while_down, since(t0));
                            }
                        } catch (const std::exception& e) {
                            ++exceptions;
                            ADD_FAILURE() << "fail-open take threw: " << e.what();
                        }
                        co_await sleep_for(5ms);
                    }
                },
                stream.handler());

            co_await sleep_for(100ms);
            const auto stop_requested = Clock::now();
            auto stop_result = co_await services_async("redis-stop --test");
            if (stop_result.status != 0) {
                stop = true;
                co_await stream.wait(2s);
                ADD_FAILURE() << "scripts/services failed (" << stop_result.status << "):\n" << stop_result.output;
                co_return;
            }
            const auto stopped_at = Clock::now();

            // Within a moment every decision is made in process.
            while (!first_fallback && since(stopped_at) < 3s)
                co_await sleep_for(10ms);
            PGTEST_CO_ASSERT_TRUE(first_fallback.has_value());
            // Measured from the request to stop: Redis goes away while the script runs.
            const auto detect = std::chrono::duration_cast<milliseconds>(*first_fallback - stop_requested);
            co_await sleep_for(2s);
            EXPECT_TRUE(open.degraded());
            EXPECT_TRUE(closed.degraded());
            EXPECT_TRUE(monitor->degraded());
            EXPECT_FALSE(client.healthy());
            EXPECT_TRUE(co_await refused_as_unavailable(closed, busy, roomy));

            // Limits still hold while down: capacity 5 without refill → exactly 5.
            const std::string small = fresh_id();
            const Bucket five{5, 0};
            int allowed = 0;
            for (int i = 0; i < 12; ++i) {
                Decision x = co_await open.take(small, five);
                EXPECT_TRUE(x.fallback);
                if (x.allowed) ++allowed;
                if (!x.allowed) {
                    EXPECT_GE(x.retry_after_seconds, 1);
                }
            }
            EXPECT_EQ(allowed, 5);

            // And so does login throttling: 10 failures, then refused.
            const std::string login_tenant = "outage-" + small.substr(24, 8);
            const std::string login_address = "2001:db8:" + small.substr(24, 4) + ":" + small.substr(32, 4) + "::7";
            int logins_allowed = 0;
            ratelimit::LoginVerdict last;
            for (int i = 0; i < 20; ++i) {
                last = co_await logins.begin(login_tenant, "mallory@example.com", login_address);
                if (last.allowed) ++logins_allowed;
            }
            EXPECT_EQ(logins_allowed, 10);
            EXPECT_FALSE(last.allowed);
            EXPECT_TRUE(last.fallback);

            const int down_decisions = decisions;
            const auto start_requested = Clock::now();
            auto start_result = co_await services_async("redis-start --test");
            if (start_result.status != 0) {
                stop = true;
                co_await stream.wait(2s);
                ADD_FAILURE() << "scripts/services failed (" << start_result.status << "):\n" << start_result.output;
                co_return;
            }
            const auto started_at = Clock::now();

            // Back to Redis by itself: the stream's decisions stop being fallbacks.
            const int fallbacks_at_start = fallbacks;
            int fallbacks_seen = fallbacks;
            auto last_fallback_change = Clock::now();
            while (since(started_at) < 10s) {
                if (fallbacks != fallbacks_seen) {
                    fallbacks_seen = fallbacks;
                    last_fallback_change = Clock::now();
                }
                if (!open.degraded() && since(last_fallback_change) > 300ms) break;
                co_await sleep_for(10ms);
            }
            // From the request to start (Redis may come back, and be noticed, while the script runs).
            const auto back_after = std::chrono::duration_cast<milliseconds>(last_fallback_change - start_requested);
            stop = true;
            EXPECT_TRUE(co_await stream.wait(2s));
            EXPECT_FALSE(open.degraded());
            EXPECT_FALSE(closed.degraded());  // live: no decision of its own needed
            EXPECT_TRUE(client.healthy());
            EXPECT_LT(back_after, 5s) << "Redis decisions did not resume within 5 s of Redis returning";

            d = co_await open.take(busy, roomy);
            EXPECT_FALSE(d.fallback);
            EXPECT_FALSE(co_await refused_as_unavailable(closed, busy, roomy));
            // The process-wide view follows the shards' decisions: both limiters decided again.
            EXPECT_FALSE(monitor->degraded());
            EXPECT_EQ(exceptions, 0);

            auto s = open.stats();
            auto cs = client.stats();
            std::printf(
                "outage: first fallback %lld ms after the stop was requested, slowest fallback decision %lld ms; %d "
                "decisions, "
                "%d while down (fallback %d); Redis decides again %lld ms after the start was requested (%d fallbacks "
                "meanwhile); "
                "client: %llu connects, %llu connect failures, %llu drops\n",
                static_cast<long long>(detect.count()), static_cast<long long>(slowest_while_down.count()), decisions,
                down_decisions, fallbacks, static_cast<long long>(back_after.count()), fallbacks - fallbacks_at_start,
                static_cast<unsigned long long>(cs.connects), static_cast<unsigned long long>(cs.connect_failures),
                static_cast<unsigned long long>(cs.drops));
            // Well below the 200 ms Redis deadline: no fallback decision waited on the dead connection.
            EXPECT_LT(slowest_while_down, 150ms) << "a fallback decision waited on the dead connection";
            EXPECT_GT(s.fallback_allowed, 0u);
            EXPECT_GE(closed.stats().unavailable, 1u);
        },
        60s);
}

}  // namespace
}  // namespace mtapi::redistest
