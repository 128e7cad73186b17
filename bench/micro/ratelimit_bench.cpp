// Micro-benchmarks of the in-process rate limiter (ratelimit::MemoryLimiter::take_now): the cost a
// request pays for its decision, with one hot tenant, many tenants, refused requests, and several
// threads on one tenant (CAS contention) or on tenants of their own.

#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "ratelimit/memory_limiter.hpp"
#include "util/uuid.hpp"

using mtapi::ratelimit::Bucket;
using mtapi::ratelimit::MemoryLimiter;

namespace {

// Never runs dry during a benchmark: a huge burst refilled faster than it is spent.
const Bucket kOpen{1'000'000'000, 1e9};

std::vector<std::string> tenant_ids(std::size_t n) {
    std::vector<std::string> ids;
    ids.reserve(n);
    for (std::size_t i = 0; i < n; ++i)
        ids.push_back(mtapi::util::to_string(mtapi::util::uuid_v7()));
    return ids;
}

void BM_MemoryTake_OneTenant(benchmark::State& state) {
    MemoryLimiter limiter;
    const std::string id = mtapi::util::to_string(mtapi::util::uuid_v7());
    for (auto _ : state)
        benchmark::DoNotOptimize(limiter.take_now(id, kOpen));
}
BENCHMARK(BM_MemoryTake_OneTenant);

void BM_MemoryTake_ManyTenants(benchmark::State& state) {
    MemoryLimiter limiter;
    const auto ids = tenant_ids(static_cast<std::size_t>(state.range(0)));
    std::size_t i = 0;
    for (auto _ : state) {
        benchmark::DoNotOptimize(limiter.take_now(ids[i], kOpen));
        if (++i == ids.size()) i = 0;
    }
}
BENCHMARK(BM_MemoryTake_ManyTenants)->Arg(1000)->Arg(100000);

void BM_MemoryTake_Refused(benchmark::State& state) {
    MemoryLimiter limiter;
    const std::string id = mtapi::util::to_string(mtapi::util::uuid_v7());
    const Bucket one{1, 0};
    limiter.take_now(id, one);
    for (auto _ : state)
        benchmark::DoNotOptimize(limiter.take_now(id, one));
}
BENCHMARK(BM_MemoryTake_Refused);

void BM_MemoryTake_FirstUse(benchmark::State& state) {
    // The locked path: a tenant's first request inserts its bucket.
    const auto ids = tenant_ids(1 << 16);
    auto limiter = std::make_unique<MemoryLimiter>();
    std::size_t i = 0;
    for (auto _ : state) {
        benchmark::DoNotOptimize(limiter->take_now(ids[i], kOpen));
        if (++i == ids.size()) {
            state.PauseTiming();
            limiter = std::make_unique<MemoryLimiter>();
            i = 0;
            state.ResumeTiming();
        }
    }
}
BENCHMARK(BM_MemoryTake_FirstUse);

// One process-wide limiter shared by the benchmark threads, as by a server's shards.
MemoryLimiter& shared_limiter() {
    static MemoryLimiter limiter;
    return limiter;
}

void BM_MemoryTake_SharedTenant(benchmark::State& state) {
    static const std::string id = mtapi::util::to_string(mtapi::util::uuid_v7());
    MemoryLimiter& limiter = shared_limiter();
    for (auto _ : state)
        benchmark::DoNotOptimize(limiter.take_now(id, kOpen));
}
BENCHMARK(BM_MemoryTake_SharedTenant)->Threads(1)->Threads(2)->UseRealTime();

void BM_MemoryTake_TenantPerThread(benchmark::State& state) {
    const std::string id = mtapi::util::to_string(mtapi::util::uuid_v7());
    MemoryLimiter& limiter = shared_limiter();
    for (auto _ : state)
        benchmark::DoNotOptimize(limiter.take_now(id, kOpen));
}
BENCHMARK(BM_MemoryTake_TenantPerThread)->Threads(1)->Threads(2)->UseRealTime();

}  // namespace
