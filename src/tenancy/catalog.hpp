#pragma once
// The tenant catalog: an immutable snapshot of platform.tenants shared by every shard.
// Readers take the current snapshot without locking; the refresher publishes a new one when
// PostgreSQL NOTIFYs a change (trigger on platform.tenants) and, as a safety net, every
// `full_reload_every`. A tenant missing from the snapshot is read from the database once.

#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <unordered_map>

#include "pg/connection.hpp"
#include "pg/pool.hpp"
#include "tenancy/tenant.hpp"

namespace mtapi::tenancy {

using TenantPtr = std::shared_ptr<const Tenant>;

class Catalog {
  public:
    struct Snapshot {
        std::unordered_map<std::string, TenantPtr> by_id;  // canonical UUID text
        std::unordered_map<std::string, TenantPtr> by_slug;
    };

    Catalog();

    std::shared_ptr<const Snapshot> snapshot() const { return snapshot_.load(std::memory_order_acquire); }
    TenantPtr find_id(const std::string& id) const;
    TenantPtr find_slug(const std::string& slug) const;

    // Snapshot first; on a miss, one read from the database (the row may be newer than the last
    // notification). Returns nullptr when the tenant does not exist.
    boost::asio::awaitable<TenantPtr> lookup_id(pg::Pool& pool, const std::string& id);
    boost::asio::awaitable<TenantPtr> lookup_slug(pg::Pool& pool, const std::string& slug);

    // Publishes a tenant this instance just changed, ahead of the notification.
    void put(TenantPtr t) { upsert(std::move(t)); }
    // Forgets a tenant this instance just deleted.
    void erase(const std::string& id);

    // Reads every tenant and publishes a fresh snapshot.
    boost::asio::awaitable<void> reload(pg::Connection& conn, pg::Deadline deadline);

    // Keeps the snapshot fresh until `stop` is set: LISTEN mtapi_tenants on a dedicated
    // connection, reload on each notification, full reload periodically, reconnect with backoff.
    boost::asio::awaitable<void> run_refresher(boost::asio::io_context& ioc, pg::ConnectOptions options,
                                               std::shared_ptr<std::atomic<bool>> stop);

    std::chrono::milliseconds full_reload_every{30'000};

    // SQL selecting the catalog columns, used by anything that reads tenants.
    static const char* select_columns();
    static Tenant from_row(const pg::Result& r, int row);

  private:
    void publish(std::shared_ptr<const Snapshot> next) { snapshot_.store(std::move(next), std::memory_order_release); }
    void upsert(TenantPtr t);
    boost::asio::awaitable<TenantPtr> lookup(pg::Pool& pool, const std::string& column, const std::string& value);

    std::atomic<std::shared_ptr<const Snapshot>> snapshot_;
};

}  // namespace mtapi::tenancy
