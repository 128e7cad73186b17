#pragma once
// The rate limiters of a serving process (SPEC §4), built from the configuration:
//
//   backend redis   one redis::Client and one FailoverLimiter per shard, over one process-wide
//                   MemoryLimiter that decides while Redis is unusable (fail-open) — or 503s
//                   (fail-closed);
//   backend memory  the process-wide MemoryLimiter alone (no MTAPI_REDIS_URL);
//   backend off     no limits and no RateLimit-* headers (for benchmarks only).
//
// A tenant's bucket is its own override (admin PATCH rate_limit) or its plan's default
// (MTAPI_RATE_LIMIT_FREE / _STANDARD / _ENTERPRISE). Logins are throttled per (tenant, email) and
// per client address on the same limiter, so they stay limited while Redis is down.

#include <boost/asio/io_context.hpp>
#include <memory>
#include <string>
#include <vector>

#include "app/config.hpp"
#include "ratelimit/client_address.hpp"
#include "ratelimit/failover_limiter.hpp"
#include "ratelimit/limiter.hpp"
#include "ratelimit/login_throttle.hpp"
#include "ratelimit/memory_limiter.hpp"
#include "ratelimit/metrics.hpp"
#include "redis/client.hpp"
#include "tenancy/tenant.hpp"

namespace mtapi::app {

// Plan names in the order DecisionMetrics knows them.
inline constexpr std::size_t kPlanCount = 3;
std::size_t plan_index(std::string_view plan);  // kPlanCount for an unknown plan

class RateLimiting {
  public:
    // `contexts` are the shards' io_contexts; the Redis clients are bound to them.
    RateLimiting(const Config& config, const std::vector<boost::asio::io_context*>& contexts);
    ~RateLimiting();
    RateLimiting(const RateLimiting&) = delete;
    RateLimiting& operator=(const RateLimiting&) = delete;

    bool enabled() const { return backend_ != Config::RateLimitBackend::off; }
    bool uses_redis() const { return backend_ == Config::RateLimitBackend::redis; }
    bool fail_closed() const { return fail_closed_; }

    // The shard's limiter; null when limiting is off.
    ratelimit::Limiter* limiter(unsigned shard) const { return limiters_.empty() ? nullptr : limiters_.at(shard); }
    ratelimit::LoginThrottle* login(unsigned shard) const {
        return logins_.empty() ? nullptr : logins_.at(shard).get();
    }
    // The address login attempts are counted by: the TCP peer, or the client it forwards for when
    // it is one of MTAPI_TRUSTED_PROXIES (ratelimit/client_address.hpp).
    const ratelimit::TrustedProxies& trusted_proxies() const { return proxies_; }

    // The tenant's bucket: its override when both numbers are set, else its plan's default.
    ratelimit::Bucket bucket_for(const tenancy::Tenant& tenant) const;
    void observe(unsigned shard, const tenancy::Tenant& tenant, const ratelimit::Decision& d);

    // Redis is configured and not deciding for some shard of the process right now (live).
    bool degraded() const;

    // Prometheus text: decisions by plan, failover counters, Redis client metrics.
    void render_metrics(std::string& out) const;

    // Stops the Redis clients' health loops and connections. Call once the shards have stopped,
    // before their io_contexts are destroyed.
    void close();

  private:
    Config::RateLimitBackend backend_;
    bool fail_closed_;
    ratelimit::Bucket plans_[kPlanCount];
    std::unique_ptr<ratelimit::MemoryLimiter> memory_;
    std::shared_ptr<ratelimit::FailoverMonitor> monitor_;
    std::vector<std::unique_ptr<redis::Client>> clients_;
    std::vector<std::unique_ptr<ratelimit::FailoverLimiter>> failover_;
    std::vector<ratelimit::Limiter*> limiters_;
    std::vector<std::unique_ptr<ratelimit::LoginThrottle>> logins_;
    std::unique_ptr<ratelimit::DecisionMetrics> decisions_;
    ratelimit::TrustedProxies proxies_;
};

}  // namespace mtapi::app
