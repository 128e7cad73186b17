#include "app/rate_limiting.hpp"

#include "obs/metrics.hpp"

namespace mtapi::app {

std::size_t plan_index(std::string_view plan) {
    if (plan == "free") return 0;
    if (plan == "standard") return 1;
    if (plan == "enterprise") return 2;
    return kPlanCount;
}

RateLimiting::RateLimiting(const Config& config, const std::vector<boost::asio::io_context*>& contexts)
    : backend_(config.rate_limit_backend),
      fail_closed_(config.rate_limit_fail_closed),
      plans_{config.plan_free, config.plan_standard, config.plan_enterprise},
      proxies_(ratelimit::TrustedProxies::parse(config.trusted_proxies)) {
    if (backend_ == Config::RateLimitBackend::off) return;
    auto shards = static_cast<unsigned>(contexts.size());
    memory_ = std::make_unique<ratelimit::MemoryLimiter>();
    decisions_ = std::make_unique<ratelimit::DecisionMetrics>(
        std::vector<std::string>{"free", "standard", "enterprise"}, shards);

    if (backend_ == Config::RateLimitBackend::redis) {
        monitor_ = std::make_shared<ratelimit::FailoverMonitor>();
        ratelimit::FailoverOptions fo;
        fo.mode = fail_closed_ ? ratelimit::FailMode::closed : ratelimit::FailMode::open;
        fo.redis.timeout = config.redis_timeout;
        fo.redis.reserve_max = config.rate_limit_reserve;
        for (auto* ioc : contexts) {
            redis::ClientOptions co;
            co.url = config.redis_url;
            clients_.push_back(std::make_unique<redis::Client>(*ioc, co));
            failover_.push_back(std::make_unique<ratelimit::FailoverLimiter>(*clients_.back(), *memory_, fo, monitor_));
            limiters_.push_back(failover_.back().get());
        }
    } else {
        limiters_.assign(shards, memory_.get());
    }

    // Login budgets: `attempts` failures, refilled evenly over the window.
    ratelimit::LoginPolicy policy;
    auto window = static_cast<double>(config.login_window.count());
    policy.account = {config.login_account_attempts, static_cast<double>(config.login_account_attempts) / window};
    policy.address = {config.login_address_attempts, static_cast<double>(config.login_address_attempts) / window};
    for (auto* limiter : limiters_)
        logins_.push_back(std::make_unique<ratelimit::LoginThrottle>(*limiter, policy));
}

RateLimiting::~RateLimiting() {
    close();
}

ratelimit::Bucket RateLimiting::bucket_for(const tenancy::Tenant& tenant) const {
    if (tenant.rate_limit_capacity && tenant.rate_limit_refill_per_sec)
        return {*tenant.rate_limit_capacity, *tenant.rate_limit_refill_per_sec};
    std::size_t i = plan_index(tenant.plan);
    return plans_[i < kPlanCount ? i : 1];
}

void RateLimiting::observe(unsigned shard, const tenancy::Tenant& tenant, const ratelimit::Decision& d) {
    if (decisions_) decisions_->observe(shard, plan_index(tenant.plan), d);
}

bool RateLimiting::degraded() const {
    for (const auto& f : failover_)
        if (f->degraded()) return true;
    return false;
}

void RateLimiting::render_metrics(std::string& out) const {
    if (!enabled()) return;
    decisions_->render(out);
    if (failover_.empty()) return;
    ratelimit::FailoverStats sum;
    bool degraded = false;
    for (const auto& f : failover_) {
        sum += f->stats();
        degraded = degraded || f->degraded();
    }
    ratelimit::render_metrics(out, sum, degraded);
    std::uint64_t batches = 0, decided = 0, reserved = 0;
    for (const auto& f : failover_) {
        batches += f->redis_limiter().batches();
        decided += f->redis_limiter().decisions();
        reserved += f->redis_limiter().reserved();
    }
    obs::append_metric(out, "mtapi_ratelimit_redis_batches_total", "counter",
                       "Token bucket script runs; each decides the requests of one tenant that waited for it "
                       "and may reserve tokens ahead.",
                       batches);
    obs::append_metric(out, "mtapi_ratelimit_redis_batched_decisions_total", "counter",
                       "Requests decided by the Redis backend.", decided);
    obs::append_metric(out, "mtapi_ratelimit_redis_reserved_decisions_total", "counter",
                       "Of those, requests that spent a token reserved ahead, without a script run.", reserved);
    redis::ClientStats rs;
    for (const auto& c : clients_)
        rs += c->stats();
    redis::render_metrics(out, rs);
}

void RateLimiting::close() {
    for (auto& c : clients_)
        c->close();
}

}  // namespace mtapi::app
