#include "pg/pool.hpp"

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "obs/log.hpp"
#include "util/uuid.hpp"

namespace mtapi::pg {
namespace {
namespace asio = boost::asio;
constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);
}  // namespace

// A caller parked until a connection frees up: release() hands the connection over and cancels
// the timer, which wakes the caller.
struct Pool::Waiter {
    explicit Waiter(asio::io_context& ioc) : timer(ioc) {}
    asio::steady_timer timer;
    std::unique_ptr<Connection> conn;
    bool slot_granted = false;  // allowed to open a new connection (one was closed)
    bool failed = false;        // the database is down: give up now rather than at the deadline
};

Pool::Pool(asio::io_context& ioc, PoolOptions options) : ioc_(ioc), options_(std::move(options)) {}

Pool::~Pool() {
    *alive_ = false;
    for (Waiter* w : waiters_)
        w->timer.cancel();
}

Pool::Lease& Pool::Lease::operator=(Lease&& o) noexcept {
    if (this != &o) {
        if (pool_alive() && conn_) pool_->release(std::move(conn_));
        pool_ = std::exchange(o.pool_, nullptr);
        alive_ = std::move(o.alive_);
        conn_ = std::move(o.conn_);
    }
    return *this;
}

Pool::Lease::~Lease() {
    if (pool_alive() && conn_) pool_->release(std::move(conn_));
}

void Pool::Lease::discard() {
    if (conn_) {
        conn_.reset();
        if (pool_alive()) {
            pool_->counters_.discarded++;
            pool_->release(nullptr);
        }
    }
}

void Pool::release(std::unique_ptr<Connection> conn) {
    if (conn && (conn->broken() || conn->in_transaction())) {
        // A connection in an unknown state never goes back: a transaction left open could
        // carry one request's tenant settings into the next.
        conn.reset();
        counters_.discarded++;
    }
    if (!conn) {
        --total_;
        if (!waiters_.empty()) {  // let a waiter open a replacement
            Waiter* w = waiters_.front();
            waiters_.pop_front();
            w->slot_granted = true;
            ++total_;
            w->timer.cancel();
        }
        return;
    }
    if (!waiters_.empty()) {
        Waiter* w = waiters_.front();
        waiters_.pop_front();
        w->conn = std::move(conn);
        w->timer.cancel();
        return;
    }
    idle_.push_back(std::move(conn));
}

std::chrono::milliseconds Pool::next_backoff() {
    auto next = backoff_.count() == 0 ? options_.backoff_min : std::min(backoff_ * 2, options_.backoff_max);
    backoff_ = next;
    // Full jitter in [next/2, next] so shards and instances do not reconnect in lockstep.
    auto half = next.count() / 2;
    auto jitter = half > 0 ? static_cast<long>(util::fast_random() % static_cast<std::uint64_t>(half + 1)) : 0;
    return std::chrono::milliseconds(half + jitter);
}

std::unique_ptr<Connection> Pool::take_idle(std::string_view affinity) {
    // The most recently released connection with the key (its caches are the warmest), else the
    // one released longest ago.
    auto pick = idle_.begin();
    if (!affinity.empty()) {
        auto match =
            std::find_if(idle_.rbegin(), idle_.rend(), [&](const auto& c) { return c->affinity() == affinity; });
        if (match != idle_.rend()) {
            pick = std::next(match).base();
            counters_.affinity_hits++;
        } else {
            counters_.affinity_misses++;
        }
    }
    std::unique_ptr<Connection> conn = std::move(*pick);
    idle_.erase(pick);
    return conn;
}

asio::awaitable<Pool::Lease> Pool::acquire(Deadline deadline, std::string_view affinity) {
    // Reuse an idle connection, skipping any that died while idle.
    while (!idle_.empty()) {
        std::unique_ptr<Connection> conn = take_idle(affinity);
        if (conn->check_alive()) co_return Lease(this, std::move(conn));
        --total_;
        counters_.discarded++;
    }

    bool may_open = total_ < options_.size;
    if (!may_open) {
        if (waiters_.size() >= options_.max_waiters)
            throw Error(ErrorKind::unavailable, "connection pool queue is full");
        Waiter w(ioc_);
        w.timer.expires_at(deadline);
        waiters_.push_back(&w);
        auto alive = alive_;
        co_await w.timer.async_wait(nothrow);
        if (!*alive) throw Error(ErrorKind::unavailable, "connection pool is shutting down");
        if (w.conn) co_return Lease(this, std::move(w.conn));
        if (w.failed) throw Error(ErrorKind::unavailable, "database unavailable; retrying shortly");
        if (!w.slot_granted) {
            waiters_.erase(std::remove(waiters_.begin(), waiters_.end(), &w), waiters_.end());
            throw Error(ErrorKind::unavailable, "no database connection became free in time");
        }
        --total_;  // re-counted below
    }

    if (Clock::now() < retry_after_) throw Error(ErrorKind::unavailable, "database unavailable; retrying shortly");

    ++total_;
    try {
        ConnectOptions opts = options_.connect;
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
        opts.connect_timeout = std::max(std::chrono::milliseconds(1), std::min(opts.connect_timeout, left));
        auto conn = co_await Connection::connect(ioc_, opts);
        counters_.connects++;
        if (backoff_.count() != 0) obs::info("database connection restored");
        backoff_ = std::chrono::milliseconds(0);
        retry_after_ = {};
        co_return Lease(this, std::move(conn));
    } catch (const Error& e) {
        counters_.connect_failures++;
        bool first = backoff_.count() == 0;
        retry_after_ = Clock::now() + next_backoff();
        if (first) obs::warn("database connection failed", {{"error", std::string_view(e.what())}});
        for (Waiter* w : waiters_) {
            w->failed = true;
            w->timer.cancel();
        }
        waiters_.clear();
        release(nullptr);
        throw Error(ErrorKind::unavailable, std::string("database unavailable: ") + e.what());
    }
}

PoolStats Pool::stats() const {
    PoolStats s = counters_;
    s.total = total_;
    s.idle = idle_.size();
    s.waiting = waiters_.size();
    return s;
}

bool Pool::degraded() const {
    return backoff_.count() != 0;
}

}  // namespace mtapi::pg
