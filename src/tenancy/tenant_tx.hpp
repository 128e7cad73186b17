#pragma once
// TenantTx — the only path to a tenant's data. It wraps one transaction on one pooled
// connection whose first statements bind the tenant, transaction-locally:
//
//   BEGIN;
//   SELECT set_config('search_path', '<schema>, pg_temp', true), set_config('role', '<role>', true);
//   … the handler's unqualified statements …
//   COMMIT;
//
// The set-up is sent in the same pipeline as the first statement (no extra round trip), and a
// last statement can share its batch with COMMIT. Because both settings are transaction-local,
// nothing of the tenant survives COMMIT or ROLLBACK on the connection, behind PgBouncer too.
// The login role is NOINHERIT and owns no tenant object, so SQL outside such a transaction
// reads no tenant data at all.

#include <boost/asio/awaitable.hpp>
#include <exception>
#include <span>
#include <type_traits>
#include <vector>

#include "pg/connection.hpp"
#include "pg/pool.hpp"
#include "tenancy/tenant.hpp"

namespace mtapi::tenancy {

// The login role is a member of every tenant role (so TenantTx can bind any tenant), and
// PostgreSQL checks SET ROLE against the session user: SQL that ran `SET ROLE <other tenant>`
// inside a tenant transaction would be allowed by the database. TenantTx therefore accepts only
// data statements (SELECT, INSERT, UPDATE, DELETE, WITH) that call no session-changing function
// (set_config, …): no SET/RESET, no transaction control, no DDL or DO blocks. Handler SQL is
// fixed text with bound parameters, so this costs nothing legitimate; it closes the gap an
// injection bug would otherwise open. See ADR 004.
bool rebinds_session(std::string_view sql);
// rebinds_session() remembered per distinct SQL text in the calling thread (one per shard;
// bounded), since handlers send the same few texts over and over.
bool rebinds_session_cached(std::string_view sql);

class TenantTx {
  public:
    TenantTx(pg::Connection& conn, const Tenant& tenant, pg::Deadline deadline)
        : conn_(conn), schema_(tenant.schema), role_(tenant.role), deadline_(deadline) {}

    // Runs statements in one round trip; the first call also opens the transaction.
    boost::asio::awaitable<std::vector<pg::Result>> execute(std::span<const pg::Query> batch);
    boost::asio::awaitable<pg::Result> query(pg::Query q);
    // Runs the final statement and COMMIT in one round trip.
    boost::asio::awaitable<pg::Result> query_and_commit(pg::Query q);
    boost::asio::awaitable<void> commit();
    // Rolls back if a transaction is open; a connection that cannot be rolled back is reported
    // broken so the pool drops it.
    boost::asio::awaitable<void> abort() noexcept;

    bool finished() const { return finished_; }

    // Makes the first batch check, before any statement of the caller, that `user_id` is a
    // current user of the tenant whose role is in `roles` (a PostgreSQL array literal such as
    // {admin,dispatcher}). A failure raises SQLSTATE MT401 / MT403, and the server skips the rest
    // of the batch, so a request's statements never run for a principal that fails the check.
    void require_principal(std::string user_id, std::string roles) {
        principal_.params.clear();
        principal_.params.emplace_back(std::move(user_id));
        principal_.params.emplace_back(std::move(roles));
    }

  private:
    boost::asio::awaitable<std::vector<pg::Result>> run(std::span<const pg::Query> batch, bool commit);

    pg::Connection& conn_;
    std::string schema_;
    std::string role_;
    pg::Deadline deadline_;
    bool begun_ = false;
    bool finished_ = false;
    pg::Query principal_;  // the principal check; no parameters when none is required
};

// Runs `body(TenantTx&)` in a tenant transaction on a connection from `pool`: commits when it
// returns (unless it committed itself), rolls back when it throws, and rethrows.
template <class F>
auto with_tenant(pg::Pool& pool, const Tenant& tenant, pg::Deadline deadline, F body)
    -> std::invoke_result_t<F, TenantTx&> {
    using Awaitable = std::invoke_result_t<F, TenantTx&>;
    using R = typename Awaitable::value_type;
    // Prefer a connection that served this tenant last: it holds the tenant's prepared statements.
    pg::Pool::Lease lease = co_await pool.acquire(deadline, tenant.schema);
    TenantTx tx(*lease, tenant, deadline);
    std::exception_ptr failure;
    if constexpr (std::is_void_v<R>) {
        try {
            co_await body(tx);
            if (!tx.finished()) co_await tx.commit();
            co_return;
        } catch (...) {
            failure = std::current_exception();
        }
    } else {
        try {
            R result = co_await body(tx);
            if (!tx.finished()) co_await tx.commit();
            co_return result;
        } catch (...) {
            failure = std::current_exception();
        }
    }
    co_await tx.abort();
    if (lease->broken() || lease->in_transaction()) lease.discard();
    std::rethrow_exception(failure);
}

}  // namespace mtapi::tenancy
