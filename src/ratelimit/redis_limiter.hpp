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

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

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

    // Throw redis::Error when Redis cannot answer (refund() does too: FailoverLimiter decides
    // what to do about it).
    boost::asio::awaitable<Decision> take(std::string_view id, const Bucket& bucket) override;
    boost::asio::awaitable<void> refund(std::string_view id, const Bucket& bucket) override;

    // The Redis key of bucket `id`: rl:{<id>}.
    static std::string key(std::string_view id);

    // Times the script had to be sent in full after NOSCRIPT.
    std::uint64_t script_loads() const { return script_loads_.load(std::memory_order_relaxed); }

  private:
    boost::asio::awaitable<Decision> run(std::string key, Normalized bucket, int cost);
    boost::asio::awaitable<void> run_refund(std::string key, Normalized bucket);

    redis::Client& client_;
    RedisLimiterOptions options_;
    std::atomic<std::uint64_t> script_loads_{0};
};

}  // namespace mtapi::ratelimit
