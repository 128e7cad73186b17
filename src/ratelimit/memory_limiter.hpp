#pragma once
// In-process token buckets, shared by every shard of the process.
//
// Why one table for the whole process rather than one per shard: splitting a tenant's capacity
// across N shards (capacity/N each) breaks small limits — with capacity 10 and 8 shards a tenant
// would get 1 or 2 requests per shard and be refused while other shards still hold its tokens,
// or, rounding up, be allowed 16. A tenant's limit must hold for the process as a whole, whichever
// shard its connections landed on.
//
// Request path without locks:
// - Each bucket's whole state is one std::atomic<std::uint64_t>, updated with a compare-and-swap
//   loop; a refused request does not write at all.
// - Buckets live in a BucketTable: 64 independently locked shards, each an open-addressing array
//   of pointers to nodes that are never moved or freed while the table lives. Lookups read the
//   array with acquire loads and take no lock. The shard's mutex is taken only to insert a key
//   the lookup did not find (the first request of a tenant) or to grow the array; a reader still
//   holding the previous array misses only keys inserted meanwhile and then takes the locked
//   path, which finds them. Retired arrays are kept until the table is destroyed (at most as
//   much memory again as the live one).
// - Memory is bounded: past `max_entries` keys, a new key shares one of 4096 overflow buckets
//   chosen by its hash. That only happens when far more keys than tenants appear (a login spray
//   over many addresses) and then errs on the side of limiting.
//
// The state word (time in nanoseconds of a monotonic clock):
// - refilling buckets use the GCRA form of a token bucket: the word holds the "empty time" E, the
//   instant at which the bucket would have been empty; the tokens at `now` are
//   min(capacity, (now − E) / T) with T = 1/refill seconds per token. Taking a token adds T to
//   max(E, now − capacity·T). One integer, no wrap-around for 146 years of uptime, exact integer
//   arithmetic (T is rounded to whole nanoseconds, a relative error below 1e−9 of the rate);
// - buckets without refill (or so slow that capacity·T exceeds 2^61 ns) count the tokens used and
//   the second of the last accepted request; they start over after kIdleResetSeconds without an
//   accepted request, as the Redis key would expire.
// The top bit says which form a word holds; a word of the other form (the bucket's refill was
// changed between zero and non-zero) is read as a full bucket.

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "ratelimit/limiter.hpp"

namespace mtapi::ratelimit {

class BucketTable {
  public:
    explicit BucketTable(std::size_t max_entries = std::size_t{1} << 20);
    ~BucketTable();
    BucketTable(const BucketTable&) = delete;
    BucketTable& operator=(const BucketTable&) = delete;

    // The state word of bucket `key`, created (0, a full bucket) on first use. Lock-free once the
    // key exists.
    std::atomic<std::uint64_t>& state(std::string_view key);

    // Keys stored (overflowed keys are not counted).
    std::size_t size() const { return size_.load(std::memory_order_relaxed); }
    std::uint64_t overflowed() const { return overflowed_.load(std::memory_order_relaxed); }

  private:
    struct Node;
    struct Slots;
    struct Shard;
    struct OverflowCell;
    static constexpr std::size_t kShards = 64;
    static constexpr std::size_t kOverflowCells = 4096;

    std::atomic<std::uint64_t>& insert(Shard& shard, std::uint64_t hash, std::string_view key);

    std::unique_ptr<Shard[]> shards_;
    std::unique_ptr<OverflowCell[]> overflow_;
    std::size_t max_per_shard_;
    std::atomic<std::size_t> size_{0};
    std::atomic<std::uint64_t> overflowed_{0};
};

struct MemoryLimiterOptions {
    std::size_t max_entries = std::size_t{1} << 20;
    // Monotonic nanoseconds; empty = std::chrono::steady_clock. Tests inject their own.
    std::function<std::int64_t()> clock;
};

// Thread-safe: one instance serves every shard.
class MemoryLimiter final : public Limiter {
  public:
    explicit MemoryLimiter(MemoryLimiterOptions options = {});

    // The synchronous core of take()/refund(), for callers that are not coroutines.
    Decision take_now(std::string_view id, const Bucket& bucket);
    void refund_now(std::string_view id, const Bucket& bucket);

    boost::asio::awaitable<Decision> take(std::string_view id, const Bucket& bucket) override;
    boost::asio::awaitable<void> refund(std::string_view id, const Bucket& bucket) override;

    std::size_t size() const { return table_.size(); }
    std::uint64_t overflowed() const { return table_.overflowed(); }

  private:
    std::int64_t now() const;
    Decision apply(std::string_view id, const Bucket& bucket, int cost);

    BucketTable table_;
    std::function<std::int64_t()> clock_;
};

}  // namespace mtapi::ratelimit
