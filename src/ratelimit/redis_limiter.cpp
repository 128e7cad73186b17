#include "ratelimit/redis_limiter.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <charconv>
#include <cstdio>
#include <exception>
#include <optional>
#include <vector>

#include "ratelimit/script.hpp"
#include "redis/client.hpp"

namespace mtapi::ratelimit {
namespace {

// Shortest text that reads back as the same double (Lua's tonumber parses it exactly).
std::string format_rate(double r) {
    char buf[40];
    auto [end, ec] = std::to_chars(buf, buf + sizeof buf, r);
    return std::string(buf, ec == std::errc() ? end : buf);
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
    static const std::string kIdleMs = std::to_string(kIdleResetSeconds * 1000);
    argv.push_back(kIdleMs);
    return argv;
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

// Requests of one bucket waiting for the same script run.
struct RedisLimiter::Batch {
    explicit Batch(const boost::asio::any_io_executor& ex, Normalized b)
        : bucket(b), done(ex, std::chrono::steady_clock::time_point::max()) {}
    Normalized bucket;
    int size = 0;
    bool finished = false;
    Outcome outcome;
    std::exception_ptr error;
    boost::asio::steady_timer done;  // cancelled when the outcome is in: wakes every waiter
};

struct RedisLimiter::Slot {
    std::string key;
    bool busy = false;
    std::shared_ptr<Batch> queued;  // the next batch, not yet sent
};

RedisLimiter::Slot* RedisLimiter::busy_slot(std::string_view key) const {
    for (const auto& s : slots_)
        if (s->busy && s->key == key) return s.get();
    return nullptr;
}

RedisLimiter::Slot* RedisLimiter::claim_slot(std::string_view key) {
    Slot* slot = nullptr;
    for (const auto& s : slots_)
        if (!s->busy) {
            slot = s.get();
            break;
        }
    if (slot == nullptr) slot = slots_.emplace_back(std::make_unique<Slot>()).get();
    slot->key.assign(key);
    slot->busy = true;
    return slot;
}

RedisLimiter::~RedisLimiter() = default;

boost::asio::awaitable<Decision> RedisLimiter::take(std::string_view id, const Bucket& bucket) {
    return run_take(key(id), normalize(bucket));
}

namespace {

// Decision of the request at `index` (arrival order) of a batch the script answered with `o`: as if
// the batch had been decided one request after the other.
Decision decision_of(long long index, const Normalized& bucket, long long granted, long long remaining,
                     long long full_ms, long long wait_ms) {
    Decision d;
    d.limit = bucket.capacity;
    d.allowed = index < granted;
    d.remaining = d.allowed ? std::max(0LL, remaining) + (granted - 1 - index) : std::max(0LL, remaining);
    d.reset_seconds = ceil_seconds(full_ms, 1000);
    d.retry_after_seconds = d.allowed ? 0 : std::max(1LL, ceil_seconds(wait_ms, 1000));
    return d;
}

}  // namespace

boost::asio::awaitable<Decision> RedisLimiter::run_take(std::string key, Normalized bucket) {
    if (bucket.capacity == 0) co_return blocked_decision();
    const auto ex = co_await boost::asio::this_coro::executor;
    Slot* busy = busy_slot(key);
    if (busy == nullptr) {
        // An idle bucket: this request is decided on its own, at once, and whoever arrives while
        // its call is in flight queues up for the next one.
        Slot* slot = claim_slot(key);
        batches_.fetch_add(1, std::memory_order_relaxed);
        std::optional<Outcome> outcome;
        std::exception_ptr error;
        try {
            outcome = co_await call(slot->key, bucket, 1);
        } catch (...) {
            error = std::current_exception();
        }
        if (slot->queued) {
            boost::asio::co_spawn(ex, drain(slot), boost::asio::detached);
        } else {
            slot->busy = false;
        }
        if (error) std::rethrow_exception(error);
        decisions_.fetch_add(1, std::memory_order_relaxed);
        co_return decision_of(0, bucket, outcome->granted, outcome->remaining, outcome->full_ms, outcome->wait_ms);
    }
    Slot& slot = *busy;
    if (!slot.queued) slot.queued = std::make_shared<Batch>(ex, bucket);
    std::shared_ptr<Batch> batch = slot.queued;
    batch->bucket = bucket;  // the newest limit wins (a changed limit applies within the batch)
    const int index = batch->size++;
    if (!batch->finished) co_await batch->done.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
    if (batch->error) std::rethrow_exception(batch->error);
    decisions_.fetch_add(1, std::memory_order_relaxed);
    const Outcome& o = batch->outcome;
    co_return decision_of(index, batch->bucket, o.granted, o.remaining, o.full_ms, o.wait_ms);
}

// The bucket's sender: sends the queued batch, publishes the outcome, and goes on while requests
// queued up meanwhile; then forgets the bucket.
boost::asio::awaitable<void> RedisLimiter::drain(Slot* slot) {
    for (;;) {
        if (!slot->queued) {
            slot->busy = false;
            slot->queued.reset();
            co_return;
        }
        std::shared_ptr<Batch> batch = std::move(slot->queued);
        slot->queued.reset();
        batches_.fetch_add(1, std::memory_order_relaxed);
        try {
            batch->outcome = co_await call(slot->key, batch->bucket, batch->size);
        } catch (...) {
            batch->error = std::current_exception();
        }
        batch->finished = true;
        batch->done.cancel();
    }
}

boost::asio::awaitable<void> RedisLimiter::refund(std::string_view id, const Bucket& bucket) {
    return run_refund(key(id), normalize(bucket));
}

boost::asio::awaitable<void> RedisLimiter::run_refund(std::string key, Normalized bucket) {
    if (bucket.capacity == 0) co_return;
    co_await call(key, bucket, -1);
}

boost::asio::awaitable<RedisLimiter::Outcome> RedisLimiter::call(const std::string& key, const Normalized& bucket,
                                                                 int cost) {
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
    if (!reply->is_array() || reply->elements.size() != 4)
        throw redis::Error(redis::ErrorKind::reply, "ERR unexpected reply from the token bucket script");
    for (const auto& e : reply->elements)
        if (!e.is_integer())
            throw redis::Error(redis::ErrorKind::reply, "ERR unexpected reply from the token bucket script");
    Outcome o;
    o.granted = reply->elements[0].integer;
    o.remaining = reply->elements[1].integer;
    o.full_ms = reply->elements[2].integer;
    o.wait_ms = reply->elements[3].integer;
    co_return o;
}

}  // namespace mtapi::ratelimit
