// The in-process rate limiter (ratelimit::MemoryLimiter) and the login throttle on top of it:
// token bucket arithmetic against an injected clock, capacity bounds, exactness under
// concurrent takes from many threads, and the embedded Lua script's build-time SHA-1.

#include <gtest/gtest.h>
#include <openssl/sha.h>

#include <atomic>
#include <barrier>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <cmath>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "ratelimit/failover_limiter.hpp"
#include "ratelimit/limiter.hpp"
#include "ratelimit/login_throttle.hpp"
#include "ratelimit/memory_limiter.hpp"
#include "ratelimit/metrics.hpp"
#include "ratelimit/script.hpp"

namespace mtapi::ratelimit {
namespace {

constexpr std::int64_t kSecond = 1'000'000'000;
constexpr std::int64_t kMs = 1'000'000;

// A MemoryLimiter on a clock the test moves by hand (starting well away from zero).
class ManualClock : public ::testing::Test {
  protected:
    std::atomic<std::int64_t> now{1000 * kSecond};
    MemoryLimiter limiter{options()};

    MemoryLimiterOptions options(std::size_t max_entries = std::size_t{1} << 20) {
        MemoryLimiterOptions o;
        o.max_entries = max_entries;
        o.clock = [this] { return now.load(); };
        return o;
    }
    void advance(std::int64_t ns) { now += ns; }
};

TEST_F(ManualClock, no_refill_allows_exactly_capacity_then_refuses_with_retry_after) {
    const Bucket b{10, 0};
    for (int i = 0; i < 10; ++i) {
        Decision d = limiter.take_now("a", b);
        ASSERT_TRUE(d.allowed) << i;
        EXPECT_EQ(d.limit, 10);
        EXPECT_EQ(d.remaining, 9 - i);
        EXPECT_EQ(d.retry_after_seconds, 0);
        EXPECT_FALSE(d.fallback);
    }
    Decision d = limiter.take_now("a", b);
    EXPECT_FALSE(d.allowed);
    EXPECT_EQ(d.remaining, 0);
    EXPECT_EQ(d.limit, 10);
    EXPECT_GE(d.retry_after_seconds, 1);
    EXPECT_EQ(d.retry_after_seconds, kIdleResetSeconds);  // never refills: forgotten after a quiet day
    EXPECT_EQ(d.reset_seconds, kIdleResetSeconds);
    advance(3600 * kSecond);
    EXPECT_FALSE(limiter.take_now("a", b).allowed);
}

TEST_F(ManualClock, a_bucket_without_refill_starts_over_after_a_quiet_day) {
    const Bucket b{2, 0};
    EXPECT_TRUE(limiter.take_now("q", b).allowed);
    EXPECT_TRUE(limiter.take_now("q", b).allowed);
    advance((kIdleResetSeconds - 1) * kSecond);
    Decision d = limiter.take_now("q", b);
    EXPECT_FALSE(d.allowed);
    EXPECT_EQ(d.retry_after_seconds, 1);
    advance(kSecond);
    d = limiter.take_now("q", b);
    EXPECT_TRUE(d.allowed);
    EXPECT_EQ(d.remaining, 1);
}

TEST_F(ManualClock, refill_adds_tokens_over_time_up_to_capacity) {
    const Bucket b{10, 1.0};  // one token per second
    for (int i = 0; i < 10; ++i)
        ASSERT_TRUE(limiter.take_now("r", b).allowed);
    Decision d = limiter.take_now("r", b);
    EXPECT_FALSE(d.allowed);
    EXPECT_EQ(d.retry_after_seconds, 1);
    EXPECT_EQ(d.reset_seconds, 10);

    advance(500 * kMs);
    d = limiter.take_now("r", b);
    EXPECT_FALSE(d.allowed);
    EXPECT_EQ(d.retry_after_seconds, 1);  // 0.5 s rounded up: never 0
    EXPECT_EQ(d.reset_seconds, 10);       // 9.5 s rounded up

    advance(500 * kMs);
    d = limiter.take_now("r", b);
    EXPECT_TRUE(d.allowed);
    EXPECT_EQ(d.remaining, 0);
    EXPECT_FALSE(limiter.take_now("r", b).allowed);

    // A long pause fills the bucket but never beyond capacity.
    advance(3600 * kSecond);
    d = limiter.take_now("r", b);
    EXPECT_TRUE(d.allowed);
    EXPECT_EQ(d.remaining, 9);
    EXPECT_EQ(d.reset_seconds, 1);
    for (int i = 0; i < 9; ++i)
        ASSERT_TRUE(limiter.take_now("r", b).allowed);
    EXPECT_FALSE(limiter.take_now("r", b).allowed);
}

TEST_F(ManualClock, fractional_refill_rates) {
    const Bucket b{1, 0.5};  // one token every 2 s
    EXPECT_TRUE(limiter.take_now("f", b).allowed);
    Decision d = limiter.take_now("f", b);
    EXPECT_FALSE(d.allowed);
    EXPECT_EQ(d.retry_after_seconds, 2);
    advance(1999 * kMs);
    d = limiter.take_now("f", b);
    EXPECT_FALSE(d.allowed);
    EXPECT_EQ(d.retry_after_seconds, 1);
    advance(1 * kMs);
    EXPECT_TRUE(limiter.take_now("f", b).allowed);

    // 3 tokens per second: 300 takes over 100 s, never more.
    const Bucket fast{3, 3.0};
    int allowed = 0;
    for (int step = 0; step < 1000; ++step) {
        if (limiter.take_now("fast", fast).allowed) ++allowed;
        if (limiter.take_now("fast", fast).allowed) ++allowed;
        advance(100 * kMs);
    }
    EXPECT_EQ(allowed, 3 + 300 - 1);  // the initial burst, then 3/s over 99.9 s of refill
}

TEST_F(ManualClock, reset_is_the_time_until_full) {
    const Bucket b{10, 2.0};  // 0.5 s per token
    Decision d = limiter.take_now("z", b);
    EXPECT_EQ(d.reset_seconds, 1);  // 0.5 s rounded up
    for (int i = 0; i < 5; ++i)
        d = limiter.take_now("z", b);
    EXPECT_EQ(d.remaining, 4);
    EXPECT_EQ(d.reset_seconds, 3);  // 6 tokens missing
    advance(3 * kSecond);
    d = limiter.take_now("z", b);
    EXPECT_EQ(d.remaining, 9);
}

TEST_F(ManualClock, capacity_bounds) {
    Decision d = limiter.take_now("zero", Bucket{0, 100});
    EXPECT_FALSE(d.allowed);
    EXPECT_EQ(d.limit, 0);
    EXPECT_EQ(d.remaining, 0);
    EXPECT_GE(d.retry_after_seconds, 1);

    d = limiter.take_now("neg", Bucket{-5, 1});
    EXPECT_FALSE(d.allowed);
    EXPECT_EQ(d.limit, 0);

    d = limiter.take_now("huge", Bucket{std::numeric_limits<long long>::max(), 1e300});
    EXPECT_TRUE(d.allowed);
    EXPECT_EQ(d.limit, kMaxCapacity);
    EXPECT_EQ(d.remaining, kMaxCapacity - 1);

    // Negative and NaN refill rates mean no refill.
    const Bucket nan_rate{1, std::nan("")};
    EXPECT_TRUE(limiter.take_now("nan", nan_rate).allowed);
    advance(60 * kSecond);
    EXPECT_FALSE(limiter.take_now("nan", nan_rate).allowed);
    const Bucket negative{1, -3};
    EXPECT_TRUE(limiter.take_now("negr", negative).allowed);
    advance(60 * kSecond);
    EXPECT_FALSE(limiter.take_now("negr", negative).allowed);

    // A refill so slow that filling would take longer than 2^61 ns counts as no refill.
    const Bucket glacial{1000, 1e-12};
    for (int i = 0; i < 1000; ++i)
        ASSERT_TRUE(limiter.take_now("glacial", glacial).allowed);
    EXPECT_FALSE(limiter.take_now("glacial", glacial).allowed);
}

TEST_F(ManualClock, refund_gives_a_token_back_but_never_beyond_capacity) {
    const Bucket b{3, 0};
    limiter.refund_now("x", b);  // on a full bucket: no effect
    for (int i = 0; i < 3; ++i)
        ASSERT_TRUE(limiter.take_now("x", b).allowed);
    EXPECT_FALSE(limiter.take_now("x", b).allowed);
    limiter.refund_now("x", b);
    EXPECT_TRUE(limiter.take_now("x", b).allowed);
    EXPECT_FALSE(limiter.take_now("x", b).allowed);

    const Bucket r{3, 1.0};
    limiter.refund_now("y", r);
    limiter.refund_now("y", r);
    int allowed = 0;
    for (int i = 0; i < 10; ++i)
        allowed += limiter.take_now("y", r).allowed ? 1 : 0;
    EXPECT_EQ(allowed, 3);
    limiter.refund_now("y", r);
    EXPECT_TRUE(limiter.take_now("y", r).allowed);
    EXPECT_FALSE(limiter.take_now("y", r).allowed);
}

TEST_F(ManualClock, buckets_are_independent) {
    const Bucket b{2, 0};
    EXPECT_TRUE(limiter.take_now("tenant-a", b).allowed);
    EXPECT_TRUE(limiter.take_now("tenant-a", b).allowed);
    EXPECT_FALSE(limiter.take_now("tenant-a", b).allowed);
    EXPECT_TRUE(limiter.take_now("tenant-b", b).allowed);
    EXPECT_TRUE(limiter.take_now("tenant-b", b).allowed);
    EXPECT_EQ(limiter.size(), 2u);
}

TEST_F(ManualClock, switching_between_refill_and_no_refill_starts_full) {
    EXPECT_TRUE(limiter.take_now("s", Bucket{1, 0}).allowed);
    EXPECT_FALSE(limiter.take_now("s", Bucket{1, 0}).allowed);
    EXPECT_TRUE(limiter.take_now("s", Bucket{1, 1.0}).allowed);
    EXPECT_FALSE(limiter.take_now("s", Bucket{1, 1.0}).allowed);
    EXPECT_TRUE(limiter.take_now("s", Bucket{1, 0}).allowed);
}

TEST_F(ManualClock, a_clock_that_steps_back_never_refills) {
    const Bucket b{2, 1.0};
    EXPECT_TRUE(limiter.take_now("c", b).allowed);
    EXPECT_TRUE(limiter.take_now("c", b).allowed);
    advance(-30 * kSecond);
    Decision d = limiter.take_now("c", b);
    EXPECT_FALSE(d.allowed);
    EXPECT_EQ(d.remaining, 0);
    EXPECT_GE(d.retry_after_seconds, 1);
}

TEST_F(ManualClock, the_table_is_bounded_and_overflowing_keys_share_buckets) {
    MemoryLimiter small(options(64));
    const Bucket b{1000, 0};
    for (int i = 0; i < 2000; ++i)
        ASSERT_TRUE(small.take_now("key-" + std::to_string(i), b).allowed);
    EXPECT_LE(small.size(), 64u);
    EXPECT_GT(small.overflowed(), 0u);
    // Keys stored before the table filled keep their own bucket.
    Decision d = small.take_now("key-0", b);
    EXPECT_TRUE(d.allowed);
    EXPECT_EQ(d.remaining, 998);
}

TEST_F(ManualClock, coroutine_interface) {
    boost::asio::io_context ioc;
    auto f = boost::asio::co_spawn(
        ioc,
        [&]() -> boost::asio::awaitable<Decision> {
            std::string id = "co";
            Bucket b{1, 0};
            co_await limiter.refund(id, b);
            Decision first = co_await limiter.take(id, b);
            EXPECT_TRUE(first.allowed);
            co_return co_await limiter.take(id, b);
        },
        boost::asio::use_future);
    ioc.run();
    EXPECT_FALSE(f.get().allowed);
}

// ----------------------------------------------------------------------------- concurrency

TEST(MemoryLimiterThreads, thirty_concurrent_takes_allow_exactly_capacity) {
    MemoryLimiter limiter;
    constexpr int kThreads = 30;
    for (int round = 0; round < 50; ++round) {
        const std::string tenant = "tenant-" + std::to_string(round);
        const std::string other = "other-" + std::to_string(round);
        // Refill 0 (counting form) on even rounds, a negligible refill (GCRA form) on odd ones.
        const Bucket b{10, round % 2 == 0 ? 0.0 : 1e-6};
        std::barrier start(kThreads);
        std::atomic<int> allowed{0};
        std::atomic<int> other_allowed{0};
        std::atomic<int> bad_retry{0};
        std::vector<std::thread> threads;
        for (int t = 0; t < kThreads; ++t) {
            threads.emplace_back([&, t] {
                start.arrive_and_wait();
                Decision d = limiter.take_now(tenant, b);
                if (d.allowed)
                    allowed.fetch_add(1);
                else if (d.retry_after_seconds < 1)
                    bad_retry.fetch_add(1);
                if (t < 10 && limiter.take_now(other, b).allowed) other_allowed.fetch_add(1);
            });
        }
        for (auto& th : threads)
            th.join();
        ASSERT_EQ(allowed.load(), 10) << "round " << round;
        ASSERT_EQ(other_allowed.load(), 10) << "round " << round;  // tenant B is not affected
        ASSERT_EQ(bad_retry.load(), 0);
    }
}

TEST(MemoryLimiterThreads, concurrent_first_use_of_many_keys_creates_each_bucket_once) {
    MemoryLimiter limiter;
    constexpr int kThreads = 4;
    constexpr int kKeys = 20000;                      // 2^5 · 5^4
    constexpr int kStrides[kThreads] = {1, 3, 7, 9};  // coprime to kKeys: each a permutation
    const Bucket b{kThreads, 0};
    std::barrier start(kThreads);
    std::atomic<int> refused{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
            start.arrive_and_wait();
            // Every thread takes every key once, each in its own order, so first uses race with
            // each other and with the growth of the table.
            for (int i = 0; i < kKeys; ++i) {
                const int k = static_cast<int>((static_cast<long long>(i) * kStrides[t]) % kKeys);
                if (!limiter.take_now("k" + std::to_string(k), b).allowed) refused.fetch_add(1);
            }
        });
    }
    for (auto& th : threads)
        th.join();
    EXPECT_EQ(refused.load(), 0);
    EXPECT_EQ(limiter.size(), static_cast<std::size_t>(kKeys));
    // A key created twice would show up as a bucket with tokens left.
    int left = 0;
    for (int k = 0; k < kKeys; ++k)
        left += limiter.take_now("k" + std::to_string(k), b).allowed ? 1 : 0;
    EXPECT_EQ(left, 0);
}

// ----------------------------------------------------------------------------- login throttle

TEST(LoginThrottle, ten_failures_per_account_then_refused_while_another_account_logs_in) {
    std::atomic<std::int64_t> now{5000 * kSecond};
    MemoryLimiterOptions o;
    o.clock = [&] { return now.load(); };
    MemoryLimiter limiter(o);
    LoginThrottle throttle(limiter);
    boost::asio::io_context ioc;
    auto f = boost::asio::co_spawn(
        ioc,
        [&]() -> boost::asio::awaitable<void> {
            int allowed = 0;
            LoginVerdict last;
            for (int i = 0; i < 20; ++i) {
                last = co_await throttle.begin("acme", "Alice@Example.com", "10.0.0.1");
                if (last.allowed) ++allowed;  // and the password was wrong: no succeeded()
            }
            EXPECT_EQ(allowed, 10);
            EXPECT_FALSE(last.allowed);
            EXPECT_EQ(last.limited_by, LoginVerdict::Scope::account);
            EXPECT_GE(last.retry_after_seconds, 1);
            EXPECT_LE(last.retry_after_seconds, 90);

            // The same account in other letter case is the same account.
            LoginVerdict v = co_await throttle.begin("ACME", "alice@example.COM", "10.0.0.2");
            EXPECT_FALSE(v.allowed);
            // Another email of the same tenant, from the same address, still gets in.
            v = co_await throttle.begin("acme", "bob@example.com", "10.0.0.1");
            EXPECT_TRUE(v.allowed);
            co_await throttle.succeeded("acme", "bob@example.com", "10.0.0.1");
            // A different tenant's account with the same email is a different account.
            v = co_await throttle.begin("globex", "alice@example.com", "10.0.0.1");
            EXPECT_TRUE(v.allowed);

            // 90 s later one more attempt is allowed (the refill period), then refused again.
            now += 90 * kSecond;
            v = co_await throttle.begin("acme", "alice@example.com", "10.0.0.3");
            EXPECT_TRUE(v.allowed);
            v = co_await throttle.begin("acme", "alice@example.com", "10.0.0.3");
            EXPECT_FALSE(v.allowed);
        },
        boost::asio::use_future);
    ioc.run();
    f.get();
}

TEST(LoginThrottle, successful_logins_do_not_count_and_addresses_have_their_own_budget) {
    MemoryLimiter limiter;
    LoginThrottle throttle(limiter);
    boost::asio::io_context ioc;
    auto f = boost::asio::co_spawn(
        ioc,
        [&]() -> boost::asio::awaitable<void> {
            for (int i = 0; i < 50; ++i) {
                LoginVerdict v = co_await throttle.begin("acme", "carol@example.com", "192.0.2.7");
                EXPECT_TRUE(v.allowed) << i;
                co_await throttle.succeeded("acme", "carol@example.com", "192.0.2.7");
            }
            // One address guessing one password for each of many accounts: 100, then refused.
            int allowed = 0;
            LoginVerdict last;
            for (int i = 0; i < 120; ++i) {
                last = co_await throttle.begin("acme", "user" + std::to_string(i) + "@example.com", "2001:db8::1");
                if (last.allowed) ++allowed;
            }
            EXPECT_EQ(allowed, 100);
            EXPECT_EQ(last.limited_by, LoginVerdict::Scope::address);
            EXPECT_GE(last.retry_after_seconds, 1);
            // The rest of that /64 is the same client.
            last = co_await throttle.begin("acme", "new@example.com", "2001:db8::ffff:1");
            EXPECT_FALSE(last.allowed);
            // Accounts refused by the address budget were not charged.
            last = co_await throttle.begin("acme", "user5@example.com", "198.51.100.1");
            EXPECT_TRUE(last.allowed);
        },
        boost::asio::use_future);
    ioc.run();
    f.get();
}

TEST(LoginThrottle, bucket_ids) {
    EXPECT_EQ(LoginThrottle::account_id("Acme", "A@B.c"), LoginThrottle::account_id("acme", "a@b.C"));
    EXPECT_NE(LoginThrottle::account_id("acme", "a@b.c"), LoginThrottle::account_id("acme2", "a@b.c"));
    // The separator keeps (slug, email) pairs from running into each other.
    EXPECT_NE(LoginThrottle::account_id("ab", "c@d"), LoginThrottle::account_id("a", "bc@d"));
    const std::string id = LoginThrottle::account_id("acme", "a@b.c");
    EXPECT_EQ(id.rfind("login:acct:", 0), 0u);
    EXPECT_EQ(id.size(), std::string("login:acct:").size() + 32);
    EXPECT_EQ(id.find("a@b.c"), std::string::npos);  // no email in the key

    EXPECT_EQ(LoginThrottle::address_id("192.0.2.1"), "login:addr:192.0.2.1");
    EXPECT_EQ(LoginThrottle::address_id("::ffff:192.0.2.1"), "login:addr:192.0.2.1");
    EXPECT_EQ(LoginThrottle::address_id("2001:db8:1:2:3:4:5:6"), "login:addr:2001:db8:1:2::/64");
    EXPECT_EQ(LoginThrottle::address_id("2001:db8:1:2::9"), LoginThrottle::address_id("2001:db8:1:2:ffff::"));
    EXPECT_EQ(LoginThrottle::address_id("not-an-address"), "login:addr:not-an-address");
}

// ----------------------------------------------------------------------------- script, metrics

TEST(TokenBucketScript, embedded_with_its_sha1) {
    const std::string_view script = token_bucket_script();
    ASSERT_FALSE(script.empty());
    EXPECT_NE(script.find("redis.call('TIME')"), std::string_view::npos);
    EXPECT_NE(script.find("PEXPIRE"), std::string_view::npos);
    unsigned char digest[SHA_DIGEST_LENGTH];
    SHA1(reinterpret_cast<const unsigned char*>(script.data()), script.size(), digest);
    std::string hex;
    for (unsigned char c : digest) {
        static constexpr char kHex[] = "0123456789abcdef";
        hex.push_back(kHex[c >> 4]);
        hex.push_back(kHex[c & 0xf]);
    }
    EXPECT_EQ(token_bucket_sha1(), hex);
}

TEST(RateLimitMetrics, render) {
    DecisionMetrics m({"free", "standard"}, 2);
    Decision allowed;
    allowed.allowed = true;
    Decision limited;
    Decision fallback;
    fallback.allowed = true;
    fallback.fallback = true;
    m.observe(0, 0, allowed);
    m.observe(1, 0, allowed);
    m.observe(1, 1, limited);
    m.observe(0, 7, fallback);
    std::string out;
    m.render(out);
    EXPECT_NE(out.find("mtapi_ratelimit_plan_decisions_total{plan=\"free\",result=\"allowed\",fallback=\"false\"} 2"),
              std::string::npos)
        << out;
    EXPECT_NE(out.find("{plan=\"standard\",result=\"limited\",fallback=\"false\"} 1"), std::string::npos) << out;
    EXPECT_NE(out.find("{plan=\"other\",result=\"allowed\",fallback=\"true\"} 1"), std::string::npos) << out;

    FailoverStats s;
    s.redis_allowed = 5;
    s.fallback_limited = 2;
    FailoverStats t = s;
    t += s;
    out.clear();
    render_metrics(out, t, true);
    EXPECT_NE(out.find("mtapi_ratelimit_decisions_total{backend=\"redis\",result=\"allowed\"} 10"), std::string::npos)
        << out;
    EXPECT_NE(out.find("mtapi_ratelimit_fallback_decisions_total 4"), std::string::npos) << out;
    EXPECT_NE(out.find("mtapi_ratelimit_degraded 1"), std::string::npos) << out;
}

}  // namespace
}  // namespace mtapi::ratelimit
