#pragma once
// Rate limit decisions by plan for /metrics. Like obs::HttpMetrics: each shard writes only its own
// relaxed atomic cells, render() sums the shards.

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ratelimit/limiter.hpp"

namespace mtapi::ratelimit {

class DecisionMetrics {
  public:
    DecisionMetrics(std::vector<std::string> plans, unsigned shards);

    // `plan` indexes the names given to the constructor; anything else counts as plan "other".
    void observe(unsigned shard, std::size_t plan, const Decision& decision);

    // mtapi_ratelimit_plan_decisions_total{plan,result="allowed|limited",fallback="true|false"}
    // (series that are still zero are left out).
    void render(std::string& out) const;

  private:
    std::size_t cell(std::size_t plan, const Decision& d) const;
    std::vector<std::string> plans_;
    std::size_t cells_;
    std::vector<std::unique_ptr<std::atomic<std::uint64_t>[]>> shards_;
};

}  // namespace mtapi::ratelimit
