#include "ratelimit/redis_limiter.hpp"

#include <cstdio>
#include <optional>
#include <vector>

#include "ratelimit/script.hpp"
#include "redis/client.hpp"

namespace mtapi::ratelimit {
namespace {

std::string format_rate(double r) {
    char buf[40];
    int n = std::snprintf(buf, sizeof buf, "%.17g", r);
    return std::string(buf, static_cast<std::size_t>(n));
}

// EVALSHA <sha> 1 <key> <capacity> <rate> <cost> <idle ms>, or EVAL <script> with the same rest.
std::vector<std::string> script_call(bool by_sha, const std::string& key, const Normalized& b, int cost) {
    std::vector<std::string> argv;
    argv.reserve(8);
    argv.emplace_back(by_sha ? "EVALSHA" : "EVAL");
    argv.emplace_back(by_sha ? token_bucket_sha1() : token_bucket_script());
    argv.emplace_back("1");
    argv.push_back(key);
    argv.push_back(std::to_string(b.capacity));
    argv.push_back(format_rate(b.refill_per_sec));
    argv.push_back(std::to_string(cost));
    argv.push_back(std::to_string(kIdleResetSeconds * 1000));
    return argv;
}

Decision decode(const redis::Reply& reply, const Normalized& b) {
    if (!reply.is_array() || reply.elements.size() != 4)
        throw redis::Error(redis::ErrorKind::reply, "ERR unexpected reply from the token bucket script");
    for (const auto& e : reply.elements)
        if (!e.is_integer())
            throw redis::Error(redis::ErrorKind::reply, "ERR unexpected reply from the token bucket script");
    Decision d;
    d.allowed = reply.elements[0].integer == 1;
    d.limit = b.capacity;
    d.remaining = std::max(0LL, reply.elements[1].integer);
    d.reset_seconds = ceil_seconds(reply.elements[2].integer, 1000);
    d.retry_after_seconds = d.allowed ? 0 : std::max(1LL, ceil_seconds(reply.elements[3].integer, 1000));
    return d;
}

}  // namespace

RedisLimiter::RedisLimiter(redis::Client& client, RedisLimiterOptions options) : client_(client), options_(options) {}

std::string RedisLimiter::key(std::string_view id) {
    std::string k;
    k.reserve(id.size() + 5);
    k.append("rl:{");
    k.append(id);
    k.push_back('}');
    return k;
}

boost::asio::awaitable<Decision> RedisLimiter::take(std::string_view id, const Bucket& bucket) {
    return run(key(id), normalize(bucket), 1);
}

boost::asio::awaitable<void> RedisLimiter::refund(std::string_view id, const Bucket& bucket) {
    return run_refund(key(id), normalize(bucket));
}

boost::asio::awaitable<void> RedisLimiter::run_refund(std::string key, Normalized bucket) {
    if (bucket.capacity == 0) co_return;
    co_await run(std::move(key), bucket, -1);
}

boost::asio::awaitable<Decision> RedisLimiter::run(std::string key, Normalized bucket, int cost) {
    if (bucket.capacity == 0) co_return blocked_decision();
    const redis::Deadline deadline = redis::Clock::now() + options_.timeout;
    std::vector<std::string> argv = script_call(true, key, bucket, cost);
    std::optional<redis::Reply> reply;
    bool reload = false;
    try {
        reply = co_await client_.command(std::move(argv), deadline);
    } catch (const redis::Error& e) {
        if (e.kind() != redis::ErrorKind::reply || e.code() != "NOSCRIPT") throw;
        reload = true;
    }
    if (reload) {
        // Redis lost its script cache (restart, SCRIPT FLUSH, failover): EVAL runs the script and
        // caches it again, so the next EVALSHA finds it.
        script_loads_.fetch_add(1, std::memory_order_relaxed);
        std::vector<std::string> eval = script_call(false, key, bucket, cost);
        reply = co_await client_.command(std::move(eval), deadline);
    }
    co_return decode(*reply, bucket);
}

}  // namespace mtapi::ratelimit
