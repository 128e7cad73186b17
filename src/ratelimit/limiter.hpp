#pragma once
// Rate limiting: token buckets keyed by a bucket id (a tenant UUID, or a login key made by
// LoginThrottle). A bucket holds up to `capacity` tokens and refills continuously at
// `refill_per_sec`; every request takes one token and is refused while none is left.
//
// Backends (all implement Limiter):
// - MemoryLimiter   in-process buckets shared by every shard of the process (memory_limiter.hpp);
// - RedisLimiter    one atomic Lua script per decision, shared by every instance (redis_limiter.hpp);
// - FailoverLimiter Redis while it answers, the in-process buckets while it does not
//                   (failover_limiter.hpp).
//
// The numbers a decision carries map onto the response headers: RateLimit-Limit = limit,
// RateLimit-Remaining = remaining, RateLimit-Reset = reset_seconds, and on 429 Retry-After =
// retry_after_seconds.

#include <boost/asio/awaitable.hpp>
#include <stdexcept>
#include <string>
#include <string_view>

namespace mtapi::ratelimit {

struct Bucket {
    long long capacity = 0;     // tokens; clamped to [0, kMaxCapacity]; 0 refuses everything
    double refill_per_sec = 0;  // tokens per second; clamped to [0, kMaxRefillPerSec]; 0 = no refill
};

// Bounds that keep the arithmetic exact (Lua numbers are doubles: micro-tokens stay below 2^53).
inline constexpr long long kMaxCapacity = 1'000'000'000;
inline constexpr double kMaxRefillPerSec = 1e9;
// A bucket without refill does not refill by time: its state is forgotten once it has not let a
// request through for this long (the Redis key expires), and that is the reset it reports.
inline constexpr long long kIdleResetSeconds = 86'400;

struct Decision {
    bool allowed = false;
    long long limit = 0;                // the bucket's capacity
    long long remaining = 0;            // whole tokens left after this decision
    long long reset_seconds = 0;        // until the bucket is full again (0 = full)
    long long retry_after_seconds = 0;  // until a request can pass; ≥ 1 when !allowed, else 0
    bool fallback = false;              // answered by the in-process buckets because Redis was unusable
};

// Thrown by FailoverLimiter in fail-closed mode while Redis is unusable; callers answer 503.
class Unavailable : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

class Limiter {
  public:
    virtual ~Limiter() = default;

    // Takes one token from bucket `id` (configured by `bucket`). Implementations copy both
    // arguments when called, so neither needs to outlive the call. Throws redis::Error
    // (RedisLimiter) or Unavailable (fail-closed FailoverLimiter).
    virtual boost::asio::awaitable<Decision> take(std::string_view id, const Bucket& bucket) = 0;

    // Gives one token back to bucket `id`, never beyond its capacity (LoginThrottle returns the
    // attempt a successful login had reserved). Best effort: backends that cannot reach their
    // store drop the refund instead of failing.
    virtual boost::asio::awaitable<void> refund(std::string_view id, const Bucket& bucket) = 0;
};

// ---- shared by the backends

// A bucket's parameters after clamping.
struct Normalized {
    long long capacity = 0;
    double refill_per_sec = 0;
    friend bool operator==(const Normalized&, const Normalized&) = default;
};
Normalized normalize(const Bucket& bucket);

// The answer for a bucket of capacity 0: refused, and told to come back after kIdleResetSeconds.
Decision blocked_decision();

// Whole seconds, rounded up, of a non-negative duration in the given unit (ceil(value / per_second)).
constexpr long long ceil_seconds(long long value, long long per_second) {
    return value <= 0 ? 0 : (value + per_second - 1) / per_second;
}

}  // namespace mtapi::ratelimit
