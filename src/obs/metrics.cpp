#include "obs/metrics.hpp"

#include <cstdio>

#include "obs/log.hpp"

namespace mtapi::obs {
namespace {

constexpr const char* kClasses[] = {"1xx", "2xx", "3xx", "4xx", "5xx"};

void append_labels(std::string& out, const std::string& method, const std::string& route, const char* cls) {
    out.append("{method=");
    append_json_string(out, method);  // JSON escaping is a superset of what the exposition format needs
    out.append(",route=");
    append_json_string(out, route);
    out.append(",status_class=\"");
    out.append(cls);
    out.push_back('"');
}

void append_seconds(std::string& out, std::uint64_t us) {
    char buf[32];
    int n = std::snprintf(buf, sizeof(buf), "%.6f", static_cast<double>(us) / 1e6);
    out.append(buf, static_cast<std::size_t>(n));
}

}  // namespace

void append_family(std::string& out, std::string_view name, std::string_view type, std::string_view help) {
    out.append("# HELP ").append(name).push_back(' ');
    out.append(help).append("\n# TYPE ").append(name).push_back(' ');
    out.append(type).push_back('\n');
}

void append_sample(std::string& out, std::string_view name, std::string_view labels, std::uint64_t value) {
    out.append(name).append(labels).push_back(' ');
    out.append(std::to_string(value)).push_back('\n');
}

HttpMetrics::HttpMetrics(std::vector<RouteLabel> routes, unsigned shards) : routes_(std::move(routes)) {
    for (unsigned i = 0; i < shards; ++i)
        shards_.push_back(std::make_unique<Shard>((routes_.size() + 1) * 5));
}

std::size_t HttpMetrics::cell_index(int route, int status) const {
    std::size_t r = route < 0 ? routes_.size() : static_cast<std::size_t>(route);
    int cls = status / 100 - 1;
    if (cls < 0 || cls > 4) cls = 4;
    return r * 5 + static_cast<std::size_t>(cls);
}

void HttpMetrics::observe(unsigned shard, int route, int status, std::uint64_t latency_us) {
    Cell& c = shards_[shard]->cells[cell_index(route, status)];
    c.count.fetch_add(1, std::memory_order_relaxed);
    c.sum_us.fetch_add(latency_us, std::memory_order_relaxed);
    for (std::size_t b = 0; b < kBuckets; ++b) {
        if (latency_us <= kBucketBoundsUs[b]) {
            c.buckets[b].fetch_add(1, std::memory_order_relaxed);
            break;
        }
    }
}

void HttpMetrics::render(std::string& out) const {
    const std::size_t cells = (routes_.size() + 1) * 5;
    struct Sum {
        std::uint64_t count = 0, sum_us = 0, buckets[kBuckets] = {};
    };
    std::vector<Sum> sums(cells);
    std::int64_t open = 0;
    std::uint64_t accepted = 0;
    for (const auto& s : shards_) {
        open += s->open.load(std::memory_order_relaxed);
        accepted += s->accepted.load(std::memory_order_relaxed);
        for (std::size_t i = 0; i < cells; ++i) {
            const Cell& c = s->cells[i];
            sums[i].count += c.count.load(std::memory_order_relaxed);
            sums[i].sum_us += c.sum_us.load(std::memory_order_relaxed);
            for (std::size_t b = 0; b < kBuckets; ++b)
                sums[i].buckets[b] += c.buckets[b].load(std::memory_order_relaxed);
        }
    }
    static const std::string kUnmatchedMethod = "other";
    static const std::string kUnmatchedRoute = "unmatched";

    out.append("# HELP mtapi_http_requests_total HTTP requests answered, by route template and status class.\n");
    out.append("# TYPE mtapi_http_requests_total counter\n");
    for (std::size_t i = 0; i < cells; ++i) {
        if (sums[i].count == 0) continue;
        std::size_t r = i / 5;
        const auto& method = r < routes_.size() ? routes_[r].method : kUnmatchedMethod;
        const auto& route = r < routes_.size() ? routes_[r].route : kUnmatchedRoute;
        out.append("mtapi_http_requests_total");
        append_labels(out, method, route, kClasses[i % 5]);
        out.append("} ");
        out.append(std::to_string(sums[i].count));
        out.push_back('\n');
    }
    out.append("# HELP mtapi_http_request_duration_seconds Time from the end of the request head to the response.\n");
    out.append("# TYPE mtapi_http_request_duration_seconds histogram\n");
    for (std::size_t i = 0; i < cells; ++i) {
        if (sums[i].count == 0) continue;
        std::size_t r = i / 5;
        const auto& method = r < routes_.size() ? routes_[r].method : kUnmatchedMethod;
        const auto& route = r < routes_.size() ? routes_[r].route : kUnmatchedRoute;
        std::uint64_t cumulative = 0;
        for (std::size_t b = 0; b < kBuckets; ++b) {
            cumulative += sums[i].buckets[b];
            out.append("mtapi_http_request_duration_seconds_bucket");
            append_labels(out, method, route, kClasses[i % 5]);
            out.append(",le=\"");
            append_seconds(out, kBucketBoundsUs[b]);
            out.append("\"} ");
            out.append(std::to_string(cumulative));
            out.push_back('\n');
        }
        const char* suffixes[] = {"_bucket", "_sum", "_count"};
        for (const char* suffix : suffixes) {
            out.append("mtapi_http_request_duration_seconds");
            out.append(suffix);
            append_labels(out, method, route, kClasses[i % 5]);
            if (suffix == suffixes[0]) {
                out.append(",le=\"+Inf\"} ");
                out.append(std::to_string(sums[i].count));
            } else if (suffix == suffixes[1]) {
                out.append("} ");
                append_seconds(out, sums[i].sum_us);
            } else {
                out.append("} ");
                out.append(std::to_string(sums[i].count));
            }
            out.push_back('\n');
        }
    }
    out.append("# HELP mtapi_http_connections_open Client connections currently open.\n");
    out.append("# TYPE mtapi_http_connections_open gauge\n");
    out.append("mtapi_http_connections_open ");
    out.append(std::to_string(open));
    out.append("\n# HELP mtapi_http_connections_accepted_total Client connections accepted.\n");
    out.append("# TYPE mtapi_http_connections_accepted_total counter\n");
    out.append("mtapi_http_connections_accepted_total ");
    out.append(std::to_string(accepted));
    out.push_back('\n');
}

std::string MetricsRegistry::render() const {
    std::string out;
    out.reserve(8192);
    std::lock_guard lock(mutex_);
    for (const auto& c : collectors_)
        c(out);
    return out;
}

}  // namespace mtapi::obs
