#pragma once
// Applying the migration streams (SPEC §5).
//
// Every schema has its own schema_migrations(version, name, checksum, applied_at). Before
// applying anything, the recorded rows are compared with the stream: a recorded checksum that
// differs from the file's (an applied file was edited) or a recorded version the stream does not
// have (the database is newer than this binary) is refused. Pending files then run in order as
// plain scripts and are recorded, all in the caller's transaction.
//
// Concurrency: the platform run and each tenant run take a transaction-level advisory lock
// first and read the recorded rows only after it, so two `mtapi migrate` processes at once
// serialise per schema and the second finds nothing left to do. Each tenant is one transaction:
// a run killed half-way leaves every tenant either untouched or at head, and the next run picks
// up the rest.

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "migrate/migrations.hpp"
#include "pg/connection.hpp"

namespace mtapi::migrate {

// Brings schema `platform` to the head of `stream` in one transaction of its own (BEGIN …
// COMMIT, platform advisory lock, schema and platform.schema_migrations created when missing).
// Returns the platform version. Throws MigrationError on drift or a failing file, pg::Error when
// the database fails otherwise; the transaction is rolled back in both cases.
boost::asio::awaitable<int> migrate_platform(pg::Connection& conn, pg::Deadline deadline,
                                             Stream stream = platform_migrations());

// Applies the tenant stream to the tenant bound to the caller's open transaction, which must
// already have run
//   SELECT set_config('search_path', '<schema>, pg_temp', true), set_config('role', '<role>', true)
// so everything runs as the tenant's role in the tenant's schema, with unqualified names. Creates
// schema_migrations there when missing, checks drift, applies and records pending files. Returns
// the tenant's version. Neither commits nor rolls back: on an exception the caller rolls back.
// Throws MigrationError (drift, failing file; names the file) or pg::Error (link problems).
boost::asio::awaitable<int> apply_tenant_stream(pg::Connection& conn, pg::Deadline deadline,
                                                Stream stream = tenant_migrations());

// A tenant as the runner sees it (from platform.tenants).
struct TenantRef {
    std::string id;  // canonical UUID text
    std::string slug;
    std::string schema;
    std::string role;
    int schema_version = 0;
};

enum class TenantResult { migrated, at_head, failed };

struct TenantOutcome {
    TenantResult result = TenantResult::failed;
    int version = 0;  // the tenant's version afterwards (unchanged on failure)
    int applied = 0;  // files applied by this run
    std::string error;
};

// Brings one tenant to the head of `stream` in one transaction: BEGIN, the tenant's advisory
// lock, bind the tenant (transaction-local search_path and role), apply_tenant_stream, back to
// the login role, update platform.tenants (schema_version, migration_error cleared), COMMIT.
// On failure rolls back, then records migration_error and migration_failed_at for the tenant in
// a statement of its own. Never throws for a failure of this tenant: the outcome reports it.
boost::asio::awaitable<TenantOutcome> migrate_tenant(pg::Connection& conn, const TenantRef& tenant,
                                                     pg::Deadline deadline, Stream stream = tenant_migrations());

// The advisory-lock key of a tenant: the two halves of its UUID xor-ed (the random bits of a
// UUIDv7 spread the keys; a collision only serialises two tenants). Throws MigrationError if
// `tenant_id` is not a UUID.
std::int64_t tenant_lock_key(std::string_view tenant_id);
// The advisory-lock key of the platform stream.
inline constexpr std::int64_t kPlatformLockKey = 0x6d74617069'6d6967;  // "mtapimig"

struct TenantFailure {
    std::string id;
    std::string slug;
    std::string message;
};

// What a run did. Counters cover the tenants it considered (every tenant, or those asked for).
struct Report {
    int platform_version = 0;
    int tenant_head = 0;
    std::size_t tenants_total = 0;
    std::size_t tenants_pending = 0;   // below head when the run started
    std::size_t tenants_migrated = 0;  // brought to head by this run
    std::size_t tenants_at_head = 0;   // already at head (skipped, or finished by a concurrent run)
    std::size_t tenants_ahead = 0;     // recorded version above this binary's head (left alone)
    std::size_t tenants_failed = 0;
    std::size_t tenants_processed = 0;  // pending tenants handled so far (progress: processed/pending)
    std::vector<TenantFailure> failures;
    std::chrono::milliseconds elapsed{0};
};

struct RunOptions {
    std::string database_url;
    unsigned concurrency = 4;  // tenant transactions at once, each on its own connection
    // Bound on the platform run and on each tenant's transaction (lock waits included).
    std::chrono::milliseconds timeout{std::chrono::minutes(10)};
    // The streams to apply; the embedded ones when unset.
    std::optional<Stream> platform;
    std::optional<Stream> tenant;
    // Only these tenants (UUID text); every tenant in platform.tenants when empty.
    std::vector<std::string> tenant_ids;
    // Progress: after the platform run and the tenant list are known, and after each tenant.
    std::function<void(const Report&)> on_started;
    std::function<void(const TenantRef&, const TenantOutcome&, const Report&)> on_tenant;
};

// `mtapi migrate`: the platform stream first, then every tenant below head, up to
// `concurrency` at once on one io_context (one connection each). Tenants at head are not
// touched. One tenant's failure is recorded and reported and the others go on. Throws when the
// platform cannot be migrated or the database cannot be reached at all.
boost::asio::awaitable<Report> run_all(boost::asio::io_context& ioc, RunOptions options);

}  // namespace mtapi::migrate
