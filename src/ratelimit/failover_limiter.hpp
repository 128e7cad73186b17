#pragma once
// A shard's limiter when Redis is configured: Redis decides while it answers; while it does not,
// the process's in-process buckets (MemoryLimiter) do, so an outage never takes the API down.
//
// - Healthy: every decision goes to Redis (RedisLimiter). A Redis error or timeout on that call
//   answers the same request from the in-process buckets.
// - Unhealthy (redis::Client::healthy() false: connection lost, reconnecting with backoff, a
//   health PING failed or timed out): Redis is not even tried, so a request costs no round trip
//   and no timeout while it is down.
// - Back: the client's health loop reconnects and PINGs by itself (within about two seconds of
//   Redis returning with the default backoff), and the next decision goes to Redis again.
//
// Fail-open (default) marks decisions answered in process with `fallback`; fail-closed throws
// Unavailable instead (callers answer 503). The in-process buckets are separate state: during an
// outage each instance enforces the limits on its own, starting from whatever its buckets hold
// (full for a tenant they have not seen).
//
// Transitions are logged once per process (FailoverMonitor, shared by the shards), not per shard.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "ratelimit/limiter.hpp"
#include "ratelimit/memory_limiter.hpp"
#include "ratelimit/redis_limiter.hpp"

namespace mtapi::redis {
class Client;
}

namespace mtapi::ratelimit {

enum class FailMode { open, closed };

struct FailoverOptions {
    FailMode mode = FailMode::open;
    RedisLimiterOptions redis;
    // Right after start-up the first connection to Redis may still be opening: until it has been
    // healthy once, and for at most this long after construction, a decision waits for it (at
    // most the Redis timeout) instead of falling back, so a fresh instance does not hand out a
    // fresh in-process bucket for its first requests.
    std::chrono::milliseconds startup_grace{2000};
};

// Process-wide view over the shards' FailoverLimiters: counts the shards whose last decision was
// made without Redis and logs when that count leaves or returns to zero (one line per process and
// transition, however many shards). Thread-safe. It follows decisions, so a shard that has made
// none since Redis returned still counts: /ready should ask the shards' live degraded() instead.
class FailoverMonitor {
  public:
    bool degraded() const { return degraded_shards_.load(std::memory_order_relaxed) > 0; }
    void shard_degraded(std::string_view reason);
    void shard_restored();
    void shard_gone();  // a degraded shard shuts down: uncounted without a log line

  private:
    std::atomic<int> degraded_shards_{0};
};

// Decision counters of one shard's FailoverLimiter (or, summed, of all shards).
struct FailoverStats {
    std::uint64_t redis_allowed = 0;
    std::uint64_t redis_limited = 0;
    std::uint64_t fallback_allowed = 0;  // answered in process while Redis was unusable
    std::uint64_t fallback_limited = 0;
    std::uint64_t unavailable = 0;   // fail-closed refusals (Unavailable thrown)
    std::uint64_t redis_errors = 0;  // Redis calls that failed (each then answered without Redis)

    FailoverStats& operator+=(const FailoverStats& o);
};

// Prometheus text: mtapi_ratelimit_decisions_total{backend="redis|memory",result="allowed|limited"},
// mtapi_ratelimit_fallback_decisions_total, mtapi_ratelimit_unavailable_total,
// mtapi_ratelimit_redis_errors_total and the gauge mtapi_ratelimit_degraded (0/1).
void render_metrics(std::string& out, const FailoverStats& sum, bool degraded);

class FailoverLimiter final : public Limiter {
  public:
    // `client` is the shard's Redis client; `memory` the process-wide in-process limiter;
    // `monitor` is shared by the shards of a process (a private one when null).
    FailoverLimiter(redis::Client& client, MemoryLimiter& memory, FailoverOptions options = {},
                    std::shared_ptr<FailoverMonitor> monitor = nullptr);
    ~FailoverLimiter() override;
    FailoverLimiter(const FailoverLimiter&) = delete;
    FailoverLimiter& operator=(const FailoverLimiter&) = delete;

    // Never throws redis::Error; throws Unavailable in fail-closed mode while Redis is unusable.
    boost::asio::awaitable<Decision> take(std::string_view id, const Bucket& bucket) override;
    // Best effort: to Redis when healthy, else to the in-process buckets; never throws.
    boost::asio::awaitable<void> refund(std::string_view id, const Bucket& bucket) override;

    // Redis is not deciding for this shard right now (live; safe from any thread): the client is
    // not healthy, or the last Redis call failed.
    bool degraded() const;
    FailMode mode() const { return options_.mode; }
    FailoverStats stats() const;
    const RedisLimiter& redis_limiter() const { return redis_; }

  private:
    boost::asio::awaitable<Decision> run(std::string id, Bucket bucket);
    boost::asio::awaitable<void> run_refund(std::string id, Bucket bucket);
    void observe(bool degraded, std::string_view reason);

    redis::Client& client_;
    MemoryLimiter& memory_;
    RedisLimiter redis_;
    FailoverOptions options_;
    std::shared_ptr<FailoverMonitor> monitor_;
    std::atomic<bool> call_failed_{false};
    bool seen_degraded_ = false;  // this shard's state as last reported to the monitor
    bool seen_healthy_ = false;   // the client has been healthy at least once
    std::chrono::steady_clock::time_point startup_until_;

    struct Counters {
        std::atomic<std::uint64_t> redis_allowed{0};
        std::atomic<std::uint64_t> redis_limited{0};
        std::atomic<std::uint64_t> fallback_allowed{0};
        std::atomic<std::uint64_t> fallback_limited{0};
        std::atomic<std::uint64_t> unavailable{0};
        std::atomic<std::uint64_t> redis_errors{0};
    } counters_;
};

}  // namespace mtapi::ratelimit
