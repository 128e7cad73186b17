#include "migrate/runner.hpp"

#include <algorithm>
#include <map>

#include "util/uuid.hpp"

namespace mtapi::migrate {
namespace {

namespace asio = boost::asio;

// Where a stream keeps its bookkeeping and how its files are named in messages.
struct StreamTarget {
    std::string_view label;  // platform | tenant
    std::string_view create_table;
    std::string_view select_applied;
    std::string_view insert_applied;
};

constexpr StreamTarget kPlatformTarget{
    "platform",
    "CREATE TABLE IF NOT EXISTS platform.schema_migrations (version integer PRIMARY KEY, name text NOT NULL, "
    "checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())",
    "SELECT version, name, checksum FROM platform.schema_migrations ORDER BY version",
    "INSERT INTO platform.schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
};

// Unqualified: the tenant's search_path puts these in the tenant's schema, owned by its role.
constexpr StreamTarget kTenantTarget{
    "tenant",
    "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, name text NOT NULL, "
    "checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())",
    "SELECT version, name, checksum FROM schema_migrations ORDER BY version",
    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
};

constexpr std::size_t kMaxRecordedError = 500;

struct Applied {
    std::string name;
    std::string checksum;
};

struct StreamOutcome {
    int version = 0;
    int applied = 0;
};

pg::Query statement(std::string_view sql, std::vector<std::optional<std::string>> params = {}) {
    return pg::Query{std::string(sql), std::move(params), false};
}

// Batches are built in plain functions: GCC 12 rejects a braced std::vector argument inside a
// co_await expression ("array used as initializer").
std::vector<pg::Query> batch_of(pg::Query q) {
    std::vector<pg::Query> batch;
    batch.push_back(std::move(q));
    return batch;
}

asio::awaitable<void> run(pg::Connection& conn, std::vector<pg::Query> batch, pg::Deadline deadline) {
    co_await conn.execute(batch, deadline);
}

asio::awaitable<void> rollback_quietly(pg::Connection& conn, pg::Deadline deadline) {
    if (conn.broken() || !conn.in_transaction()) co_return;
    try {
        co_await run(conn, batch_of(statement("ROLLBACK")), deadline);
    } catch (const std::exception&) {
        // The connection is unusable now; the caller sees broken() and the transaction dies with it.
    }
}

std::vector<pg::Query> read_applied_batch(const StreamTarget& target) {
    std::vector<pg::Query> batch;
    batch.push_back(statement(target.create_table));
    batch.push_back(statement(target.select_applied));
    return batch;
}

std::vector<pg::Query> record_batch(const StreamTarget& target, const Migration& m) {
    return batch_of(
        statement(target.insert_applied, {std::to_string(m.version), std::string(m.name), std::string(m.checksum)}));
}

std::vector<pg::Query> platform_begin_batch() {
    std::vector<pg::Query> batch;
    batch.push_back(statement("BEGIN"));
    batch.push_back(statement("SELECT pg_advisory_xact_lock($1::bigint)", {std::to_string(kPlatformLockKey)}));
    batch.push_back(statement("CREATE SCHEMA IF NOT EXISTS platform"));
    return batch;
}

// Opens the tenant's transaction: its lock, then its schema and role, transaction-locally (pg_temp
// last, so no temporary object can shadow a tenant table).
std::vector<pg::Query> tenant_begin_batch(const TenantRef& tenant) {
    std::vector<pg::Query> batch;
    batch.push_back(statement("BEGIN"));
    batch.push_back(
        statement("SELECT pg_advisory_xact_lock($1::bigint)", {std::to_string(tenant_lock_key(tenant.id))}));
    batch.push_back(statement("SELECT set_config('search_path', $1, true), set_config('role', $2, true)",
                              {tenant.schema + ", pg_temp", tenant.role}));
    return batch;
}

// Back to the login role for the catalog (a tenant role cannot see platform at all), then COMMIT.
// The row is only written when something changed, so tenants already at head cause no NOTIFY.
std::vector<pg::Query> tenant_commit_batch(const TenantRef& tenant, int version) {
    std::vector<pg::Query> batch;
    batch.push_back(statement("RESET ROLE"));
    batch.push_back(
        statement("UPDATE platform.tenants SET schema_version = $2, migration_error = NULL, migration_failed_at = NULL "
                  "WHERE id = $1 AND (schema_version <> $2 OR migration_error IS NOT NULL)",
                  {tenant.id, std::to_string(version)}));
    batch.push_back(statement("COMMIT"));
    return batch;
}

std::vector<pg::Query> failure_batch(const TenantRef& tenant, const std::string& message) {
    return batch_of(
        statement("UPDATE platform.tenants SET migration_error = $2, migration_failed_at = now() WHERE id = $1",
                  {tenant.id, message}));
}

// Recorded rows vs. the stream: every recorded version must exist in the stream with the same
// checksum. Returns the recorded rows by version.
std::map<int, Applied> check_drift(const StreamTarget& target, Stream stream, const pg::Result& rows) {
    std::map<int, Applied> applied;
    for (int r = 0; r < rows.rows(); ++r) {
        int version = static_cast<int>(rows.int64(r, 0));
        Applied a{std::string(rows.text(r, 1)), std::string(rows.text(r, 2))};
        if (version < 1 || version > head(stream)) {
            throw MigrationError("database is newer than this binary: " + std::string(target.label) + " migration " +
                                 a.name + " (version " + std::to_string(version) +
                                 ") is applied but this binary knows only up to version " +
                                 std::to_string(head(stream)));
        }
        const Migration& m = stream[static_cast<std::size_t>(version - 1)];
        if (a.checksum != m.checksum) {
            throw MigrationError(std::string(target.label) + " migration " + std::string(m.name) +
                                 " was edited after it was applied (checksum differs); restore it and add a new "
                                 "migration instead");
        }
        applied.emplace(version, std::move(a));
    }
    return applied;
}

asio::awaitable<void> apply_one(pg::Connection& conn, const StreamTarget& target, const Migration& m,
                                pg::Deadline deadline) {
    try {
        co_await conn.execute_script(m.sql, deadline);
    } catch (const pg::Error& e) {
        if (e.is_connection_problem()) throw;
        throw MigrationError(std::string(target.label) + " migration " + std::string(m.name) + " failed: " + e.what());
    }
    co_await run(conn, record_batch(target, m), deadline);
}

// The common part of both streams, inside the caller's transaction and lock.
asio::awaitable<StreamOutcome> apply_stream(pg::Connection& conn, const StreamTarget& target, Stream stream,
                                            pg::Deadline deadline) {
    validate_stream(target.label, stream);
    auto results = co_await conn.execute(read_applied_batch(target), deadline);
    auto applied = check_drift(target, stream, results[1]);
    StreamOutcome out;
    out.version = applied.empty() ? 0 : applied.rbegin()->first;
    for (const Migration& m : stream) {
        if (applied.contains(m.version)) continue;
        co_await apply_one(conn, target, m, deadline);
        out.version = std::max(out.version, m.version);
        ++out.applied;
    }
    co_return out;
}

// Bounded for the catalog column; cut on a UTF-8 character boundary so the text stays valid.
std::string shorten(std::string message) {
    if (message.size() <= kMaxRecordedError) return message;
    std::size_t cut = kMaxRecordedError - 3;
    while (cut > 0 && (static_cast<unsigned char>(message[cut]) & 0xc0) == 0x80)
        --cut;
    message.resize(cut);
    return message + "...";
}

asio::awaitable<void> record_failure(pg::Connection& conn, const TenantRef& tenant, const std::string& message,
                                     pg::Deadline deadline) {
    if (conn.broken()) co_return;
    co_await run(conn, failure_batch(tenant, message), deadline);
}

// The tenant's transaction up to COMMIT; throws on any failure.
asio::awaitable<StreamOutcome> migrate_tenant_tx(pg::Connection& conn, const TenantRef& tenant, Stream stream,
                                                 pg::Deadline deadline) {
    co_await run(conn, tenant_begin_batch(tenant), deadline);
    StreamOutcome out = co_await apply_stream(conn, kTenantTarget, stream, deadline);
    co_await run(conn, tenant_commit_batch(tenant, out.version), deadline);
    co_return out;
}

}  // namespace

std::int64_t tenant_lock_key(std::string_view tenant_id) {
    auto id = util::parse_uuid(tenant_id);
    if (!id) throw MigrationError("not a tenant id: " + std::string(tenant_id));
    std::uint64_t key = 0;
    for (std::size_t i = 0; i < 8; ++i)
        key = (key << 8) | static_cast<std::uint64_t>((*id)[i] ^ (*id)[i + 8]);
    return static_cast<std::int64_t>(key);
}

asio::awaitable<int> migrate_platform(pg::Connection& conn, pg::Deadline deadline, Stream stream) {
    std::exception_ptr failure;
    try {
        co_await run(conn, platform_begin_batch(), deadline);
        StreamOutcome out = co_await apply_stream(conn, kPlatformTarget, stream, deadline);
        co_await run(conn, batch_of(statement("COMMIT")), deadline);
        co_return out.version;
    } catch (...) {
        failure = std::current_exception();
    }
    co_await rollback_quietly(conn, deadline);
    std::rethrow_exception(failure);
}

asio::awaitable<int> apply_tenant_stream(pg::Connection& conn, pg::Deadline deadline, Stream stream) {
    StreamOutcome out = co_await apply_stream(conn, kTenantTarget, stream, deadline);
    co_return out.version;
}

asio::awaitable<TenantOutcome> migrate_tenant(pg::Connection& conn, const TenantRef& tenant, pg::Deadline deadline,
                                              Stream stream) {
    TenantOutcome outcome;
    outcome.version = tenant.schema_version;
    try {
        StreamOutcome out = co_await migrate_tenant_tx(conn, tenant, stream, deadline);
        outcome.result = out.applied > 0 ? TenantResult::migrated : TenantResult::at_head;
        outcome.version = out.version;
        outcome.applied = out.applied;
        co_return outcome;
    } catch (const std::exception& e) {
        outcome.error = shorten(e.what());
    }
    co_await rollback_quietly(conn, deadline);
    try {
        co_await record_failure(conn, tenant, outcome.error, deadline);
    } catch (const std::exception& e) {
        outcome.error += " (could not record the failure: " + std::string(e.what()) + ")";
    }
    co_return outcome;
}

}  // namespace mtapi::migrate
