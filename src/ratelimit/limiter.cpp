#include "ratelimit/limiter.hpp"

#include <algorithm>

namespace mtapi::ratelimit {

Normalized normalize(const Bucket& bucket) {
    Normalized n;
    n.capacity = std::clamp(bucket.capacity, 0LL, kMaxCapacity);
    const double r = bucket.refill_per_sec;
    n.refill_per_sec = r > 0 ? std::min(r, kMaxRefillPerSec) : 0.0;  // NaN and negatives: no refill
    return n;
}

Decision blocked_decision() {
    Decision d;
    d.allowed = false;
    d.limit = 0;
    d.remaining = 0;
    d.reset_seconds = 0;
    d.retry_after_seconds = kIdleResetSeconds;
    return d;
}

}  // namespace mtapi::ratelimit
