#pragma once
// The composition root's shared state: what handlers reach besides their request. Per-shard
// resources are indexed by the shard the request runs on; there is no cross-shard locking.

#include <boost/asio/io_context.hpp>
#include <memory>
#include <vector>

#include "app/config.hpp"
#include "auth/keyring.hpp"
#include "auth/password_hasher.hpp"
#include "pg/pool.hpp"
#include "tenancy/catalog.hpp"
#include "util/cursor.hpp"

namespace mtapi::app {

class RateLimiting;  // app/rate_limiting.hpp

struct App {
    Config config;
    std::shared_ptr<tenancy::Catalog> catalog;
    std::unique_ptr<auth::PasswordHasher> hasher;
    std::vector<std::unique_ptr<pg::Pool>> pools;    // one per shard, bound to that shard's io_context
    std::vector<boost::asio::io_context*> contexts;  // by shard
    std::shared_ptr<const auth::Keyring> keyring;
    std::unique_ptr<util::CursorCodec> cursors;
    std::shared_ptr<RateLimiting> rate_limits;  // null: no limiting (tools and unit tests)

    pg::Pool& pool(unsigned shard) { return *pools.at(shard); }
    pg::Deadline db_deadline() const { return pg::Clock::now() + config.db_timeout; }
};

pg::PoolOptions pool_options(const Config& config);

// The keyring from the configuration; throws auth::KeyringError (a configuration error).
std::shared_ptr<const auth::Keyring> load_keyring(const Config& config);
// MTAPI_CURSOR_SECRET, or a key derived from the signing key's material.
std::string cursor_key(const Config& config, const auth::Keyring& keyring);
auth::HashParams hash_params(const Config& config);

}  // namespace mtapi::app
