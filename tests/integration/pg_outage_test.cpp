// A database outage seen by one shard's pool: PostgreSQL is stopped for a few seconds and started
// again. Meanwhile callers must get quick unavailable/connection errors, never a hang, and
// afterwards the same pool must serve queries again by itself.
//
// This stops the shared test cluster, so ctest runs it on its own (RUN_SERIAL). PostgreSQL is
// started again in TearDown, and by the watchdog if the test thread gets stuck.

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "pg_test_support.hpp"

namespace mtapi::pgtest {
namespace {

using pg::ErrorKind;

class PgOutage : public ::testing::Test {
  protected:
    void SetUp() override {
        ASSERT_TRUE(database_configured());
        ASSERT_NE(std::getenv("MTAPI_SOURCE_DIR"), nullptr) << "MTAPI_SOURCE_DIR must point at the repository root";
        set_on_hang([] { services("pg-start --test"); });
    }
    void TearDown() override {
        // Whatever happened above: leave PostgreSQL running for everything else.
        auto r = services("pg-start --test");
        EXPECT_EQ(r.status, 0) << r.output;
        set_on_hang(nullptr);
    }
};

asio::awaitable<void> acquire_and_query(pg::Pool& pool) {
    auto lease = co_await pool.acquire(after(1s));
    pg::Query q1{"SELECT 1", {}, false};
    co_await lease->query(std::move(q1), after(1s));
}

bool is_outage_error(ErrorKind k) {
    return k == ErrorKind::unavailable || k == ErrorKind::connection;
}

TEST_F(PgOutage, pool_fails_fast_while_the_database_is_down_and_recovers_by_itself) {
    run(
        [](asio::io_context& ioc) -> asio::awaitable<void> {
            pg::PoolOptions po;
            po.connect = options();
            po.connect.connect_timeout = 1s;
            po.size = 4;
            po.acquire_timeout = 1s;
            pg::Pool pool(ioc, po);

            // Two idle connections, and a third busy with a long statement when the server stops.
            {
                auto a = co_await pool.acquire(after(5s));
                auto b = co_await pool.acquire(after(5s));
                pg::Query q2{"SELECT 1", {}, true};
                co_await a->query(std::move(q2), after(5s));
                pg::Query q3{"SELECT 1", {}, true};
                co_await b->query(std::move(q3), after(5s));
            }
            EXPECT_EQ(pool.stats().idle, 2u);
            auto busy = co_await pool.acquire(after(5s));
            const int busy_pid = busy->backend_pid();
            std::optional<pg::Error> in_flight;
            Join join(ioc);
            asio::co_spawn(
                ioc,
                [&]() -> asio::awaitable<void> {
                    pg::Query q4{"SELECT pg_sleep(30)", {}, false};
                    in_flight = co_await error_of(busy->query(std::move(q4), after(20s)));
                    busy = pg::Pool::Lease();
                },
                join.handler());
            PGTEST_CO_ASSERT_TRUE(co_await wait_until_running(busy_pid, "pg_sleep", 3s));

            auto stop = co_await services_async("pg-stop --test");
            if (stop.status != 0) {
                ADD_FAILURE() << "scripts/services failed (" << stop.status << "):\n" << stop.output;
                co_return;
            }
            const auto stopped_at = Clock::now();

            EXPECT_TRUE(co_await join.wait(5s)) << "the statement in flight is still waiting";
            PGTEST_CO_ASSERT_TRUE(in_flight.has_value());
            EXPECT_TRUE(is_outage_error(in_flight->kind()))
                << pg::kind_name(in_flight->kind()) << ": " << in_flight->what();

            // Five seconds of callers while the server is down.
            int attempts = 0;
            std::map<std::string, int> kinds;  // for the summary line
            int successes = 0;
            milliseconds slowest{0};
            while (since(stopped_at) < 5s) {
                auto t0 = Clock::now();
                auto err = co_await error_of(acquire_and_query(pool));
                slowest = std::max(slowest, since(t0));
                ++attempts;
                if (!err) {
                    ++successes;
                } else {
                    EXPECT_TRUE(is_outage_error(err->kind())) << pg::kind_name(err->kind()) << ": " << err->what();
                    ++kinds[pg::kind_name(err->kind())];
                }
                co_await sleep_for(100ms);
            }
            EXPECT_EQ(successes, 0);
            EXPECT_GE(attempts, 20);
            EXPECT_LT(slowest, 1200ms) << "a caller waited too long during the outage";
            EXPECT_TRUE(pool.degraded());
            EXPECT_GE(pool.stats().connect_failures, 1u);

            auto start = co_await services_async("pg-start --test");
            if (start.status != 0) {
                ADD_FAILURE() << "scripts/services failed (" << start.status << "):\n" << start.output;
                co_return;
            }

            // The same pool recovers once its backoff allows a new connect.
            const auto started_at = Clock::now();
            bool recovered = false;
            while (!recovered && since(started_at) < 15s) {
                auto t0 = Clock::now();
                auto err = co_await error_of(acquire_and_query(pool));
                slowest = std::max(slowest, since(t0));
                if (!err) {
                    recovered = true;
                } else {
                    EXPECT_TRUE(is_outage_error(err->kind())) << pg::kind_name(err->kind()) << ": " << err->what();
                    co_await sleep_for(100ms);
                }
            }
            std::string summary;
            for (const auto& [kind, n] : kinds)
                summary += " " + kind + "=" + std::to_string(n);
            std::printf(
                "outage: %d attempts while down (%s), slowest %lld ms; first success %lld ms after the restart\n",
                attempts, summary.c_str() + (summary.empty() ? 0 : 1), static_cast<long long>(slowest.count()),
                static_cast<long long>(since(started_at).count()));
            EXPECT_TRUE(recovered) << "no query succeeded within 15 s of the restart";
            EXPECT_LT(slowest, 1200ms);
            PGTEST_CO_ASSERT_TRUE(recovered);
            EXPECT_FALSE(pool.degraded());

            // And keeps serving: a burst of concurrent callers all succeed.
            int ok = 0;
            Join burst(ioc);
            for (int i = 0; i < 20; ++i)
                asio::co_spawn(
                    ioc,
                    [&pool, &ok]() -> asio::awaitable<void> {
                        co_await acquire_and_query(pool);
                        ++ok;
                    },
                    burst.handler());
            EXPECT_TRUE(co_await burst.wait(10s));
            EXPECT_TRUE(burst.errors().empty()) << burst.errors().front();
            EXPECT_EQ(ok, 20);
            EXPECT_LE(pool.stats().total, 4u);
        },
        45s);
}

}  // namespace
}  // namespace mtapi::pgtest
