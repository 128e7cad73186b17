#pragma once
// Prometheus metrics. Hot counters are per shard (each shard writes only its own cells, relaxed
// atomics, no sharing on the request path); /metrics sums the shards when it renders.

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace mtapi::obs {

struct RouteLabel {
    std::string method;
    std::string route;  // the path template, e.g. /api/v1/vehicles/{id}
};

class HttpMetrics {
  public:
    static constexpr std::size_t kBuckets = 14;
    static constexpr std::uint64_t kBucketBoundsUs[kBuckets] = {
        250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000, 10000000};

    HttpMetrics(std::vector<RouteLabel> routes, unsigned shards);

    // `route` is the router's index of the matched route, or -1 when nothing matched.
    void observe(unsigned shard, int route, int status, std::uint64_t latency_us);
    void connection_opened(unsigned shard) { shards_[shard]->open.fetch_add(1, std::memory_order_relaxed); }
    void connection_closed(unsigned shard) { shards_[shard]->open.fetch_sub(1, std::memory_order_relaxed); }
    void connection_accepted(unsigned shard) { shards_[shard]->accepted.fetch_add(1, std::memory_order_relaxed); }

    void render(std::string& out) const;

  private:
    struct Cell {
        std::atomic<std::uint64_t> count{0};
        std::atomic<std::uint64_t> sum_us{0};
        std::atomic<std::uint64_t> buckets[kBuckets]{};
    };
    struct Shard {
        explicit Shard(std::size_t cells) : cells(new Cell[cells]) {}
        std::unique_ptr<Cell[]> cells;
        std::atomic<std::int64_t> open{0};
        std::atomic<std::uint64_t> accepted{0};
    };
    std::size_t cell_index(int route, int status) const;

    std::vector<RouteLabel> routes_;
    std::vector<std::unique_ptr<Shard>> shards_;
};

// Prometheus text format helpers: the # HELP and # TYPE lines of a metric family, and one sample
// (`labels` is empty or the rendered braces, e.g. {result="hit"}).
void append_family(std::string& out, std::string_view name, std::string_view type, std::string_view help);
void append_sample(std::string& out, std::string_view name, std::string_view labels, std::uint64_t value);
// A family of a single unlabelled sample.
inline void append_metric(std::string& out, std::string_view name, std::string_view type, std::string_view help,
                          std::uint64_t value) {
    append_family(out, name, type, help);
    append_sample(out, name, {}, value);
}

// Process-wide list of metric producers; /metrics concatenates their output.
class MetricsRegistry {
  public:
    using Collector = std::function<void(std::string&)>;
    void add(Collector c) {
        std::lock_guard lock(mutex_);
        collectors_.push_back(std::move(c));
    }
    std::string render() const;

  private:
    mutable std::mutex mutex_;
    std::vector<Collector> collectors_;
};

}  // namespace mtapi::obs
