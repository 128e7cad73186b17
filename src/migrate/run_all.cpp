// run_all: the platform stream, then every tenant below head with a bounded number of tenant
// transactions at once. Everything runs on one io_context: each worker is a coroutine with its own
// connection that takes the next tenant from a shared cursor (single-threaded, so no locking).

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <exception>
#include <memory>

#include "migrate/runner.hpp"

namespace mtapi::migrate {
namespace {

namespace asio = boost::asio;
using Clock = pg::Clock;

struct RunState {
    boost::asio::io_context& ioc;
    const RunOptions& options;
    Stream tenant_stream;
    std::vector<TenantRef> pending;
    std::size_t next = 0;  // index of the next pending tenant to hand out
    Report report;
};

pg::ConnectOptions connect_options(const RunOptions& options) {
    pg::ConnectOptions c;
    c.url = options.database_url;
    c.application_name = "mtapi migrate";
    return c;
}

pg::Deadline deadline_for(const RunOptions& options) {
    return Clock::now() + options.timeout;
}

// "{id1,id2}" for `= ANY($1::uuid[])`; ids are checked to be UUIDs first.
std::string uuid_array(const std::vector<std::string>& ids) {
    std::string out = "{";
    for (const auto& id : ids) {
        tenant_lock_key(id);  // throws MigrationError unless a UUID
        if (out.size() > 1) out += ',';
        out += id;
    }
    return out + "}";
}

pg::Query select_tenants(const RunOptions& options) {
    constexpr std::string_view kAll =
        "SELECT id::text, slug, schema_name, role_name, schema_version FROM platform.tenants "
        "ORDER BY created_at, id";
    constexpr std::string_view kSome =
        "SELECT id::text, slug, schema_name, role_name, schema_version FROM platform.tenants "
        "WHERE id = ANY($1::uuid[]) ORDER BY created_at, id";
    if (options.tenant_ids.empty()) return pg::Query{std::string(kAll), {}, false};
    return pg::Query{std::string(kSome), {uuid_array(options.tenant_ids)}, false};
}

// Reads the catalog; tenants at (or above) head are counted and left alone.
asio::awaitable<void> load_tenants(pg::Connection& conn, RunState& state) {
    pg::Result rows = co_await conn.query(select_tenants(state.options), deadline_for(state.options));
    Report& report = state.report;
    for (int r = 0; r < rows.rows(); ++r) {
        TenantRef t{std::string(rows.text(r, 0)), std::string(rows.text(r, 1)), std::string(rows.text(r, 2)),
                    std::string(rows.text(r, 3)), static_cast<int>(rows.int64(r, 4))};
        ++report.tenants_total;
        if (t.schema_version == report.tenant_head) {
            ++report.tenants_at_head;
        } else if (t.schema_version > report.tenant_head) {
            ++report.tenants_ahead;
        } else {
            state.pending.push_back(std::move(t));
        }
    }
    report.tenants_pending = state.pending.size();
}

void count(RunState& state, const TenantRef& tenant, const TenantOutcome& outcome) {
    Report& report = state.report;
    ++report.tenants_processed;
    switch (outcome.result) {
        case TenantResult::migrated:
            ++report.tenants_migrated;
            break;
        case TenantResult::at_head:
            ++report.tenants_at_head;
            break;
        case TenantResult::failed:
            ++report.tenants_failed;
            report.failures.push_back({tenant.id, tenant.slug, outcome.error});
            break;
    }
    if (state.options.on_tenant) state.options.on_tenant(tenant, outcome, report);
}

// Takes tenants until none is left. A worker whose connection cannot be (re)established stops;
// what no worker could take is reported as failed after the others finish.
asio::awaitable<void> worker(RunState& state, std::unique_ptr<pg::Connection> conn) {
    while (state.next < state.pending.size()) {
        const TenantRef& tenant = state.pending[state.next++];
        if (!conn || conn->broken()) {
            conn.reset();
            try {
                conn = co_await pg::Connection::connect(state.ioc, connect_options(state.options));
            } catch (const std::exception& e) {
                count(state, tenant,
                      {TenantResult::failed, tenant.schema_version, 0, std::string("cannot connect: ") + e.what()});
                co_return;
            }
        }
        TenantOutcome outcome =
            co_await migrate_tenant(*conn, tenant, deadline_for(state.options), state.tenant_stream);
        count(state, tenant, outcome);
    }
}

// Runs `workers` copies of worker() and waits for all of them. The first connection is reused.
asio::awaitable<void> run_workers(RunState& state, std::unique_ptr<pg::Connection> first, std::size_t workers) {
    auto executor = co_await asio::this_coro::executor;
    asio::steady_timer all_done(executor, asio::steady_timer::time_point::max());
    std::size_t running = workers;
    std::exception_ptr failure;
    for (std::size_t i = 0; i < workers; ++i) {
        auto conn = i == 0 ? std::move(first) : nullptr;
        asio::co_spawn(executor, worker(state, std::move(conn)), [&](std::exception_ptr e) {
            if (e && !failure) failure = e;
            // Expiring (rather than cancelling) also works if the wait below has not started yet.
            if (--running == 0) all_done.expires_at(asio::steady_timer::time_point::min());
        });
    }
    boost::system::error_code ignored;
    while (running > 0)
        co_await all_done.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
    if (failure) std::rethrow_exception(failure);
}

void report_unreached(RunState& state, const std::string& why) {
    while (state.next < state.pending.size()) {
        const TenantRef& tenant = state.pending[state.next++];
        count(state, tenant, {TenantResult::failed, tenant.schema_version, 0, why});
    }
}

}  // namespace

asio::awaitable<Report> run_all(asio::io_context& ioc, RunOptions options) {
    const auto started = Clock::now();
    Stream platform = options.platform ? *options.platform : platform_migrations();
    Stream tenant = options.tenant ? *options.tenant : tenant_migrations();
    validate_stream("platform", platform);
    validate_stream("tenant", tenant);

    RunState state{ioc, options, tenant, {}, 0, {}};
    state.report.tenant_head = head(tenant);
    auto conn = co_await pg::Connection::connect(ioc, connect_options(options));
    state.report.platform_version = co_await migrate_platform(*conn, deadline_for(options), platform);
    co_await load_tenants(*conn, state);
    if (options.on_started) options.on_started(state.report);

    std::size_t workers = std::min<std::size_t>(std::max(options.concurrency, 1U), state.pending.size());
    if (workers > 0) co_await run_workers(state, std::move(conn), workers);
    report_unreached(state, "not attempted: no connection to the database");
    state.report.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started);
    co_return std::move(state.report);
}

}  // namespace mtapi::migrate
