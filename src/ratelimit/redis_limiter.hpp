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
// with cost n (the script grants as many as there are whole tokens, in arrival order), which is
// exactly what n calls at that instant would have decided. An idle bucket costs its first request
// no wait; a busy one costs at most one extra round trip, and Redis sees one script run per batch
// instead of one per request.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "ratelimit/limiter.hpp"

namespace mtapi::redis {
class Client;
}

namespace mtapi::ratelimit {

struct RedisLimiterOptions {
    // Deadline of one decision (both round trips when the script has to be reloaded). A timeout
    // drops the shard's Redis connection, so this is generous compared with a loopback round trip.
    std::chrono::milliseconds timeout{200};
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

  private:
    struct Batch;
    struct Slot;
    // The script's answer for `cost` requests (cost -1: a give-back).
    struct Outcome {
        long long granted = 0;
        long long remaining = 0;
        long long full_ms = 0;
        long long wait_ms = 0;
    };
    boost::asio::awaitable<Decision> run_take(std::string key, Normalized bucket);
    boost::asio::awaitable<void> drain(Slot* slot);
    Slot* busy_slot(std::string_view key) const;
    Slot* claim_slot(std::string_view key);
    boost::asio::awaitable<Outcome> call(const std::string& key, const Normalized& bucket, int cost);
    boost::asio::awaitable<void> run_refund(std::string key, Normalized bucket);

    redis::Client& client_;
    RedisLimiterOptions options_;
    // Buckets with a call in flight (busy), and idle slots kept for reuse: as many as buckets were
    // ever in flight at once on this shard, searched linearly.
    std::vector<std::unique_ptr<Slot>> slots_;
    std::atomic<std::uint64_t> script_loads_{0};
    std::atomic<std::uint64_t> batches_{0};
    std::atomic<std::uint64_t> decisions_{0};
};

}  // namespace mtapi::ratelimit
