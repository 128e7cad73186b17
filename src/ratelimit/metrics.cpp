#include "ratelimit/metrics.hpp"

#include "obs/log.hpp"

namespace mtapi::ratelimit {

DecisionMetrics::DecisionMetrics(std::vector<std::string> plans, unsigned shards)
    : plans_(std::move(plans)), cells_((plans_.size() + 1) * 4) {
    for (unsigned i = 0; i < shards; ++i) {
        shards_.emplace_back(new std::atomic<std::uint64_t>[cells_]);
        for (std::size_t c = 0; c < cells_; ++c)
            shards_.back()[c].store(0, std::memory_order_relaxed);
    }
}

std::size_t DecisionMetrics::cell(std::size_t plan, const Decision& d) const {
    if (plan >= plans_.size()) plan = plans_.size();
    return plan * 4 + (d.allowed ? 0 : 2) + (d.fallback ? 1 : 0);
}

void DecisionMetrics::observe(unsigned shard, std::size_t plan, const Decision& decision) {
    shards_[shard][cell(plan, decision)].fetch_add(1, std::memory_order_relaxed);
}

void DecisionMetrics::render(std::string& out) const {
    static const std::string kOther = "other";
    out.append(
        "# HELP mtapi_ratelimit_plan_decisions_total Rate limit decisions by tenant plan, result and "
        "whether they were made in process because Redis was unusable.\n");
    out.append("# TYPE mtapi_ratelimit_plan_decisions_total counter\n");
    for (std::size_t c = 0; c < cells_; ++c) {
        std::uint64_t sum = 0;
        for (const auto& s : shards_)
            sum += s[c].load(std::memory_order_relaxed);
        if (sum == 0) continue;
        const std::size_t plan = c / 4;
        out.append("mtapi_ratelimit_plan_decisions_total{plan=");
        obs::append_json_string(out, plan < plans_.size() ? plans_[plan] : kOther);
        out.append((c % 4) < 2 ? ",result=\"allowed\"" : ",result=\"limited\"");
        out.append((c % 2) == 1 ? ",fallback=\"true\"} " : ",fallback=\"false\"} ");
        out.append(std::to_string(sum));
        out.push_back('\n');
    }
}

}  // namespace mtapi::ratelimit
