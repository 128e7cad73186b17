#pragma once
// A shard's pool of PostgreSQL connections. Single-threaded (lives on one io_context): no locks.
// Bounded in size and in how many callers may wait; each wait has a deadline. After a failed
// connect the pool backs off (exponential, jittered) and fails fast meanwhile, so a database
// outage turns into quick 503s rather than piled-up requests.
//
// Affinity: acquire() may name a key (TenantTx passes the tenant's schema). Among the idle
// connections it then takes one whose Connection::affinity() equals the key, else the one idle
// the longest. Callers that have to wait are still served strictly in arrival order, whatever
// their key: affinity only chooses among idle connections, so nobody waits longer for it.

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <string_view>
#include <vector>

#include "pg/connection.hpp"

namespace mtapi::pg {

struct PoolOptions {
    ConnectOptions connect;
    std::size_t size = 8;            // connections per shard
    std::size_t max_waiters = 1024;  // callers queued for a connection; beyond → unavailable
    std::chrono::milliseconds acquire_timeout{2000};
    std::chrono::milliseconds backoff_min{100};
    std::chrono::milliseconds backoff_max{5000};
};

struct PoolStats {
    std::size_t total = 0;
    std::size_t idle = 0;
    std::size_t waiting = 0;
    std::uint64_t connects = 0;
    std::uint64_t connect_failures = 0;
    std::uint64_t discarded = 0;
    std::uint64_t affinity_hits = 0;    // acquire with a key found an idle connection with that key
    std::uint64_t affinity_misses = 0;  // acquire with a key found idle connections, none with it
};

class Pool {
  public:
    Pool(boost::asio::io_context& ioc, PoolOptions options);
    ~Pool();
    Pool(const Pool&) = delete;
    Pool& operator=(const Pool&) = delete;

    // Exclusive use of one connection until the Lease is destroyed. A broken connection, or one
    // left inside a transaction, is closed instead of returned.
    class Lease {
      public:
        Lease() = default;
        Lease(Pool* pool, std::unique_ptr<Connection> conn)
            : pool_(pool), alive_(pool->alive_), conn_(std::move(conn)) {}
        Lease(Lease&& o) noexcept = default;
        Lease& operator=(Lease&& o) noexcept;
        ~Lease();
        Connection& operator*() const { return *conn_; }
        Connection* operator->() const { return conn_.get(); }
        explicit operator bool() const { return conn_ != nullptr; }
        void discard();  // close instead of returning to the pool

      private:
        bool pool_alive() const { return pool_ != nullptr && alive_ && *alive_; }
        Pool* pool_ = nullptr;
        std::shared_ptr<bool> alive_;  // a lease may outlive its pool at shutdown
        std::unique_ptr<Connection> conn_;
    };

    // Throws Error(unavailable) when the queue is full, the pool is backing off after failures,
    // or no connection frees up before the deadline; Error(connection) when a connect fails.
    // `affinity` (may be empty) must stay valid until the returned awaitable completes.
    boost::asio::awaitable<Lease> acquire(Deadline deadline, std::string_view affinity = {});
    boost::asio::awaitable<Lease> acquire() { return acquire(Clock::now() + options_.acquire_timeout); }

    PoolStats stats() const;
    // True while the last connect attempt failed and the pool is backing off.
    bool degraded() const;
    const PoolOptions& options() const { return options_; }
    boost::asio::io_context& context() { return ioc_; }

  private:
    struct Waiter;
    void release(std::unique_ptr<Connection> conn);
    std::unique_ptr<Connection> take_idle(std::string_view affinity);
    std::chrono::milliseconds next_backoff();

    boost::asio::io_context& ioc_;
    PoolOptions options_;
    std::vector<std::unique_ptr<Connection>> idle_;  // least recently released first
    std::deque<Waiter*> waiters_;
    std::size_t total_ = 0;  // idle + leased + connecting
    PoolStats counters_;
    Clock::time_point retry_after_{};
    std::chrono::milliseconds backoff_{0};
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace mtapi::pg
