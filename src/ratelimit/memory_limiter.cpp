#include "ratelimit/memory_limiter.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>

namespace mtapi::ratelimit {
namespace {

constexpr std::int64_t kNanosPerSecond = 1'000'000'000;
constexpr std::uint64_t kCountingBit = std::uint64_t{1} << 63;
constexpr std::int64_t kBias = std::int64_t{1} << 62;       // GCRA words hold E + 2^62
constexpr std::int64_t kMaxSpanNs = std::int64_t{1} << 61;  // capacity·T beyond this: counting form

// How a bucket's parameters translate into the state word's arithmetic.
struct Form {
    bool counting = false;  // no refill (or too slow to matter): count used tokens
    std::int64_t capacity = 0;
    std::int64_t t_ns = 0;    // nanoseconds per token
    std::int64_t tau_ns = 0;  // capacity · t_ns: from empty to full
};

Form form_of(const Normalized& n) {
    Form f;
    f.capacity = n.capacity;
    if (n.refill_per_sec <= 0) {
        f.counting = true;
        return f;
    }
    const double t = 1e9 / n.refill_per_sec;
    if (!(t < static_cast<double>(kMaxSpanNs))) {
        f.counting = true;
        return f;
    }
    f.t_ns = std::max<std::int64_t>(1, std::llround(t));
    if (f.capacity > kMaxSpanNs / f.t_ns) {  // capacity · t_ns would exceed 2^61
        f.counting = true;
        return f;
    }
    f.tau_ns = f.capacity * f.t_ns;
    return f;
}

std::int64_t steady_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

// Counting form: bit 63 set, bits 32..62 the second of the last accepted request, bits 0..31 the
// tokens used since the bucket was last full.
struct Count {
    std::int64_t used = 0;
    std::int64_t last_s = 0;
};
Count decode_count(std::uint64_t word) {
    if ((word & kCountingBit) == 0) return {};  // the other form: a full bucket
    return {static_cast<std::int64_t>(word & 0xffffffffu), static_cast<std::int64_t>((word & ~kCountingBit) >> 32)};
}
std::uint64_t encode_count(const Count& c) {
    return kCountingBit | (static_cast<std::uint64_t>(c.last_s & 0x7fffffff) << 32) |
           static_cast<std::uint64_t>(c.used & 0xffffffff);
}

}  // namespace

// ----------------------------------------------------------------------------- BucketTable

struct alignas(64) BucketTable::Node {
    Node(std::uint64_t h, std::string_view k) : hash(h), key(k) {}
    std::atomic<std::uint64_t> state{0};
    std::uint64_t hash;
    std::string key;
};

struct BucketTable::Slots {
    explicit Slots(std::size_t n) : mask(n - 1), slots(new std::atomic<Node*>[n]) {
        for (std::size_t i = 0; i < n; ++i)
            slots[i].store(nullptr, std::memory_order_relaxed);
    }
    std::size_t mask;
    std::unique_ptr<std::atomic<Node*>[]> slots;
};

struct alignas(64) BucketTable::Shard {
    std::atomic<Slots*> slots{nullptr};
    std::mutex mutex;  // insertion and growth only
    std::size_t count = 0;
    std::vector<std::unique_ptr<Slots>> arrays;  // the current one and every retired one
    std::vector<std::unique_ptr<Node>> nodes;
};

struct alignas(64) BucketTable::OverflowCell {
    std::atomic<std::uint64_t> state{0};
};

namespace {

template <class Node, class Slots>
Node* find_in(const Slots& t, std::uint64_t hash, std::string_view key) {
    for (std::size_t i = hash & t.mask;; i = (i + 1) & t.mask) {
        Node* n = t.slots[i].load(std::memory_order_acquire);
        if (n == nullptr) return nullptr;
        if (n->hash == hash && n->key == key) return n;
    }
}

template <class Node, class Slots>
void place(Slots& t, Node* node) {
    std::size_t i = node->hash & t.mask;
    while (t.slots[i].load(std::memory_order_relaxed) != nullptr)
        i = (i + 1) & t.mask;
    t.slots[i].store(node, std::memory_order_release);
}

}  // namespace

BucketTable::BucketTable(std::size_t max_entries)
    : shards_(new Shard[kShards]),
      overflow_(new OverflowCell[kOverflowCells]),
      max_per_shard_(std::max<std::size_t>(1, (max_entries + kShards - 1) / kShards)) {}

BucketTable::~BucketTable() = default;

std::atomic<std::uint64_t>& BucketTable::state(std::string_view key) {
    const std::uint64_t hash = std::hash<std::string_view>{}(key);
    Shard& shard = shards_[hash >> 58];  // top 6 bits pick the shard, the low bits the slot
    if (const Slots* t = shard.slots.load(std::memory_order_acquire)) {
        if (Node* n = find_in<Node>(*t, hash, key)) return n->state;
    }
    return insert(shard, hash, key);
}

std::atomic<std::uint64_t>& BucketTable::insert(Shard& shard, std::uint64_t hash, std::string_view key) {
    std::lock_guard lock(shard.mutex);
    Slots* t = shard.slots.load(std::memory_order_relaxed);
    if (t != nullptr) {
        if (Node* n = find_in<Node>(*t, hash, key)) return n->state;
    }
    if (shard.count >= max_per_shard_) {
        overflowed_.fetch_add(1, std::memory_order_relaxed);
        return overflow_[hash % kOverflowCells].state;
    }
    // Keep the load factor at most 1/2 so probes stay short and always reach an empty slot.
    if (t == nullptr || (shard.count + 1) * 2 > t->mask + 1) {
        const std::size_t n = t == nullptr ? 16 : (t->mask + 1) * 2;
        auto grown = std::make_unique<Slots>(n);
        for (const auto& node : shard.nodes)
            place(*grown, node.get());
        t = grown.get();
        shard.arrays.push_back(std::move(grown));
        shard.slots.store(t, std::memory_order_release);
    }
    shard.nodes.push_back(std::make_unique<Node>(hash, key));
    Node* node = shard.nodes.back().get();
    place(*t, node);
    ++shard.count;
    size_.fetch_add(1, std::memory_order_relaxed);
    return node->state;
}

// ----------------------------------------------------------------------------- MemoryLimiter

MemoryLimiter::MemoryLimiter(MemoryLimiterOptions options)
    : table_(options.max_entries), clock_(std::move(options.clock)) {}

std::int64_t MemoryLimiter::now() const {
    return clock_ ? clock_() : steady_ns();
}

Decision MemoryLimiter::take_now(std::string_view id, const Bucket& bucket) {
    return apply(id, bucket, 1);
}

void MemoryLimiter::refund_now(std::string_view id, const Bucket& bucket) {
    apply(id, bucket, -1);
}

namespace {
boost::asio::awaitable<Decision> ready(Decision d) {
    co_return d;
}
boost::asio::awaitable<void> done() {
    co_return;
}
}  // namespace

// Decided when called (not when awaited), so the arguments need not outlive the call.
boost::asio::awaitable<Decision> MemoryLimiter::take(std::string_view id, const Bucket& bucket) {
    return ready(apply(id, bucket, 1));
}

boost::asio::awaitable<void> MemoryLimiter::refund(std::string_view id, const Bucket& bucket) {
    apply(id, bucket, -1);
    return done();
}

// cost 1 takes a token, cost −1 gives one back. Each CAS attempt reads the clock afresh, so a
// retry never works with a time older than the state another thread has just written.
Decision MemoryLimiter::apply(std::string_view id, const Bucket& bucket, int cost) {
    const Normalized n = normalize(bucket);
    if (n.capacity == 0) return blocked_decision();
    const Form f = form_of(n);
    std::atomic<std::uint64_t>& state = table_.state(id);

    Decision d;
    d.limit = f.capacity;
    // Relaxed is enough: every decision is one read-modify-write of this single word, and atomic
    // operations on one object are totally ordered whatever the memory order.
    std::uint64_t old = state.load(std::memory_order_relaxed);
    for (;;) {
        const std::int64_t t = now();
        if (f.counting) {
            const std::int64_t now_s = t / kNanosPerSecond;
            Count c = decode_count(old);
            if (c.used > 0 && now_s - c.last_s >= kIdleResetSeconds) c = {};
            const std::int64_t tokens = std::max<std::int64_t>(0, f.capacity - c.used);
            if (cost > 0 && tokens < cost) {
                d.allowed = false;
                d.remaining = tokens;
                const std::int64_t left = std::max<std::int64_t>(1, c.last_s + kIdleResetSeconds - now_s);
                d.reset_seconds = left;
                d.retry_after_seconds = left;
                return d;
            }
            Count next = c;
            if (cost > 0) {
                next.used = c.used + cost;
                next.last_s = now_s;
            } else {
                next.used = std::max<std::int64_t>(0, std::min(c.used, f.capacity) + cost);
            }
            if (state.compare_exchange_weak(old, encode_count(next), std::memory_order_relaxed)) {
                d.allowed = true;
                d.remaining = std::max<std::int64_t>(0, f.capacity - next.used);
                d.reset_seconds =
                    next.used == 0 ? 0 : std::max<std::int64_t>(1, next.last_s + kIdleResetSeconds - now_s);
                d.retry_after_seconds = 0;
                return d;
            }
            continue;
        }

        // GCRA form: E is the instant the bucket would have been empty.
        const std::int64_t floor_e = t - f.tau_ns;  // E of a full bucket
        const std::int64_t e =
            (old & kCountingBit) != 0 ? floor_e : static_cast<std::int64_t>(old) - kBias;  // other form: full
        const std::int64_t e_eff = std::max(e, floor_e);
        const std::int64_t level_ns = t - e_eff;  // ≤ tau; negative only if another thread's clock ran ahead
        const std::int64_t tokens = level_ns > 0 ? level_ns / f.t_ns : 0;
        if (cost > 0 && tokens < cost) {
            d.allowed = false;
            d.remaining = tokens;
            d.reset_seconds = ceil_seconds(e_eff + f.tau_ns - t, kNanosPerSecond);
            d.retry_after_seconds = std::max<long long>(1, ceil_seconds(f.t_ns * cost - level_ns, kNanosPerSecond));
            return d;
        }
        const std::int64_t next_e = cost > 0 ? e_eff + f.t_ns * cost : std::max(e_eff + f.t_ns * cost, floor_e);
        if (state.compare_exchange_weak(old, static_cast<std::uint64_t>(next_e + kBias), std::memory_order_relaxed)) {
            d.allowed = true;
            d.remaining = std::min<std::int64_t>(f.capacity, std::max<std::int64_t>(0, t - next_e) / f.t_ns);
            d.reset_seconds = ceil_seconds(next_e + f.tau_ns - t, kNanosPerSecond);
            d.retry_after_seconds = 0;
            return d;
        }
    }
}

}  // namespace mtapi::ratelimit
