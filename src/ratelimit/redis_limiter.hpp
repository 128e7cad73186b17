#pragma once
// Token buckets in Redis, shared by every mtapi instance: each decision is one run of the Lua
// script in token_bucket.lua on the key rl:{<bucket id>}. The braces are a Redis Cluster hash tag,
// so every key of one bucket id maps to one slot. The script reads the clock with TIME, so all
// instances agree on time whatever their own clocks say.
//
// The script is run by EVALSHA with the SHA-1 computed at build time; after NOSCRIPT (a restarted
// or flushed Redis) it is sent once with EVAL, which also puts it back into Redis's script cache.
//
// One instance per shard, on that shard's redis::Client.
//
// Batching: at most one decision per bucket is on its way to Redis from a shard at a time.
// Requests for a bucket that arrive meanwhile queue up and are decided together by the next call
// (the script grants as many as there are whole tokens, in arrival order), which is exactly what
// that many calls at that instant would have decided. An idle bucket costs its first request no
// wait; a busy one costs at most one extra round trip.
//
// Reservations: a bucket that keeps a shard busy takes a few tokens more than its waiting requests
// need, and the shard's next requests for it spend those without asking Redis. The tokens are
// taken from the shared bucket first, and Redis keeps every token reserved in the last one or two
// periods out of the refill (token_bucket.lua), so the bucket plus all that shards hold never
// exceeds the capacity: no instance can ever let through more than a request-by-request bucket
// would. What a reservation can do is hold tokens another instance would have used. It is kept
// small and short:
//   - only for buckets that refill, and never more than the bucket refills in one reservation
//     period (100 ms by default) nor more than 1/16 of what Redis last said was left, so buckets
//     near empty, small buckets and buckets without refill are decided exactly, one token per
//     request, as before;
//   - it grows (1, 2, 4, ... up to `reserve_max`) only while the shard uses each reservation up
//     within the period, shrinks to what was used when it was not, and starts from none again
//     after a bucket was idle for a period;
//   - it counts for one period from the moment the call was sent; an unused rest is given back to
//     Redis with the shard's next call for that bucket; a shard that never calls again loses at
//     most what the bucket refills in one period;
//   - a changed limit (capacity or refill) ends the reservation at once.
// RateLimit-Remaining from a reservation is what Redis had left plus the shard's unspent tokens:
// what one request after the other would have been told.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include "ratelimit/limiter.hpp"

namespace mtapi::redis {
class Client;
}

namespace mtapi::ratelimit {

struct RedisLimiterOptions {
    // Deadline of one decision (both round trips when the script has to be reloaded). A timeout
    // drops the shard's Redis connection, so this is generous compared with a loopback round trip.
    std::chrono::milliseconds timeout{200};
    // Most tokens a shard reserves ahead for one bucket (0: every request asks Redis).
    long long reserve_max = 64;
    // How long a reservation counts; also the refill that bounds its size.
    std::chrono::milliseconds reserve_period{100};
};

class RedisLimiter final : public Limiter {
  public:
    explicit RedisLimiter(redis::Client& client, RedisLimiterOptions options = {});
    ~RedisLimiter() override;

    // Throw redis::Error when Redis cannot answer (refund() does too: FailoverLimiter decides
    // what to do about it).
    boost::asio::awaitable<Decision> take(std::string_view id, const Bucket& bucket) override;
    boost::asio::awaitable<void> refund(std::string_view id, const Bucket& bucket) override;

    // The Redis key of bucket `id`: rl:{<id>}.
    static std::string key(std::string_view id);

    // Times the script had to be sent in full after NOSCRIPT.
    std::uint64_t script_loads() const { return script_loads_.load(std::memory_order_relaxed); }
    // Script runs for take() (each decides a batch of one or more requests) and requests decided.
    std::uint64_t batches() const { return batches_.load(std::memory_order_relaxed); }
    std::uint64_t decisions() const { return decisions_.load(std::memory_order_relaxed); }
    // Requests decided from a reservation, without a script run of their own.
    std::uint64_t reserved() const { return reserved_.load(std::memory_order_relaxed); }

  private:
    struct Batch;
    using Clock = std::chrono::steady_clock;
    // One bucket on this shard.
    struct Slot {
        std::string key;                // rl:{<id>}
        bool busy = false;              // a call is in flight, or queued requests are being sent
        std::shared_ptr<Batch> queued;  // requests waiting for the next call
        // The reservation: `held` tokens taken from Redis, not yet spent, usable until `lease_end`
        // for this very limit.
        long long held = 0;
        Clock::time_point lease_end{};
        Normalized policy;
        long long reserve = 0;  // tokens reserved ahead by the last call
        long long used = 0;     // of those, spent
        // Redis's answer to the last call.
        Clock::time_point replied{};
        long long remaining = 0;
        Clock::time_point full_at{};
        Clock::time_point last_use{};
    };
    // The script's answer: requests granted of those asked for, tokens left, ms until full, ms
    // until a refused request could pass, and tokens reserved ahead.
    struct Outcome {
        long long granted = 0;
        long long remaining = 0;
        long long full_ms = 0;
        long long wait_ms = 0;
        long long reserved = 0;  // tokens reserved ahead for this shard
    };
    struct Hash {
        using is_transparent = void;
        std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
    };

    boost::asio::awaitable<Decision> run_take(Slot* slot, Normalized bucket);
    boost::asio::awaitable<Outcome> decide(Slot& slot, const Normalized& bucket, long long n);
    boost::asio::awaitable<void> drain(Slot* slot);
    Slot& slot_for(std::string_view id);
    void prune(Clock::time_point now);
    long long reservation(Slot& slot, const Normalized& bucket, Clock::time_point now, bool expired_rest) const;
    boost::asio::awaitable<Outcome> call(const std::string& key, const Normalized& bucket, long long take,
                                         long long give, long long reserve);
    boost::asio::awaitable<void> run_refund(std::string key, Normalized bucket);

    redis::Client& client_;
    RedisLimiterOptions options_;
    // The shard's buckets: the one in flight, queued requests, the reservation. Buckets unused
    // for a while are dropped now and then (prune).
    std::unordered_map<std::string, Slot, Hash, std::equal_to<>> slots_;
    std::uint64_t calls_since_prune_ = 0;
    std::atomic<std::uint64_t> script_loads_{0};
    std::atomic<std::uint64_t> batches_{0};
    std::atomic<std::uint64_t> decisions_{0};
    std::atomic<std::uint64_t> reserved_{0};
};

}  // namespace mtapi::ratelimit
