#pragma once
// The composition root's shared state: what handlers reach besides their request. Per-shard
// resources are indexed by the shard the request runs on; there is no cross-shard locking.

#include <memory>
#include <vector>

#include "app/config.hpp"
#include "auth/password_hasher.hpp"
#include "pg/pool.hpp"
#include "tenancy/catalog.hpp"

namespace mtapi::app {

struct App {
    Config config;
    std::shared_ptr<tenancy::Catalog> catalog;
    std::unique_ptr<auth::PasswordHasher> hasher;
    std::vector<std::unique_ptr<pg::Pool>> pools;  // one per shard, bound to that shard's io_context

    pg::Pool& pool(unsigned shard) { return *pools.at(shard); }
    pg::Deadline db_deadline() const { return pg::Clock::now() + config.db_timeout; }
};

pg::PoolOptions pool_options(const Config& config);
auth::HashParams hash_params(const Config& config);

}  // namespace mtapi::app
