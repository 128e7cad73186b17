// The Redis client (src/redis/) and the Redis-backed rate limiter (src/ratelimit/) against the
// test Redis that `make test` starts (MTAPI_REDIS_URL from .var/test.env): typed replies,
// pipelining, deadlines that drop the connection, reconnects, and the token bucket script's
// promises — exact capacity under concurrency, one capacity shared by independent clients (as by
// two mtapi processes), refill, SCRIPT FLUSH while serving, and a clock that steps back — and the
// reservations a busy bucket is charged through (ADR 007): fewer script runs, the unspent rest
// given back, a changed limit ending them, and two instances never above capacity plus refill.
//
// Every test uses keys of its own (random tenant UUIDs), so the suite runs alongside others;
// stopping Redis is left to redis_outage_test.cpp, which runs on its own.

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_future.hpp>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "pg_test_support.hpp"
#include "ratelimit/failover_limiter.hpp"
#include "ratelimit/login_throttle.hpp"
#include "ratelimit/memory_limiter.hpp"
#include "ratelimit/redis_limiter.hpp"
#include "redis/client.hpp"
#include "util/uuid.hpp"

namespace mtapi::redistest {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using pgtest::after;
using pgtest::Join;
using pgtest::run;
using pgtest::since;
using pgtest::sleep_for;
using ratelimit::Bucket;
using ratelimit::Decision;
using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

std::string redis_url() {
    const char* v = std::getenv("MTAPI_REDIS_URL");
    return v == nullptr ? std::string() : std::string(v);
}

class Redis : public ::testing::Test {
  protected:
    void SetUp() override {
        ASSERT_FALSE(redis_url().empty()) << "MTAPI_REDIS_URL must be set (make test sets it; by hand: "
                                             "scripts/services up --test; set -a; . .var/test.env; set +a)";
    }
};

redis::ClientOptions client_options(std::string url = redis_url()) {
    redis::ClientOptions o;
    o.url = std::move(url);
    return o;
}

std::string fresh_id() {
    return util::to_string(util::uuid_v7());
}

// Awaits `op` and returns the redis::Error it threw, or nullopt.
template <class T>
asio::awaitable<std::optional<redis::Error>> error_of(asio::awaitable<T> op) {
    try {
        co_await std::move(op);
    } catch (const redis::Error& e) {
        co_return e;
    }
    co_return std::nullopt;
}

// Sends one command; arguments are strings or string literals. (A braced list of arguments
// would be a temporary in the statement of a co_await, which GCC 12 miscompiles.)
template <class... Args>
asio::awaitable<redis::Reply> cmd_within(milliseconds limit, redis::Client& c, Args... args) {
    std::vector<std::string> argv;
    (argv.emplace_back(std::move(args)), ...);
    co_return co_await c.command(std::move(argv), after(limit));
}
template <class... Args>
asio::awaitable<redis::Reply> cmd(redis::Client& c, Args... args) {
    return cmd_within(2s, c, std::move(args)...);
}

asio::awaitable<void> ready(redis::Client& c) {
    bool ok = co_await c.wait_healthy(after(5s));
    if (!ok) throw std::runtime_error("Redis did not become healthy within 5 s");
}

// ----------------------------------------------------------------------------- URL

TEST(RedisUrl, parses_host_port_database_and_credentials) {
    auto e = redis::parse_url("redis://127.0.0.1:63800/0");
    EXPECT_EQ(e.host, "127.0.0.1");
    EXPECT_EQ(e.port, 63800);
    EXPECT_EQ(e.db, 0);
    EXPECT_TRUE(e.password.empty());

    e = redis::parse_url("redis://cache.internal");
    EXPECT_EQ(e.host, "cache.internal");
    EXPECT_EQ(e.port, 6379);
    EXPECT_EQ(e.db, 0);

    e = redis::parse_url("redis://:s%40cret@10.1.2.3:7000/5");
    EXPECT_EQ(e.host, "10.1.2.3");
    EXPECT_EQ(e.port, 7000);
    EXPECT_EQ(e.db, 5);
    EXPECT_EQ(e.username, "");
    EXPECT_EQ(e.password, "s@cret");

    e = redis::parse_url("redis://app:pw@[::1]:6380/2");
    EXPECT_EQ(e.host, "::1");
    EXPECT_EQ(e.port, 6380);
    EXPECT_EQ(e.db, 2);
    EXPECT_EQ(e.username, "app");
    EXPECT_EQ(e.password, "pw");

    e = redis::parse_url("redis://secret@localhost/");
    EXPECT_EQ(e.password, "secret");
    EXPECT_EQ(e.username, "");

    for (const char* bad :
         {"", "127.0.0.1:6379", "http://localhost:6379/0", "rediss://localhost/0", "redis://localhost:0/0",
          "redis://localhost/x", "redis://localhost/-1", "redis:///0", "redis://localhost/1/2"}) {
        EXPECT_THROW(redis::parse_url(bad), std::invalid_argument) << bad;
    }
}

// ----------------------------------------------------------------------------- client

TEST_F(Redis, typed_replies_and_error_replies) {
    run([](asio::io_context& ioc) -> asio::awaitable<void> {
        redis::Client c(ioc, client_options());
        co_await ready(c);
        const std::string k = "mtapi-test:" + fresh_id();

        redis::Reply r = co_await cmd(c, "SET", k + ":s", "héllo\r\n\0x");
        EXPECT_EQ(r.type, redis::Reply::Type::status);
        EXPECT_EQ(r.str, "OK");
        r = co_await cmd(c, "GET", k + ":s");
        EXPECT_EQ(r.type, redis::Reply::Type::string);
        EXPECT_EQ(r.str, "héllo\r\n");  // the literal ends at \0: binary-safe up to there
        r = co_await cmd(c, "GET", k + ":missing");
        EXPECT_TRUE(r.is_nil());
        r = co_await cmd(c, "INCRBY", k + ":n", "41");
        EXPECT_EQ(r.type, redis::Reply::Type::integer);
        EXPECT_EQ(r.integer, 41);
        co_await cmd(c, "RPUSH", k + ":l", "a", "b", "c");
        r = co_await cmd(c, "LRANGE", k + ":l", "0", "-1");
        EXPECT_EQ(r.type, redis::Reply::Type::array);
        EXPECT_EQ(r.elements.size(), 3u);
        if (r.elements.size() == 3) {
            EXPECT_EQ(r.elements[2].str, "c");
        }

        // A binary value with an embedded NUL survives the round trip.
        std::string binary("a\0b", 3);
        co_await cmd(c, "SET", k + ":b", binary);
        r = co_await cmd(c, "GET", k + ":b");
        EXPECT_EQ(r.str, binary);

        // An error reply throws Error(reply) with the code, and the connection stays usable.
        auto err = co_await error_of(cmd(c, "INCR", k + ":s"));
        EXPECT_TRUE(err.has_value());
        if (err) {
            EXPECT_EQ(err->kind(), redis::ErrorKind::reply);
            EXPECT_EQ(err->code(), "ERR");
        }
        err = co_await error_of(cmd(c, "LPUSH", k + ":s", "x"));
        EXPECT_TRUE(err && err->code() == "WRONGTYPE") << (err ? err->what() : "no error");
        r = co_await cmd(c, "PING");
        EXPECT_EQ(r.str, "PONG");
        co_await cmd(c, "DEL", k + ":s", k + ":n", k + ":l", k + ":b");
        EXPECT_EQ(c.stats().connects, 1u);
        EXPECT_GE(c.stats().reply_errors, 2u);

        std::string metrics;
        redis::render_metrics(metrics, c.stats());
        EXPECT_NE(metrics.find("mtapi_redis_command_duration_seconds_count"), std::string::npos);
        EXPECT_NE(metrics.find("mtapi_redis_healthy_connections 1"), std::string::npos) << metrics;
    });
}

TEST_F(Redis, pipelined_commands_are_answered_in_order) {
    run([](asio::io_context& ioc) -> asio::awaitable<void> {
        redis::Client c(ioc, client_options());
        co_await ready(c);
        redis::Reply id_before = co_await cmd(c, "CLIENT", "ID");
        constexpr int kCommands = 500;
        std::vector<std::string> got(kCommands);
        Join join(ioc);
        for (int i = 0; i < kCommands; ++i) {
            asio::co_spawn(
                ioc,
                [&c, &got, i]() -> asio::awaitable<void> {
                    // Alternate command kinds so a mix-up between neighbours would show.
                    if (i % 2 == 0) {
                        redis::Reply r = co_await cmd(c, "ECHO", "value-" + std::to_string(i));
                        got[i] = r.str;
                    } else {
                        redis::Reply r = co_await cmd(c, "EVAL", "return ARGV[1] * 2", "0", std::to_string(i));
                        got[i] = "value-" + std::to_string(r.integer / 2);
                    }
                },
                join.handler());
        }
        EXPECT_TRUE(co_await join.wait(10s));
        EXPECT_TRUE(join.errors().empty()) << join.errors().front();
        int wrong = 0;
        for (int i = 0; i < kCommands; ++i)
            wrong += got[i] == "value-" + std::to_string(i) ? 0 : 1;
        EXPECT_EQ(wrong, 0);
        redis::Reply id_after = co_await cmd(c, "CLIENT", "ID");
        EXPECT_EQ(id_before.integer, id_after.integer) << "all commands share one connection";
        EXPECT_EQ(c.stats().connects, 1u);
    });
}

TEST_F(Redis, a_deadline_drops_the_connection_and_the_next_command_reconnects) {
    run([](asio::io_context& ioc) -> asio::awaitable<void> {
        redis::Client c(ioc, client_options());
        co_await ready(c);
        redis::Reply id_before = co_await cmd(c, "CLIENT", "ID");
        const std::string k = "mtapi-test:empty:" + fresh_id();

        // BLPOP on an empty list blocks the connection for 3 s; a PING queued behind it is stuck too.
        std::optional<redis::Error> blocked, behind;
        Clock::time_point blocked_at, behind_at;
        const auto t0 = Clock::now();
        Join join(ioc);
        asio::co_spawn(
            ioc,
            [&]() -> asio::awaitable<void> {
                blocked = co_await error_of(cmd_within(200ms, c, "BLPOP", k, "3"));
                blocked_at = Clock::now();
            },
            join.handler());
        asio::co_spawn(
            ioc,
            [&]() -> asio::awaitable<void> {
                behind = co_await error_of(cmd_within(5s, c, "PING"));
                behind_at = Clock::now();
            },
            join.handler());
        EXPECT_TRUE(co_await join.wait(5s));
        PGTEST_CO_ASSERT_TRUE(blocked.has_value());
        EXPECT_EQ(blocked->kind(), redis::ErrorKind::timeout) << blocked->what();
        EXPECT_LT(blocked_at - t0, 600ms);
        // The command behind it failed with the connection, not after its own 5 s.
        PGTEST_CO_ASSERT_TRUE(behind.has_value());
        EXPECT_EQ(behind->kind(), redis::ErrorKind::connection) << behind->what();
        EXPECT_LT(behind_at - t0, 600ms);

        // The next command opens a new connection at once (no backoff after a healthy connection).
        const auto t1 = Clock::now();
        redis::Reply pong = co_await cmd(c, "PING");
        EXPECT_EQ(pong.str, "PONG");
        EXPECT_LT(since(t1), 500ms);
        redis::Reply id_after = co_await cmd(c, "CLIENT", "ID");
        EXPECT_NE(id_before.integer, id_after.integer);
        EXPECT_TRUE(c.healthy());
        auto s = c.stats();
        EXPECT_GE(s.timeouts, 1u);
        EXPECT_GE(s.drops, 1u);
        EXPECT_EQ(s.connects, 2u);

        // An expired deadline fails without sending anything (and without dropping the connection).
        std::vector<std::string> ping{"PING"};
        auto late = co_await error_of(c.command(std::move(ping), Clock::now() - 1ms));
        EXPECT_TRUE(late && late->kind() == redis::ErrorKind::timeout);
        redis::Reply id_still = co_await cmd(c, "CLIENT", "ID");
        EXPECT_EQ(id_after.integer, id_still.integer);
    });
}

TEST_F(Redis, the_health_loop_notices_a_killed_connection_and_reconnects) {
    run([](asio::io_context& ioc) -> asio::awaitable<void> {
        redis::ClientOptions o = client_options();
        o.health_interval = 200ms;
        redis::Client c(ioc, o);
        redis::Client admin(ioc, client_options());
        co_await ready(c);
        co_await ready(admin);
        redis::Reply id = co_await cmd(c, "CLIENT", "ID");
        co_await cmd(admin, "CLIENT", "KILL", "ID", std::to_string(id.integer));
        // Without any command from the test, the client finds out and connects again.
        const auto t0 = Clock::now();
        bool was_down = false;
        while (since(t0) < 3s) {
            if (!c.healthy()) was_down = true;
            if (was_down && c.healthy()) break;
            co_await sleep_for(5ms);
        }
        EXPECT_TRUE(c.healthy());
        EXPECT_GE(c.stats().drops, 1u);
        EXPECT_EQ(c.stats().connects, 2u);
        redis::Reply id2 = co_await cmd(c, "CLIENT", "ID");
        EXPECT_NE(id.integer, id2.integer);
    });
}

TEST_F(Redis, the_database_number_is_selected) {
    run([](asio::io_context& ioc) -> asio::awaitable<void> {
        auto ep = redis::parse_url(redis_url());
        const std::string db3 = "redis://" + ep.host + ":" + std::to_string(ep.port) + "/3";
        redis::Client c3(ioc, client_options(db3));
        redis::Client c0(ioc, client_options());
        co_await ready(c3);
        co_await ready(c0);
        const std::string k = "mtapi-test:db:" + fresh_id();
        // Sent at once, before the connection could finish its handshake.
        redis::Client fresh(ioc, client_options(db3));
        co_await cmd(fresh, "SET", k, "three");
        redis::Reply in3 = co_await cmd(c3, "GET", k);
        redis::Reply in0 = co_await cmd(c0, "GET", k);
        EXPECT_EQ(in3.str, "three");
        EXPECT_TRUE(in0.is_nil());
        co_await cmd(c3, "DEL", k);
    });
}

TEST_F(Redis, an_unreachable_server_fails_fast_while_backing_off) {
    run([](asio::io_context& ioc) -> asio::awaitable<void> {
        // Port 1 on loopback: connection refused.
        redis::Client c(ioc, client_options("redis://127.0.0.1:1/0"));
        int failures = 0;
        milliseconds slowest{0};
        const auto t0 = Clock::now();
        while (since(t0) < 1s) {
            const auto t = Clock::now();
            auto err = co_await error_of(cmd_within(1s, c, "PING"));
            slowest = std::max(slowest, since(t));
            if (err) {
                ++failures;
                EXPECT_EQ(err->kind(), redis::ErrorKind::connection) << err->what();
            }
            co_await sleep_for(10ms);
        }
        EXPECT_GT(failures, 50);
        EXPECT_LT(slowest, 100ms);
        EXPECT_FALSE(c.healthy());
        auto s = c.stats();
        EXPECT_GE(s.connect_failures, 2u);
        EXPECT_LT(s.connect_failures, 30u) << "reconnects are spaced by the backoff";
        std::printf("unreachable Redis: %d failed commands in 1 s, slowest %lld ms, %llu connect attempts\n", failures,
                    static_cast<long long>(slowest.count()), static_cast<unsigned long long>(s.connect_failures));
    });
}

// ----------------------------------------------------------------------------- Redis limiter

TEST_F(Redis, exactly_capacity_under_concurrent_takes_and_other_tenants_unaffected) {
    run([](asio::io_context& ioc) -> asio::awaitable<void> {
        redis::Client c(ioc, client_options());
        redis::Client admin(ioc, client_options());
        co_await ready(c);
        co_await ready(admin);
        ratelimit::RedisLimiter limiter(c);
        const std::string a = fresh_id();
        const std::string b = fresh_id();
        const Bucket bucket{10, 0};
        int allowed_a = 0, refused_a = 0, allowed_b = 0, bad_retry = 0;
        Join join(ioc);
        for (int i = 0; i < 30; ++i) {
            asio::co_spawn(
                ioc,
                [&]() -> asio::awaitable<void> {
                    Decision d = co_await limiter.take(a, bucket);
                    if (d.allowed) {
                        ++allowed_a;
                    } else {
                        ++refused_a;
                        if (d.retry_after_seconds < 1 || d.remaining != 0 || d.limit != 10) ++bad_retry;
                    }
                },
                join.handler());
            if (i % 3 == 0) {
                asio::co_spawn(
                    ioc,
                    [&]() -> asio::awaitable<void> {
                        Decision d = co_await limiter.take(b, bucket);
                        if (d.allowed) ++allowed_b;
                    },
                    join.handler());
            }
        }
        EXPECT_TRUE(co_await join.wait(10s));
        EXPECT_TRUE(join.errors().empty()) << join.errors().front();
        EXPECT_EQ(allowed_a, 10);
        EXPECT_EQ(refused_a, 20);
        EXPECT_EQ(allowed_b, 10);
        EXPECT_EQ(bad_retry, 0);

        // The bucket's key carries a TTL (a bucket without refill: the idle reset).
        redis::Reply ttl = co_await cmd(admin, "PTTL", ratelimit::RedisLimiter::key(a));
        EXPECT_GT(ttl.integer, 0);
        EXPECT_LE(ttl.integer, ratelimit::kIdleResetSeconds * 1000);
        // A refilling bucket expires soon after it would be full again.
        const std::string r = fresh_id();
        const Bucket refilling{100, 50};
        co_await limiter.take(r, refilling);
        ttl = co_await cmd(admin, "PTTL", ratelimit::RedisLimiter::key(r));
        EXPECT_GT(ttl.integer, 0);
        EXPECT_LE(ttl.integer, 20 + 1000);
        redis::Reply ttype = co_await cmd(admin, "TYPE", ratelimit::RedisLimiter::key(r));
        EXPECT_EQ(ttype.str, "hash");
    });
}

TEST_F(Redis, concurrent_takes_of_one_bucket_are_batched_and_decided_as_if_one_after_another) {
    run([](asio::io_context& ioc) -> asio::awaitable<void> {
        redis::Client c(ioc, client_options());
        co_await ready(c);
        ratelimit::RedisLimiter limiter(c);
        const std::string a = fresh_id();
        const Bucket bucket{10, 0};
        std::vector<long long> remaining_allowed;
        int refused = 0, bad = 0;
        Join join(ioc);
        for (int i = 0; i < 50; ++i) {
            asio::co_spawn(
                ioc,
                [&]() -> asio::awaitable<void> {
                    Decision d = co_await limiter.take(a, bucket);
                    if (d.limit != 10) ++bad;
                    if (d.allowed) {
                        remaining_allowed.push_back(d.remaining);
                        if (d.retry_after_seconds != 0) ++bad;
                    } else {
                        ++refused;
                        if (d.retry_after_seconds < 1 || d.remaining != 0) ++bad;
                    }
                },
                join.handler());
        }
        EXPECT_TRUE(co_await join.wait(10s));
        EXPECT_TRUE(join.errors().empty()) << join.errors().front();
        EXPECT_EQ(refused, 40);
        EXPECT_EQ(bad, 0);
        // Each allowed request saw a different remaining count, 9 down to 0, as if in sequence.
        std::sort(remaining_allowed.begin(), remaining_allowed.end());
        std::vector<long long> expected(10);
        for (int i = 0; i < 10; ++i)
            expected[static_cast<std::size_t>(i)] = i;
        EXPECT_EQ(remaining_allowed, expected);
        // 50 requests that arrived together took a few script runs, not 50.
        EXPECT_EQ(limiter.decisions(), 50u);
        EXPECT_LE(limiter.batches(), 3u);
        EXPECT_GE(limiter.batches(), 1u);

        // A batch is granted what is left: 5 more tokens for 8 requests with capacity raised to 15.
        const Bucket bigger{15, 0};
        int allowed = 0;
        Join more(ioc);
        for (int i = 0; i < 8; ++i) {
            asio::co_spawn(
                ioc,
                [&]() -> asio::awaitable<void> {
                    Decision d = co_await limiter.take(a, bigger);
                    allowed += d.allowed ? 1 : 0;
                },
                more.handler());
        }
        EXPECT_TRUE(co_await more.wait(10s));
        EXPECT_EQ(allowed, 0) << "raising the capacity does not add tokens to a bucket without refill";
    });
}

// Runs `per_instance` concurrent takes on a client and limiter of its own, on its own thread
// and io_context: two of these are what two mtapi processes look like to Redis.
int takes_from_another_instance(const std::string& tenant, Bucket bucket, int per_instance,
                                std::shared_future<void> go) {
    asio::io_context ioc(1);
    redis::Client c(ioc, client_options());
    ratelimit::RedisLimiter limiter(c);
    int allowed = 0;
    auto done = asio::co_spawn(
        ioc,
        [&]() -> asio::awaitable<void> {
            co_await ready(c);
            go.wait();  // both instances connected: start together
            Join join(ioc);
            for (int i = 0; i < per_instance; ++i) {
                asio::co_spawn(
                    ioc,
                    [&]() -> asio::awaitable<void> {
                        Decision d = co_await limiter.take(tenant, bucket);
                        if (d.allowed) ++allowed;
                    },
                    join.handler());
            }
            bool finished = co_await join.wait(10s);
            if (!finished || !join.errors().empty()) throw std::runtime_error("takes failed");
            c.close();
        },
        asio::use_future);
    ioc.run();
    done.get();
    return allowed;
}

TEST_F(Redis, two_independent_instances_share_one_capacity) {
    for (int round = 0; round < 5; ++round) {
        const std::string tenant = fresh_id();
        std::promise<void> go;
        std::shared_future<void> started = go.get_future().share();
        auto first = std::async(std::launch::async, takes_from_another_instance, tenant, Bucket{10, 0}, 15, started);
        auto second = std::async(std::launch::async, takes_from_another_instance, tenant, Bucket{10, 0}, 15, started);
        std::this_thread::sleep_for(100ms);
        go.set_value();
        const int a = first.get();
        const int b = second.get();
        EXPECT_EQ(a + b, 10) << "round " << round << ": " << a << " + " << b;
    }
}

TEST_F(Redis, refill_after_the_advertised_retry_after) {
    run(
        [](asio::io_context& ioc) -> asio::awaitable<void> {
            redis::Client c(ioc, client_options());
            co_await ready(c);
            ratelimit::RedisLimiter limiter(c);
            const std::string t = fresh_id();
            const Bucket bucket{2, 1.0};
            Decision d = co_await limiter.take(t, bucket);
            EXPECT_TRUE(d.allowed);
            EXPECT_EQ(d.limit, 2);
            EXPECT_EQ(d.remaining, 1);
            EXPECT_EQ(d.reset_seconds, 1);
            d = co_await limiter.take(t, bucket);
            EXPECT_TRUE(d.allowed);
            EXPECT_EQ(d.remaining, 0);
            EXPECT_EQ(d.reset_seconds, 2);
            d = co_await limiter.take(t, bucket);
            EXPECT_FALSE(d.allowed);
            EXPECT_EQ(d.retry_after_seconds, 1);
            co_await sleep_for(milliseconds(d.retry_after_seconds * 1000));
            d = co_await limiter.take(t, bucket);
            EXPECT_TRUE(d.allowed) << "allowed again after Retry-After";
            EXPECT_EQ(d.remaining, 0);
            d = co_await limiter.take(t, bucket);
            EXPECT_FALSE(d.allowed);

            // A refund gives one back, never beyond capacity.
            co_await limiter.refund(t, bucket);
            EXPECT_TRUE((co_await limiter.take(t, bucket)).allowed);
            const std::string full = fresh_id();
            co_await limiter.refund(full, bucket);
            co_await limiter.refund(full, bucket);
            int allowed = 0;
            for (int i = 0; i < 5; ++i)
                allowed += (co_await limiter.take(full, bucket)).allowed ? 1 : 0;
            EXPECT_EQ(allowed, 2);

            // Capacity 0 refuses without asking Redis.
            const Bucket zero{0, 1};
            d = co_await limiter.take(t, zero);
            EXPECT_FALSE(d.allowed);
            EXPECT_GE(d.retry_after_seconds, 1);
            // The largest capacity stays exact in Lua's doubles.
            const Bucket largest{ratelimit::kMaxCapacity, 1e9};
            d = co_await limiter.take(fresh_id(), largest);
            EXPECT_TRUE(d.allowed);
            EXPECT_EQ(d.remaining, ratelimit::kMaxCapacity - 1);
        },
        20s);
}

TEST_F(Redis, script_flush_while_taking_surfaces_no_error) {
    run([](asio::io_context& ioc) -> asio::awaitable<void> {
        redis::Client c(ioc, client_options());
        redis::Client admin(ioc, client_options());
        co_await ready(c);
        co_await ready(admin);
        // Every take a script run of its own (no reservations), so the flushes meet calls in flight.
        ratelimit::RedisLimiterOptions options;
        options.reserve_max = 0;
        ratelimit::RedisLimiter limiter(c, options);
        const std::string t = fresh_id();
        bool stop = false;
        int flushes = 0;
        int decisions = 0;
        Join takers(ioc);
        for (int w = 0; w < 8; ++w) {
            asio::co_spawn(
                ioc,
                [&]() -> asio::awaitable<void> {
                    const Bucket big{1'000'000, 1000};
                    for (int i = 0; i < 150; ++i) {
                        Decision d = co_await limiter.take(t, big);
                        if (d.allowed) ++decisions;
                    }
                },
                takers.handler());
        }
        Join flusher(ioc);
        asio::co_spawn(
            ioc,
            [&]() -> asio::awaitable<void> {
                while (!stop) {
                    co_await cmd(admin, "SCRIPT", "FLUSH");
                    ++flushes;
                    co_await sleep_for(3ms);
                }
            },
            flusher.handler());
        EXPECT_TRUE(co_await takers.wait(15s));
        stop = true;
        EXPECT_TRUE(co_await flusher.wait(2s));
        EXPECT_TRUE(takers.errors().empty()) << takers.errors().front();
        EXPECT_EQ(decisions, 8 * 150);
        EXPECT_GT(flushes, 5);
        EXPECT_GE(limiter.script_loads(), 1u);
        std::printf("SCRIPT FLUSH x%d during %d decisions: %llu reloads through EVAL, no error\n", flushes, decisions,
                    static_cast<unsigned long long>(limiter.script_loads()));
    });
}

TEST_F(Redis, a_redis_clock_that_steps_back_never_adds_tokens) {
    run([](asio::io_context& ioc) -> asio::awaitable<void> {
        redis::Client c(ioc, client_options());
        co_await ready(c);
        ratelimit::RedisLimiter limiter(c);
        const std::string t = fresh_id();
        const std::string key = ratelimit::RedisLimiter::key(t);
        // A bucket last written "60 s from now" (as after a failover to a server whose clock is
        // behind), holding no tokens.
        redis::Reply now = co_await cmd(c, "TIME");
        const long long now_us = std::stoll(now.elements.at(0).str) * 1'000'000 + std::stoll(now.elements.at(1).str);
        co_await cmd(c, "HSET", key, "t", "0", "ts", std::to_string(now_us + 60'000'000));
        co_await cmd(c, "PEXPIRE", key, "120000");
        const Bucket bucket{10, 1.0};
        Decision d = co_await limiter.take(t, bucket);
        EXPECT_FALSE(d.allowed);
        EXPECT_EQ(d.remaining, 0);
        EXPECT_GE(d.retry_after_seconds, 1);
        co_await sleep_for(1100ms);
        d = co_await limiter.take(t, bucket);
        EXPECT_FALSE(d.allowed) << "no refill is credited before the stored timestamp";
        redis::Reply tokens = co_await cmd(c, "HGET", key, "t");
        EXPECT_EQ(tokens.str, "0");
        co_await cmd(c, "DEL", key);
    });
}

// The bucket as Redis stores it: micro-tokens and the time of the last write (µs, Redis's clock).
struct Stored {
    long long micro_tokens = 0;
    long long ts_us = 0;
};
asio::awaitable<Stored> stored(redis::Client& admin, const std::string& id) {
    redis::Reply r = co_await cmd(admin, "HMGET", ratelimit::RedisLimiter::key(id), "t", "ts");
    Stored s;
    s.micro_tokens = std::stoll(r.elements.at(0).str);
    s.ts_us = std::stoll(r.elements.at(1).str);
    co_return s;
}

// Takes from `id` until the limiter holds an unspent reservation (RateLimit-Remaining counts Redis's
// tokens plus the shard's unspent ones, and Redis's tokens are as of the last script run), and
// returns how many tokens it holds; 0 if it never did within `tries` takes.
asio::awaitable<long long> take_until_reserved(ratelimit::RedisLimiter& limiter, redis::Client& admin,
                                               const std::string& id, const Bucket& bucket, int tries) {
    for (int i = 0; i < tries; ++i) {
        Decision d = co_await limiter.take(id, bucket);
        if (!d.allowed) co_return 0;
        Stored s = co_await stored(admin, id);
        const long long held = d.remaining - s.micro_tokens / 1'000'000;
        if (held > 0) co_return held;
    }
    co_return 0;
}

TEST_F(Redis, a_busy_bucket_spends_small_reservations_instead_of_a_script_run_per_request) {
    run([](asio::io_context& ioc) -> asio::awaitable<void> {
        redis::Client c(ioc, client_options());
        co_await ready(c);
        ratelimit::RedisLimiter limiter(c);
        const std::string t = fresh_id();
        const Bucket big{1'000'000, 100'000};
        constexpr int kWorkers = 64;
        constexpr int kPerWorker = 100;
        int allowed = 0, bad_remaining = 0;
        Join join(ioc);
        for (int w = 0; w < kWorkers; ++w) {
            asio::co_spawn(
                ioc,
                [&]() -> asio::awaitable<void> {
                    for (int i = 0; i < kPerWorker; ++i) {
                        Decision d = co_await limiter.take(t, big);
                        if (d.allowed) ++allowed;
                        // Below capacity, and a bucket that is not full is not full for at least
                        // a moment more: RateLimit-Reset >= 1.
                        if (d.remaining >= big.capacity || d.limit != big.capacity || d.reset_seconds < 1)
                            ++bad_remaining;
                    }
                },
                join.handler());
        }
        EXPECT_TRUE(co_await join.wait(20s));
        EXPECT_TRUE(join.errors().empty()) << join.errors().front();
        constexpr int kTotal = kWorkers * kPerWorker;
        EXPECT_EQ(allowed, kTotal);
        EXPECT_EQ(bad_remaining, 0);
        EXPECT_EQ(limiter.decisions(), static_cast<std::uint64_t>(kTotal));
        EXPECT_GT(limiter.reserved(), static_cast<std::uint64_t>(kTotal / 2));
        EXPECT_LE(limiter.batches(), static_cast<std::uint64_t>(kTotal / 8));
        std::printf("%d decisions: %llu script runs, %llu from reservations\n", kTotal,
                    static_cast<unsigned long long>(limiter.batches()),
                    static_cast<unsigned long long>(limiter.reserved()));

        // A bucket without refill is never reserved ahead: Redis decides every token of it.
        const std::string quota = fresh_id();
        const std::uint64_t reserved_before = limiter.reserved();
        Join more(ioc);
        for (int w = 0; w < kWorkers; ++w) {
            asio::co_spawn(
                ioc,
                [&]() -> asio::awaitable<void> {
                    for (int i = 0; i < 10; ++i)
                        co_await limiter.take(quota, Bucket{1'000'000, 0});
                },
                more.handler());
        }
        EXPECT_TRUE(co_await more.wait(20s));
        EXPECT_EQ(limiter.reserved(), reserved_before);
    });
}

TEST_F(Redis, an_unused_reservation_is_given_back_to_the_shared_bucket) {
    run([](asio::io_context& ioc) -> asio::awaitable<void> {
        redis::Client c(ioc, client_options());
        redis::Client admin(ioc, client_options());
        co_await ready(c);
        co_await ready(admin);
        ratelimit::RedisLimiter limiter(c);  // reservations of at most 64 tokens for 100 ms
        const std::string t = fresh_id();
        const Bucket bucket{10'000, 1'000};
        for (int i = 0; i < 300; ++i)
            EXPECT_TRUE((co_await limiter.take(t, bucket)).allowed);
        const long long held = co_await take_until_reserved(limiter, admin, t, bucket, 200);
        EXPECT_GT(held, 0) << "a busy bucket is reserved ahead";
        EXPECT_LE(held, 64) << "a reservation never exceeds reserve_max";
        const Stored before = co_await stored(admin, t);

        // Past the reservation period (and idle for two), the next take gives the rest back and
        // takes exactly one token: Redis's bucket shows the refill, the rest, minus one.
        co_await sleep_for(250ms);
        Decision d = co_await limiter.take(t, bucket);
        EXPECT_TRUE(d.allowed);
        const Stored after = co_await stored(admin, t);
        const long long cap = bucket.capacity * 1'000'000;
        const long long refilled = std::min(cap, before.micro_tokens + (after.ts_us - before.ts_us) * 1'000);
        const long long expected = std::min(cap, refilled + held * 1'000'000) - 1'000'000;
        EXPECT_EQ(after.micro_tokens, expected) << "held " << held;
        EXPECT_EQ(d.remaining, after.micro_tokens / 1'000'000) << "an idle bucket starts without a reservation";
    });
}

TEST_F(Redis, a_changed_limit_ends_the_reservation_at_once) {
    run([](asio::io_context& ioc) -> asio::awaitable<void> {
        redis::Client c(ioc, client_options());
        redis::Client admin(ioc, client_options());
        co_await ready(c);
        co_await ready(admin);
        ratelimit::RedisLimiter limiter(c);
        const std::string t = fresh_id();
        const Bucket bucket{10'000, 1'000};
        for (int i = 0; i < 100; ++i)
            co_await limiter.take(t, bucket);
        const long long held = co_await take_until_reserved(limiter, admin, t, bucket, 200);
        PGTEST_CO_ASSERT_TRUE(held > 0);
        const std::uint64_t runs = limiter.batches();
        const Bucket lowered{500, 1'000};
        Decision d = co_await limiter.take(t, lowered);
        EXPECT_EQ(limiter.batches(), runs + 1) << "the new limit is decided by Redis, not from the old reservation";
        EXPECT_EQ(d.limit, 500);
        EXPECT_TRUE(d.allowed);
        EXPECT_LE(d.remaining, 499);
    });
}

TEST_F(Redis, a_reservation_held_while_the_bucket_refills_never_lets_a_burst_exceed_capacity) {
    run(
        [](asio::io_context& ioc) -> asio::awaitable<void> {
            redis::Client c(ioc, client_options());
            co_await ready(c);
            ratelimit::RedisLimiter limiter(c);
            const std::string t = fresh_id();
            const Bucket bucket{1'000, 2'000};  // reservations of up to 62 tokens (1/16 of what is left)
            int over = 0, not_full_but_reset_0 = 0;
            auto check = [&](const Decision& d) {
                if (d.remaining > bucket.capacity - (d.allowed ? 1 : 0)) ++over;
                if (d.remaining < bucket.capacity && d.reset_seconds < 1) ++not_full_but_reset_0;
            };
            // Steady traffic below the refill rate: the bucket stays (nearly) full while the shard
            // keeps reserving ahead.
            bool steady = true;
            Join pace(ioc);
            for (int w = 0; w < 4; ++w) {
                asio::co_spawn(
                    ioc,
                    [&]() -> asio::awaitable<void> {
                        while (steady) {
                            check(co_await limiter.take(t, bucket));
                            co_await sleep_for(5ms);  // 4 callers: at most 800 requests/s
                        }
                    },
                    pace.handler());
            }
            co_await sleep_for(400ms);
            steady = false;
            EXPECT_TRUE(co_await pace.wait(5s));
            EXPECT_GT(limiter.reserved(), 0u) << "the steady phase must have reserved ahead";

            // Then a burst: what the shard still holds plus the bucket is at most the capacity,
            // so the burst gets at most the capacity plus what refilled while it ran.
            int allowed = 0;
            Join burst(ioc);
            const auto t0 = Clock::now();
            for (int w = 0; w < 64; ++w) {
                asio::co_spawn(
                    ioc,
                    [&]() -> asio::awaitable<void> {
                        for (;;) {
                            Decision d = co_await limiter.take(t, bucket);
                            check(d);
                            if (!d.allowed) break;
                            ++allowed;
                        }
                    },
                    burst.handler());
            }
            EXPECT_TRUE(co_await burst.wait(10s));
            const double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
            EXPECT_TRUE(burst.errors().empty()) << burst.errors().front();
            EXPECT_LE(allowed, 1'000 + static_cast<int>(2'000 * elapsed) + 1) << elapsed << " s";
            EXPECT_EQ(over, 0) << "RateLimit-Remaining never exceeds the capacity (minus the token just taken)";
            EXPECT_EQ(not_full_but_reset_0, 0)
                << "RateLimit-Reset is >= 1 while RateLimit-Remaining is below the limit";
            std::printf("burst after steady traffic: %d allowed in %.3f s (capacity 1000 + 2000/s)\n", allowed,
                        elapsed);
        },
        30s);
}

TEST_F(Redis, reservations_never_let_two_instances_exceed_capacity_plus_refill) {
    run(
        [](asio::io_context& ioc) -> asio::awaitable<void> {
            redis::Client c1(ioc, client_options());
            redis::Client c2(ioc, client_options());
            co_await ready(c1);
            co_await ready(c2);
            ratelimit::RedisLimiter one(c1);
            ratelimit::RedisLimiter two(c2);
            const std::string t = fresh_id();
            const Bucket bucket{300, 1'000};
            int allowed = 0;
            bool stop = false;
            Join join(ioc);
            const auto t0 = Clock::now();
            for (int w = 0; w < 64; ++w) {
                ratelimit::RedisLimiter& limiter = w % 2 == 0 ? one : two;
                asio::co_spawn(
                    ioc,
                    [&]() -> asio::awaitable<void> {
                        while (!stop) {
                            Decision d = co_await limiter.take(t, bucket);
                            if (d.allowed)
                                ++allowed;
                            else
                                co_await sleep_for(1ms);
                        }
                    },
                    join.handler());
            }
            co_await sleep_for(400ms);
            stop = true;
            EXPECT_TRUE(co_await join.wait(10s));
            const double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
            EXPECT_TRUE(join.errors().empty()) << join.errors().front();
            // Redis granted at most the capacity plus what refilled between the first and the last
            // call, and every allowed request spent one of those tokens.
            EXPECT_LE(allowed, 300 + static_cast<int>(1'000 * elapsed) + 1) << elapsed << " s";
            EXPECT_GE(allowed, 300);
            EXPECT_GT(one.reserved() + two.reserved(), 0u);
            std::printf("%d allowed in %.3f s (capacity 300 + 1000/s); %llu + %llu from reservations\n", allowed,
                        elapsed, static_cast<unsigned long long>(one.reserved()),
                        static_cast<unsigned long long>(two.reserved()));
        },
        30s);
}

TEST_F(Redis, memory_and_redis_backends_agree) {
    run([](asio::io_context& ioc) -> asio::awaitable<void> {
        redis::Client c(ioc, client_options());
        co_await ready(c);
        ratelimit::RedisLimiter redis_limiter(c);
        ratelimit::MemoryLimiter memory;
        const std::string t = fresh_id();
        const std::vector<Bucket> buckets = {Bucket{5, 0}, Bucket{3, 0.001}};
        for (const Bucket& b : buckets) {
            const std::string id = t + std::to_string(b.capacity);
            for (int i = 0; i < 8; ++i) {
                Decision r = co_await redis_limiter.take(id, b);
                Decision m = memory.take_now(id, b);
                EXPECT_EQ(r.allowed, m.allowed) << i;
                EXPECT_EQ(r.remaining, m.remaining) << i;
                EXPECT_EQ(r.limit, m.limit) << i;
                EXPECT_EQ(r.allowed, r.retry_after_seconds == 0) << i;
                EXPECT_NEAR(static_cast<double>(r.reset_seconds), static_cast<double>(m.reset_seconds), 1.0) << i;
                EXPECT_NEAR(static_cast<double>(r.retry_after_seconds), static_cast<double>(m.retry_after_seconds), 1.0)
                    << i;
            }
        }
    });
}

TEST_F(Redis, decision_latency_figures) {
    run(
        [](asio::io_context& ioc) -> asio::awaitable<void> {
            redis::Client c(ioc, client_options());
            co_await ready(c);
            for (long long reserve_max : {0LL, 64LL}) {
                // A figure, not a check: a generous deadline, so a loaded machine slows it down
                // instead of failing it.
                ratelimit::RedisLimiterOptions options;
                options.timeout = std::chrono::seconds(10);
                options.reserve_max = reserve_max;
                ratelimit::RedisLimiter limiter(c, options);
                const std::string t = fresh_id();
                const Bucket open{1'000'000, 100'000};
                co_await limiter.take(t, open);  // the script is cached from here on
                constexpr int kSequential = 2000;
                auto t0 = Clock::now();
                for (int i = 0; i < kSequential; ++i)
                    co_await limiter.take(t, open);
                const double sequential_us =
                    std::chrono::duration<double, std::micro>(Clock::now() - t0).count() / kSequential;

                // 64 coroutines at once, as a busy shard would have: pipelined on the one connection.
                constexpr int kWorkers = 64;
                constexpr int kPerWorker = 300;
                Join join(ioc);
                t0 = Clock::now();
                for (int w = 0; w < kWorkers; ++w) {
                    asio::co_spawn(
                        ioc,
                        [&]() -> asio::awaitable<void> {
                            for (int i = 0; i < kPerWorker; ++i)
                                co_await limiter.take(t, open);
                        },
                        join.handler());
                }
                EXPECT_TRUE(co_await join.wait(30s));
                EXPECT_TRUE(join.errors().empty()) << join.errors().front();
                const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
                std::printf(
                    "Redis limiter (reservations up to %lld): %.1f us per sequential decision; %.0f decisions/s "
                    "with %d concurrent callers on one connection; %llu script runs for %llu decisions\n",
                    reserve_max, sequential_us, kWorkers * kPerWorker / seconds, kWorkers,
                    static_cast<unsigned long long>(limiter.batches()),
                    static_cast<unsigned long long>(limiter.decisions()));
            }
        },
        60s);
}

// ----------------------------------------------------------------------------- failover, login

TEST_F(Redis, failover_limiter_decides_through_redis_while_healthy) {
    run([](asio::io_context& ioc) -> asio::awaitable<void> {
        redis::Client c(ioc, client_options());
        co_await ready(c);
        ratelimit::MemoryLimiter memory;
        ratelimit::FailoverLimiter limiter(c, memory);
        const std::string t = fresh_id();
        const Bucket bucket{10, 0};
        for (int i = 0; i < 12; ++i) {
            Decision d = co_await limiter.take(t, bucket);
            EXPECT_FALSE(d.fallback);
            EXPECT_EQ(d.allowed, i < 10);
        }
        EXPECT_FALSE(limiter.degraded());
        auto s = limiter.stats();
        EXPECT_EQ(s.redis_allowed, 10u);
        EXPECT_EQ(s.redis_limited, 2u);
        EXPECT_EQ(s.fallback_allowed + s.fallback_limited, 0u);
        EXPECT_EQ(memory.size(), 0u) << "the in-process buckets are not touched while Redis answers";
    });
}

TEST_F(Redis, a_fresh_failover_limiter_waits_for_the_first_connection_instead_of_falling_back) {
    run([](asio::io_context& ioc) -> asio::awaitable<void> {
        // No ready(): the client is still connecting when the first decision is asked for, as on
        // a server that just started.
        redis::Client c(ioc, client_options());
        ratelimit::MemoryLimiter memory;
        ratelimit::FailoverLimiter limiter(c, memory);
        EXPECT_FALSE(c.healthy());
        Decision d = co_await limiter.take(fresh_id(), Bucket{5, 0});
        EXPECT_TRUE(d.allowed);
        EXPECT_FALSE(d.fallback) << "decided in process while the first connection was opening";
        EXPECT_EQ(limiter.stats().redis_allowed, 1u);
        EXPECT_EQ(memory.size(), 0u);
    });
}

TEST_F(Redis, failover_limiter_without_a_reachable_redis) {
    run([](asio::io_context& ioc) -> asio::awaitable<void> {
        redis::Client c(ioc, client_options("redis://127.0.0.1:1/0"));
        ratelimit::MemoryLimiter memory;
        auto monitor = std::make_shared<ratelimit::FailoverMonitor>();
        ratelimit::FailoverLimiter open(c, memory, {}, monitor);
        ratelimit::FailoverOptions closed_options;
        closed_options.mode = ratelimit::FailMode::closed;
        ratelimit::FailoverLimiter closed(c, memory, closed_options, monitor);
        const std::string t = fresh_id();
        const Bucket bucket{5, 0};
        for (int i = 0; i < 7; ++i) {
            Decision d = co_await open.take(t, bucket);
            EXPECT_TRUE(d.fallback);
            EXPECT_EQ(d.allowed, i < 5);
        }
        EXPECT_TRUE(open.degraded());
        EXPECT_TRUE(monitor->degraded());
        bool unavailable = false;
        try {
            co_await closed.take(t, bucket);
        } catch (const ratelimit::Unavailable&) {
            unavailable = true;
        }
        EXPECT_TRUE(unavailable);
        EXPECT_EQ(closed.stats().unavailable, 1u);
        EXPECT_EQ(open.stats().fallback_allowed, 5u);
        EXPECT_EQ(open.stats().fallback_limited, 2u);
    });
}

TEST_F(Redis, login_throttle_through_redis) {
    run([](asio::io_context& ioc) -> asio::awaitable<void> {
        redis::Client c(ioc, client_options());
        co_await ready(c);
        ratelimit::MemoryLimiter memory;
        ratelimit::FailoverLimiter limiter(c, memory);
        ratelimit::LoginThrottle throttle(limiter);
        const std::string slug = "t" + fresh_id().substr(24, 12);  // the random end of a UUIDv7
        // An address of its own too: address budgets outlive a test run in Redis (15 minutes).
        const std::string address = "2001:db8:" + fresh_id().substr(24, 4) + ":" + fresh_id().substr(32, 4) + "::1";
        int allowed = 0;
        ratelimit::LoginVerdict last;
        for (int i = 0; i < 20; ++i) {
            last = co_await throttle.begin(slug, "eve@example.com", address);
            if (last.allowed) ++allowed;
        }
        EXPECT_EQ(allowed, 10);
        EXPECT_FALSE(last.allowed);
        EXPECT_FALSE(last.fallback);
        EXPECT_GE(last.retry_after_seconds, 1);
        ratelimit::LoginVerdict other = co_await throttle.begin(slug, "frank@example.com", address);
        EXPECT_TRUE(other.allowed);
        co_await throttle.succeeded(slug, "frank@example.com", address);
        const std::string eve_key =
            ratelimit::RedisLimiter::key(ratelimit::LoginThrottle::account_id(slug, "eve@example.com"));
        redis::Reply ttl = co_await cmd(c, "PTTL", eve_key);
        EXPECT_GT(ttl.integer, 0);
    });
}

}  // namespace
}  // namespace mtapi::redistest
