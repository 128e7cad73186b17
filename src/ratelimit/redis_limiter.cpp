#include "ratelimit/redis_limiter.hpp"

#include <algorithm>
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

// EVALSHA <sha> 1 <key> <capacity> <rate> <take> <idle ms> <give> <reserve> <period ms>, or EVAL
// <script> with the same rest.
std::vector<std::string> script_call(bool by_sha, const std::string& key, const Normalized& b, long long take,
                                     long long give, long long reserve, long long period_ms) {
    std::vector<std::string> argv;
    argv.reserve(11);
    argv.emplace_back(by_sha ? "EVALSHA" : "EVAL");
    argv.emplace_back(by_sha ? token_bucket_sha1() : token_bucket_script());
    argv.emplace_back("1");
    argv.push_back(key);
    argv.push_back(std::to_string(b.capacity));
    argv.push_back(format_rate(b.refill_per_sec));
    argv.push_back(std::to_string(take));
    static const std::string kIdleMs = std::to_string(kIdleResetSeconds * 1000);
    argv.push_back(kIdleMs);
    argv.push_back(std::to_string(give));
    argv.push_back(std::to_string(reserve));
    argv.push_back(std::to_string(period_ms));
    return argv;
}

using Clock = std::chrono::steady_clock;

// Whole milliseconds, rounded up, from `now` until `t` (0 when passed).
long long ms_until(Clock::time_point t, Clock::time_point now) {
    if (t <= now) return 0;
    return std::chrono::ceil<std::chrono::milliseconds>(t - now).count();
}

// Milliseconds until full for an answer from a reservation with `remaining` tokens left: as Redis
// last said, but at least 1 while the bucket is not full (Redis's own answer is never 0 then;
// the refill may have reached what Redis holds back for reservations without the bucket being
// full).
long long reserved_full_ms(Clock::time_point full_at, Clock::time_point now, long long remaining, long long capacity) {
    const long long ms = ms_until(full_at, now);
    return remaining < capacity ? std::max(1LL, ms) : ms;
}

boost::asio::awaitable<Decision> ready(Decision d) {
    co_return d;
}

// Slots not used for this long are dropped (with any expired reservation rest: see the header).
constexpr auto kSlotIdle = std::chrono::seconds(10);
// Every this many script runs, the shard looks for such slots.
constexpr std::uint64_t kPruneEvery = 1024;

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

RedisLimiter::Slot& RedisLimiter::slot_for(std::string_view id) {
    auto it = slots_.find(id);
    if (it != slots_.end()) return it->second;
    Slot& slot = slots_.try_emplace(std::string(id)).first->second;
    slot.key = key(id);
    return slot;
}

void RedisLimiter::prune(Clock::time_point now) {
    calls_since_prune_ = 0;
    for (auto it = slots_.begin(); it != slots_.end();) {
        const Slot& s = it->second;
        if (!s.busy && !s.queued && now - s.last_use > kSlotIdle)
            it = slots_.erase(it);
        else
            ++it;
    }
}

RedisLimiter::~RedisLimiter() = default;

boost::asio::awaitable<Decision> RedisLimiter::take(std::string_view id, const Bucket& bucket) {
    const Normalized b = normalize(bucket);
    if (b.capacity == 0) return ready(blocked_decision());
    Slot& slot = slot_for(id);
    const auto now = Clock::now();
    slot.last_use = now;
    if (slot.held > 0 && now < slot.lease_end && slot.policy == b) {
        // Spent from the shard's reservation: no round trip.
        --slot.held;
        ++slot.used;
        reserved_.fetch_add(1, std::memory_order_relaxed);
        decisions_.fetch_add(1, std::memory_order_relaxed);
        Decision d;
        d.allowed = true;
        d.limit = b.capacity;
        d.remaining = std::max(0LL, slot.remaining) + slot.held;
        d.reset_seconds = ceil_seconds(reserved_full_ms(slot.full_at, now, d.remaining, b.capacity), 1000);
        return ready(d);
    }
    return run_take(&slot, b);
}

namespace {

// Decision of the request at `index` (arrival order) of a batch of `granted` allowed requests, after
// which `remaining` tokens are left: as if the batch had been decided one request after the other.
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

boost::asio::awaitable<Decision> RedisLimiter::run_take(Slot* slot, Normalized bucket) {
    // `slot` stays valid: only slots that are not busy are ever dropped, and this coroutine only
    // suspends while its slot is busy.
    const auto ex = co_await boost::asio::this_coro::executor;
    if (!slot->busy) {
        // An idle bucket: this request is decided on its own, at once, and whoever arrives while
        // its call is in flight queues up for the next one.
        slot->busy = true;
        std::optional<Outcome> outcome;
        std::exception_ptr error;
        try {
            outcome = co_await decide(*slot, bucket, 1);
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
    if (!slot->queued) slot->queued = std::make_shared<Batch>(ex, bucket);
    std::shared_ptr<Batch> batch = slot->queued;
    batch->bucket = bucket;  // the newest limit wins (a changed limit applies within the batch)
    const int index = batch->size++;
    if (!batch->finished) co_await batch->done.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
    if (batch->error) std::rethrow_exception(batch->error);
    decisions_.fetch_add(1, std::memory_order_relaxed);
    const Outcome& o = batch->outcome;
    co_return decision_of(index, batch->bucket, o.granted, o.remaining, o.full_ms, o.wait_ms);
}

// The bucket's sender: decides the queued batch, publishes the outcome, and goes on while requests
// queued up meanwhile; then marks the bucket idle.
boost::asio::awaitable<void> RedisLimiter::drain(Slot* slot) {
    for (;;) {
        if (!slot->queued) {
            slot->busy = false;
            co_return;
        }
        std::shared_ptr<Batch> batch = std::move(slot->queued);
        slot->queued.reset();
        try {
            batch->outcome = co_await decide(*slot, batch->bucket, batch->size);
        } catch (...) {
            batch->error = std::current_exception();
        }
        batch->finished = true;
        batch->done.cancel();
    }
}

// How many tokens beyond the requests at hand the next call for `slot` reserves (see the header).
long long RedisLimiter::reservation(Slot& slot, const Normalized& bucket, Clock::time_point now,
                                    bool expired_rest) const {
    if (options_.reserve_max <= 0 || bucket.refill_per_sec <= 0) return 0;
    const auto period = options_.reserve_period;
    if (slot.replied == Clock::time_point{} || now - slot.replied > 2 * period) return 0;  // idle: start exact
    long long r = expired_rest ? slot.used : (slot.reserve == 0 ? 1 : 2 * slot.reserve);
    r = std::min(r, options_.reserve_max);
    r = std::min(r, std::max(0LL, slot.remaining) / 16);
    const double per_period = bucket.refill_per_sec * std::chrono::duration<double>(period).count();
    r = std::min(r, static_cast<long long>(std::min(per_period, 1e9)));
    return std::max(0LL, r);
}

// Decides `n` requests of the bucket in `slot` (busy, so no other call for it is in flight): from
// the reservation while it lasts, the rest with one script run that also reserves ahead and gives
// back an expired reservation's rest.
boost::asio::awaitable<RedisLimiter::Outcome> RedisLimiter::decide(Slot& slot, const Normalized& bucket, long long n) {
    const auto now = Clock::now();
    long long from_lease = 0;
    long long give = 0;
    if (slot.held > 0) {
        if (now < slot.lease_end && slot.policy == bucket) {
            from_lease = std::min(slot.held, n);
            slot.held -= from_lease;
            slot.used += from_lease;
        } else {
            give = slot.held;
            slot.held = 0;
        }
    }
    const long long need = n - from_lease;
    if (need == 0) {
        reserved_.fetch_add(static_cast<std::uint64_t>(from_lease), std::memory_order_relaxed);
        Outcome o;
        o.granted = n;
        o.remaining = std::max(0LL, slot.remaining) + slot.held;
        o.full_ms = reserved_full_ms(slot.full_at, now, o.remaining, bucket.capacity);
        co_return o;
    }
    const long long extra = reservation(slot, bucket, now, give > 0);
    if (++calls_since_prune_ >= kPruneEvery) prune(now);
    batches_.fetch_add(1, std::memory_order_relaxed);
    std::optional<Outcome> reply;
    try {
        reply = co_await call(slot.key, bucket, need, give, extra);
    } catch (...) {
        // The tokens taken from the reservation were not spent: they stay reserved.
        slot.held += from_lease;
        slot.used -= from_lease;
        throw;
    }
    const auto at = Clock::now();
    const long long served = std::min(need, reply->granted);
    const long long rest = std::clamp(reply->reserved, 0LL, extra);
    slot.replied = at;
    slot.remaining = reply->remaining;
    slot.full_at = at + std::chrono::milliseconds(std::max(0LL, reply->full_ms));
    slot.policy = bucket;
    slot.reserve = extra;
    slot.used = 0;
    slot.held = rest;
    // Counted from before the call, so it ends within one period of Redis's grant: Redis keeps
    // the reserved tokens out of the refill for at least that long.
    slot.lease_end = now + options_.reserve_period;
    reserved_.fetch_add(static_cast<std::uint64_t>(from_lease), std::memory_order_relaxed);
    Outcome o = *reply;
    o.granted = from_lease + served;
    o.remaining = std::max(0LL, reply->remaining) + rest;
    co_return o;
}

boost::asio::awaitable<void> RedisLimiter::refund(std::string_view id, const Bucket& bucket) {
    return run_refund(key(id), normalize(bucket));
}

boost::asio::awaitable<void> RedisLimiter::run_refund(std::string key, Normalized bucket) {
    if (bucket.capacity == 0) co_return;
    co_await call(key, bucket, 0, 1, 0);
}

boost::asio::awaitable<RedisLimiter::Outcome> RedisLimiter::call(const std::string& key, const Normalized& bucket,
                                                                 long long take, long long give, long long reserve) {
    const redis::Deadline deadline = redis::Clock::now() + options_.timeout;
    const long long period_ms = options_.reserve_period.count();
    std::vector<std::string> argv = script_call(true, key, bucket, take, give, reserve, period_ms);
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
        std::vector<std::string> eval = script_call(false, key, bucket, take, give, reserve, period_ms);
        reply = co_await client_.command(std::move(eval), deadline);
    }
    if (!reply->is_array() || reply->elements.size() != 5)
        throw redis::Error(redis::ErrorKind::reply, "ERR unexpected reply from the token bucket script");
    for (const auto& e : reply->elements)
        if (!e.is_integer())
            throw redis::Error(redis::ErrorKind::reply, "ERR unexpected reply from the token bucket script");
    Outcome o;
    o.granted = reply->elements[0].integer;
    o.remaining = reply->elements[1].integer;
    o.full_ms = reply->elements[2].integer;
    o.wait_ms = reply->elements[3].integer;
    o.reserved = reply->elements[4].integer;
    co_return o;
}

}  // namespace mtapi::ratelimit
