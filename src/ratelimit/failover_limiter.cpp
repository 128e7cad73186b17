#include "ratelimit/failover_limiter.hpp"

#include "obs/log.hpp"
#include "obs/metrics.hpp"
#include "redis/client.hpp"

namespace mtapi::ratelimit {
namespace {

void bump(std::atomic<std::uint64_t>& c) {
    c.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace

void FailoverMonitor::shard_degraded(std::string_view reason) {
    if (degraded_shards_.fetch_add(1, std::memory_order_relaxed) == 0)
        obs::warn("rate limiting degraded: Redis is unusable, limits are enforced in process", {{"reason", reason}});
}

void FailoverMonitor::shard_restored() {
    if (degraded_shards_.fetch_sub(1, std::memory_order_relaxed) == 1)
        obs::info("rate limiting restored: Redis decides again");
}

void FailoverMonitor::shard_gone() {
    degraded_shards_.fetch_sub(1, std::memory_order_relaxed);
}

FailoverStats& FailoverStats::operator+=(const FailoverStats& o) {
    redis_allowed += o.redis_allowed;
    redis_limited += o.redis_limited;
    fallback_allowed += o.fallback_allowed;
    fallback_limited += o.fallback_limited;
    unavailable += o.unavailable;
    redis_errors += o.redis_errors;
    return *this;
}

void render_metrics(std::string& out, const FailoverStats& s, bool degraded) {
    using obs::append_family, obs::append_metric, obs::append_sample;
    constexpr std::string_view decisions = "mtapi_ratelimit_decisions_total";
    append_family(out, decisions, "counter", "Rate limit decisions, by deciding backend and result.");
    append_sample(out, decisions, R"({backend="redis",result="allowed"})", s.redis_allowed);
    append_sample(out, decisions, R"({backend="redis",result="limited"})", s.redis_limited);
    append_sample(out, decisions, R"({backend="memory",result="allowed"})", s.fallback_allowed);
    append_sample(out, decisions, R"({backend="memory",result="limited"})", s.fallback_limited);
    append_metric(out, "mtapi_ratelimit_fallback_decisions_total", "counter",
                  "Decisions made in process because Redis was unusable.", s.fallback_allowed + s.fallback_limited);
    append_metric(out, "mtapi_ratelimit_unavailable_total", "counter",
                  "Requests refused because Redis was unusable (fail-closed).", s.unavailable);
    append_metric(out, "mtapi_ratelimit_redis_errors_total", "counter", "Rate limit calls to Redis that failed.",
                  s.redis_errors);
    append_metric(out, "mtapi_ratelimit_degraded", "gauge", "1 while some shard decides without Redis.",
                  degraded ? 1 : 0);
}

FailoverLimiter::FailoverLimiter(redis::Client& client, MemoryLimiter& memory, FailoverOptions options,
                                 std::shared_ptr<FailoverMonitor> monitor)
    : client_(client),
      memory_(memory),
      redis_(client, options.redis),
      options_(options),
      monitor_(monitor ? std::move(monitor) : std::make_shared<FailoverMonitor>()),
      startup_until_(std::chrono::steady_clock::now() + options.startup_grace) {}

FailoverLimiter::~FailoverLimiter() {
    if (seen_degraded_) monitor_->shard_gone();
}

bool FailoverLimiter::degraded() const {
    return !client_.healthy() || call_failed_.load(std::memory_order_relaxed);
}

FailoverStats FailoverLimiter::stats() const {
    auto get = [](const std::atomic<std::uint64_t>& v) { return v.load(std::memory_order_relaxed); };
    FailoverStats s;
    s.redis_allowed = get(counters_.redis_allowed);
    s.redis_limited = get(counters_.redis_limited);
    s.fallback_allowed = get(counters_.fallback_allowed);
    s.fallback_limited = get(counters_.fallback_limited);
    s.unavailable = get(counters_.unavailable);
    s.redis_errors = get(counters_.redis_errors);
    return s;
}

void FailoverLimiter::observe(bool degraded, std::string_view reason) {
    if (degraded == seen_degraded_) return;
    seen_degraded_ = degraded;
    if (degraded)
        monitor_->shard_degraded(reason);
    else
        monitor_->shard_restored();
}

boost::asio::awaitable<Decision> FailoverLimiter::take(std::string_view id, const Bucket& bucket) {
    return run(std::string(id), bucket);
}

boost::asio::awaitable<Decision> FailoverLimiter::run(std::string id, Bucket bucket) {
    std::string reason;  // why Redis did not decide (filled only on that path)
    if (!seen_healthy_) {
        const auto now = std::chrono::steady_clock::now();
        if (!client_.healthy() && now < startup_until_)
            co_await client_.wait_healthy(std::min(startup_until_, now + options_.redis.timeout));
        seen_healthy_ = client_.healthy();
    }
    if (client_.healthy()) {
        try {
            Decision d = co_await redis_.take(id, bucket);
            call_failed_.store(false, std::memory_order_relaxed);
            observe(false, {});
            bump(d.allowed ? counters_.redis_allowed : counters_.redis_limited);
            co_return d;
        } catch (const redis::Error& e) {
            reason = e.what();
            // Connection problems and timeouts make the client unhealthy by themselves; an error
            // reply (script error, OOM, READONLY, …) leaves it healthy, so remember it here.
            if (e.kind() == redis::ErrorKind::reply) call_failed_.store(true, std::memory_order_relaxed);
        }
        bump(counters_.redis_errors);
    }
    if (reason.empty()) reason = "Redis connection is down";
    observe(true, reason);
    if (options_.mode == FailMode::closed) {
        bump(counters_.unavailable);
        throw Unavailable("rate limiter unavailable: " + reason);
    }
    Decision d = memory_.take_now(id, bucket);
    d.fallback = true;
    bump(d.allowed ? counters_.fallback_allowed : counters_.fallback_limited);
    co_return d;
}

boost::asio::awaitable<void> FailoverLimiter::refund(std::string_view id, const Bucket& bucket) {
    return run_refund(std::string(id), bucket);
}

boost::asio::awaitable<void> FailoverLimiter::run_refund(std::string id, Bucket bucket) {
    if (client_.healthy()) {
        bool done = false;
        try {
            co_await redis_.refund(id, bucket);
            done = true;
        } catch (const redis::Error&) {
            bump(counters_.redis_errors);
        }
        if (done) co_return;
    }
    memory_.refund_now(id, bucket);
}

}  // namespace mtapi::ratelimit
