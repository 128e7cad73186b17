// mtapi_tenancy_bench: how long provisioning a tenant takes, and how long bringing a fleet of
// tenants through one added tenant migration takes, against the PostgreSQL in MTAPI_DATABASE_URL
// (the login role). Not a test: it prints figures (and one machine-readable BENCH_TENANCY line
// for bench/tenancy.sh), and fails only when something did not work.
//
//   1. platform migrations (migrate_platform);
//   2. provisioning latency: N tenants (default 50) one after the other through
//      tenancy::provision, with real argon2id hashing (t=2, m=19 MiB) on a PasswordHasher pool;
//      p50/p90/max, the cost of one hash alone, and a step-by-step replica of provisioning that
//      shows where the time goes (hash, catalog row, role + schema, tenant stream, seed, COMMIT);
//   3. migration: M tenants (default 1,000) created at the embedded tenant head directly in SQL
//      (setup, timed separately), then migrate::run_all with the embedded stream plus one
//      in-memory migration, restricted to those tenants, at MTAPI_MIGRATE_CONCURRENCY (default 4)
//      connections; checks every tenant reached the new head;
//   4. removes every tenant it created, also after a failure or Ctrl-C.
//
// Every tenant it creates has a slug starting with "bench-" and the name "mtapi tenancy bench
// <run tag>". A run holds a session advisory lock for its whole duration, so two runs against one
// database refuse to overlap, and starts by removing what an earlier run could not (killed with
// SIGKILL, or the database gone during cleanup).

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <exception>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "auth/password_hasher.hpp"
#include "migrate/migrations.hpp"
#include "migrate/runner.hpp"
#include "obs/log.hpp"
#include "pg/connection.hpp"
#include "tenancy/provisioner.hpp"
#include "tenancy/tenant.hpp"
#include "util/uuid.hpp"

namespace mtapi::bench {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using ConnPtr = std::unique_ptr<pg::Connection>;

constexpr std::string_view kSlugPrefix = "bench-";
constexpr std::string_view kNamePrefix = "mtapi tenancy bench";
constexpr std::string_view kAdminEmail = "admin@bench.example";
constexpr std::string_view kAdminPassword = "bench-admin-password-0123";
// Session advisory lock held by a run: "mtapiben".
constexpr std::int64_t kRunLockKey = 0x6d746170'6962656e;

// The migration added in memory on top of the embedded tenant stream.
constexpr std::string_view kAddedName = "bench_added";
constexpr std::string_view kAddedSql =
    "ALTER TABLE vehicles ADD COLUMN bench_note text;\n"
    "CREATE INDEX vehicles_bench_note_idx ON vehicles (bench_note);\n";

// ---------------------------------------------------------------- options

struct Options {
    std::string database_url;
    std::size_t provision_tenants = 50;
    std::size_t breakdown_tenants = 10;
    std::size_t migrate_tenants = 1000;
    unsigned migrate_concurrency = 4;
    unsigned setup_concurrency = 4;
    unsigned hash_threads = 2;
    bool vacuum = true;
};

[[noreturn]] void usage(int status) {
    std::FILE* out = status == 0 ? stdout : stderr;
    std::fprintf(out,
                 "usage: mtapi_tenancy_bench [options]\n"
                 "  --provision N          tenants provisioned one by one (default 50; env "
                 "BENCH_PROVISION_TENANTS; 0 skips)\n"
                 "  --breakdown N          tenants for the step-by-step replica (default 10; env "
                 "BENCH_BREAKDOWN_TENANTS; 0 skips)\n"
                 "  --tenants N            tenants migrated through the added migration (default 1000; env "
                 "BENCH_MIGRATE_TENANTS; 0 skips)\n"
                 "  --concurrency N        run_all concurrency (default 4; env MTAPI_MIGRATE_CONCURRENCY)\n"
                 "  --setup-concurrency N  connections creating and removing tenants (default 4; env "
                 "BENCH_SETUP_CONCURRENCY)\n"
                 "  --hash-threads N       PasswordHasher threads, 1-2 (default 2; env BENCH_HASH_THREADS)\n"
                 "  --vacuum 0|1           VACUUM the system catalogs before and after (default 1; env "
                 "BENCH_VACUUM)\n"
                 "The database is MTAPI_DATABASE_URL (the login role).\n");
    std::exit(status);
}

std::size_t parse_count(std::string_view what, const std::string& text, std::size_t min, std::size_t max) {
    std::size_t pos = 0;
    unsigned long long v = 0;
    try {
        v = std::stoull(text, &pos);
    } catch (const std::exception&) {
        pos = 0;
    }
    if (text.empty() || pos != text.size() || v < min || v > max) {
        std::fprintf(stderr, "mtapi_tenancy_bench: %.*s must be an integer from %zu to %zu (got '%s')\n",
                     static_cast<int>(what.size()), what.data(), min, max, text.c_str());
        std::exit(2);
    }
    return static_cast<std::size_t>(v);
}

Options parse_options(int argc, char** argv) {
    Options o;
    auto env = [](const char* name) -> std::optional<std::string> {
        const char* v = std::getenv(name);
        if (v == nullptr || *v == '\0') return std::nullopt;
        return std::string(v);
    };
    if (auto v = env("MTAPI_DATABASE_URL")) o.database_url = *v;
    if (auto v = env("BENCH_PROVISION_TENANTS"))
        o.provision_tenants = parse_count("BENCH_PROVISION_TENANTS", *v, 0, 100000);
    if (auto v = env("BENCH_BREAKDOWN_TENANTS"))
        o.breakdown_tenants = parse_count("BENCH_BREAKDOWN_TENANTS", *v, 0, 10000);
    if (auto v = env("BENCH_MIGRATE_TENANTS")) o.migrate_tenants = parse_count("BENCH_MIGRATE_TENANTS", *v, 0, 100000);
    if (auto v = env("MTAPI_MIGRATE_CONCURRENCY"))
        o.migrate_concurrency = static_cast<unsigned>(parse_count("MTAPI_MIGRATE_CONCURRENCY", *v, 1, 64));
    if (auto v = env("BENCH_SETUP_CONCURRENCY"))
        o.setup_concurrency = static_cast<unsigned>(parse_count("BENCH_SETUP_CONCURRENCY", *v, 1, 64));
    if (auto v = env("BENCH_HASH_THREADS"))
        o.hash_threads = static_cast<unsigned>(parse_count("BENCH_HASH_THREADS", *v, 1, 2));
    if (auto v = env("BENCH_VACUUM")) o.vacuum = parse_count("BENCH_VACUUM", *v, 0, 1) == 1;

    for (int i = 1; i < argc; ++i) {
        std::string arg = argv[i];
        if (arg == "-h" || arg == "--help") usage(0);
        std::string value;
        auto eq = arg.find('=');
        if (eq != std::string::npos) {
            value = arg.substr(eq + 1);
            arg.resize(eq);
        } else if (i + 1 < argc) {
            value = argv[++i];
        } else {
            std::fprintf(stderr, "mtapi_tenancy_bench: %s needs a value\n", arg.c_str());
            usage(2);
        }
        if (arg == "--provision") {
            o.provision_tenants = parse_count(arg, value, 0, 100000);
        } else if (arg == "--breakdown") {
            o.breakdown_tenants = parse_count(arg, value, 0, 10000);
        } else if (arg == "--tenants") {
            o.migrate_tenants = parse_count(arg, value, 0, 100000);
        } else if (arg == "--concurrency") {
            o.migrate_concurrency = static_cast<unsigned>(parse_count(arg, value, 1, 64));
        } else if (arg == "--setup-concurrency") {
            o.setup_concurrency = static_cast<unsigned>(parse_count(arg, value, 1, 64));
        } else if (arg == "--vacuum") {
            o.vacuum = parse_count(arg, value, 0, 1) == 1;
        } else if (arg == "--hash-threads") {
            o.hash_threads = static_cast<unsigned>(parse_count(arg, value, 1, 2));
        } else {
            std::fprintf(stderr, "mtapi_tenancy_bench: unknown option %s\n", arg.c_str());
            usage(2);
        }
    }
    if (o.database_url.empty()) {
        std::fprintf(stderr,
                     "mtapi_tenancy_bench: MTAPI_DATABASE_URL is not set (scripts/services up; "
                     "set -a; . .var/dev.env; set +a)\n");
        std::exit(2);
    }
    return o;
}

// ---------------------------------------------------------------- small helpers

// Set by the first SIGINT/SIGTERM: the phases stop taking new work and cleanup runs.
std::atomic<bool> g_stop{false};

struct Interrupted : std::runtime_error {
    Interrupted() : std::runtime_error("interrupted") {}
};

void check_stop() {
    if (g_stop.load()) throw Interrupted();
}

double ms(Clock::duration d) {
    return std::chrono::duration<double, std::milli>(d).count();
}

pg::Deadline soon() {
    return pg::Clock::now() + 120s;
}

// Nearest-rank percentile (p in (0, 100]) of unsorted samples.
double percentile(std::vector<double> v, double p) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    auto rank = static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(v.size())));
    return v[std::clamp<std::size_t>(rank, 1, v.size()) - 1];
}

double median(std::vector<double> v) {
    return percentile(std::move(v), 50);
}

double mean(const std::vector<double>& v) {
    double s = 0;
    for (double x : v)
        s += x;
    return v.empty() ? 0 : s / static_cast<double>(v.size());
}

pg::ConnectOptions connect_options(const Options& o) {
    pg::ConnectOptions c;
    c.url = o.database_url;
    c.application_name = "mtapi tenancy bench";
    return c;
}

// A one-off statement (not kept in the prepared-statement cache). Built apart from the co_await
// that runs it: GCC 12 mishandles braced temporaries inside a co_await statement.
pg::Query one_off(std::string sql, std::vector<std::optional<std::string>> params = {}) {
    return pg::Query{std::move(sql), std::move(params), false};
}

asio::awaitable<void> rollback_quietly(pg::Connection& conn) {
    if (conn.broken() || !conn.in_transaction()) co_return;
    try {
        co_await conn.execute_script("ROLLBACK", soon());
    } catch (const std::exception&) {
    }
}

std::string id_array(const std::vector<std::string>& ids) {
    std::string out = "{";
    for (const auto& id : ids) {
        if (out.size() > 1) out += ',';
        out += id;
    }
    return out + "}";
}

std::string one_line(const std::string& s) {
    std::string out = s;
    std::replace(out.begin(), out.end(), '\n', ' ');
    return out;
}

// ---------------------------------------------------------------- tenants of this run

struct BenchTenant {
    std::string id;      // canonical UUID text
    std::string schema;  // also the role
};

// Every tenant this run committed, removed at the end whatever happened.
struct Registry {
    std::string tag;  // in the tenants' name, identifies this run
    std::vector<BenchTenant> tenants;

    std::string tenant_name() const { return std::string(kNamePrefix) + " " + tag; }
    std::string new_slug() const { return std::string(kSlugPrefix) + util::to_hex(util::uuid_v7()); }
};

// Runs body(connection, i) for every i in [0, count) on `workers` connections of their own, each
// taking the next index when it is done with one (one io_context, so the cursor needs no lock).
// The first failure stops the others taking more work and is rethrown once all have stopped.
using IndexedBody = std::function<asio::awaitable<void>(pg::Connection&, std::size_t)>;

asio::awaitable<void> for_each_parallel(asio::io_context& ioc, const Options& opts, std::size_t count, unsigned workers,
                                        const IndexedBody& body) {
    if (count == 0) co_return;
    struct State {
        std::size_t next = 0;
        std::exception_ptr failure;
    } state;
    auto worker = [&]() -> asio::awaitable<void> {
        pg::ConnectOptions copts = connect_options(opts);
        ConnPtr conn = co_await pg::Connection::connect(ioc, copts);
        while (state.next < count && !state.failure && !g_stop.load()) {
            std::size_t i = state.next++;
            co_await body(*conn, i);
        }
    };
    auto executor = co_await asio::this_coro::executor;
    asio::steady_timer all_done(executor, asio::steady_timer::time_point::max());
    std::size_t n = std::min<std::size_t>(std::max(workers, 1U), count);
    std::size_t running = n;
    for (std::size_t w = 0; w < n; ++w) {
        auto on_done = [&](std::exception_ptr e) {
            if (e && !state.failure) state.failure = e;
            if (--running == 0) all_done.expires_at(asio::steady_timer::time_point::min());
        };
        asio::co_spawn(executor, worker(), on_done);
    }
    boost::system::error_code ignored;
    while (running > 0)
        co_await all_done.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
    if (state.failure) std::rethrow_exception(state.failure);
    check_stop();
}

// Drops one tenant: schema (as its owner) and role, catalog row (tenancy::remove).
asio::awaitable<void> remove_tenant(pg::Connection& conn, const BenchTenant& t) {
    tenancy::Tenant tenant;
    tenant.id_text = t.id;
    tenant.schema = t.schema;
    tenant.role = t.schema;
    co_await tenancy::remove(conn, tenant, soon());
}

// Removes `tenants` on `workers` connections; returns the ones that could not be removed. A worker
// that cannot connect stops; what no worker reached is returned too.
asio::awaitable<std::vector<BenchTenant>> remove_all(asio::io_context& ioc, const Options& opts,
                                                     const std::vector<BenchTenant>& tenants, unsigned workers) {
    std::vector<BenchTenant> left;
    if (tenants.empty()) co_return left;
    std::size_t next = 0;
    std::size_t running = 0;
    auto executor = co_await asio::this_coro::executor;
    asio::steady_timer all_done(executor, asio::steady_timer::time_point::max());
    auto worker = [&]() -> asio::awaitable<void> {
        ConnPtr conn;
        while (next < tenants.size()) {
            const BenchTenant& t = tenants[next++];
            std::exception_ptr failure;
            bool connecting = false;
            try {
                if (!conn || conn->broken()) {
                    conn.reset();
                    connecting = true;
                    pg::ConnectOptions copts = connect_options(opts);
                    conn = co_await pg::Connection::connect(ioc, copts);
                    connecting = false;
                }
                co_await remove_tenant(*conn, t);
            } catch (...) {
                failure = std::current_exception();
            }
            if (failure) {
                try {
                    std::rethrow_exception(failure);
                } catch (const std::exception& e) {
                    std::fprintf(stderr, "cleanup: %s: %s\n", t.schema.c_str(), one_line(e.what()).c_str());
                }
                left.push_back(t);
                if (connecting) co_return;
            }
        }
    };
    std::size_t n = std::min<std::size_t>(std::max(workers, 1U), tenants.size());
    running = n;
    for (std::size_t w = 0; w < n; ++w) {
        auto on_done = [&](std::exception_ptr) {
            if (--running == 0) all_done.expires_at(asio::steady_timer::time_point::min());
        };
        asio::co_spawn(executor, worker(), on_done);
    }
    boost::system::error_code ignored;
    while (running > 0)
        co_await all_done.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
    while (next < tenants.size())
        left.push_back(tenants[next++]);
    co_return left;
}

// Tenants of the benchmark still in the catalog: every earlier run's (name_like = prefix%), or
// this run's.
asio::awaitable<std::vector<BenchTenant>> find_bench_tenants(pg::Connection& conn, const std::string& name_like) {
    std::string slug_like = std::string(kSlugPrefix) + "%";
    pg::Query q = one_off(
        "SELECT id::text, schema_name FROM platform.tenants WHERE slug LIKE $1 AND name LIKE $2 ORDER BY created_at",
        {slug_like, name_like});
    pg::Result r = co_await conn.query(std::move(q), soon());
    std::vector<BenchTenant> out;
    for (int i = 0; i < r.rows(); ++i)
        out.push_back({std::string(r.text(i, 0)), std::string(r.text(i, 1))});
    co_return out;
}

// The system catalogs that a tenant's creation and removal write to. Each dropped tenant leaves a
// few hundred dead rows there (pg_attribute, pg_depend, pg_class, ...); a run vacuums them before
// measuring, so every run starts from the same state whatever earlier runs or tests dropped, and
// after its cleanup, so the database is left as it was found. The database owner (the login role)
// may vacuum them; the shared catalogs (pg_authid, pg_shdepend, ...) are left to autovacuum.
constexpr std::string_view kTenantCatalogs =
    "pg_catalog.pg_attribute, pg_catalog.pg_class, pg_catalog.pg_depend, pg_catalog.pg_index, "
    "pg_catalog.pg_constraint, pg_catalog.pg_type, pg_catalog.pg_namespace, pg_catalog.pg_attrdef, "
    "pg_catalog.pg_proc";

asio::awaitable<std::int64_t> catalog_dead_rows(pg::Connection& conn) {
    std::string names{kTenantCatalogs};
    pg::Query q = one_off(
        "SELECT coalesce(sum(n_dead_tup), 0)::bigint FROM pg_catalog.pg_stat_sys_tables WHERE relid = ANY("
        "string_to_array(replace($1, ' ', ''), ',')::regclass[])",
        {names});
    pg::Result r = co_await conn.query(std::move(q), soon());
    co_return r.int64(0, 0);
}

// VACUUM (ANALYZE) of kTenantCatalogs; prints the dead rows found and the time taken.
asio::awaitable<void> vacuum_catalogs(pg::Connection& conn, const char* when) {
    std::int64_t dead = co_await catalog_dead_rows(conn);
    auto t0 = Clock::now();
    std::string sql = "VACUUM (ANALYZE) " + std::string(kTenantCatalogs);
    co_await conn.execute_script(sql, soon());
    std::printf(
        "catalog vacuum %s: %lld dead rows in the tenant-related system catalogs, VACUUM (ANALYZE) took %.0f ms\n",
        when, static_cast<long long>(dead), ms(Clock::now() - t0));
}

// ---------------------------------------------------------------- provisioning

struct ProvisionFigures {
    std::size_t n = 0;
    double p50 = 0, p90 = 0, max = 0, min = 0, mean = 0, first = 0;
    double hash_ms = 0;  // median of 5 hash_now calls
};

asio::awaitable<ProvisionFigures> bench_provision(pg::Connection& conn, auth::PasswordHasher& hasher,
                                                  Registry& registry, std::size_t count) {
    ProvisionFigures f;
    std::printf("\n== provisioning latency: %zu tenants, one after the other (tenancy::provision)\n", count);
    std::vector<double> hashes;
    const std::string password(kAdminPassword);
    for (int i = 0; i < 5; ++i) {
        auto t0 = Clock::now();
        std::string h = auth::PasswordHasher::hash_now(password, hasher.params());
        hashes.push_back(ms(Clock::now() - t0));
        if (h.rfind("$argon2id$", 0) != 0) throw std::runtime_error("hash_now did not return an argon2id hash");
    }
    f.hash_ms = median(hashes);
    std::printf("argon2id hash_now alone (t=%llu, m=%zu MiB, p=1): median of 5 = %.1f ms (min %.1f, max %.1f)\n",
                hasher.params().opslimit, hasher.params().memlimit >> 20, f.hash_ms, percentile(hashes, 1),
                percentile(hashes, 100));

    std::vector<double> lat;
    for (std::size_t i = 0; i < count; ++i) {
        check_stop();
        tenancy::ProvisionRequest req;
        req.slug = registry.new_slug();
        req.name = registry.tenant_name();
        req.plan = "standard";
        req.admin_email = std::string(kAdminEmail);
        req.admin_password = password;
        auto t0 = Clock::now();
        tenancy::ProvisionResult res = co_await tenancy::provision(conn, hasher, req, soon());
        lat.push_back(ms(Clock::now() - t0));
        registry.tenants.push_back({res.tenant.id_text, res.tenant.schema});
        if (res.tenant.schema_version != migrate::tenant_head())
            throw std::runtime_error("provisioned tenant is at version " + std::to_string(res.tenant.schema_version));
    }
    f.n = lat.size();
    f.first = lat.empty() ? 0 : lat.front();
    f.p50 = percentile(lat, 50);
    f.p90 = percentile(lat, 90);
    f.max = percentile(lat, 100);
    f.min = percentile(lat, 1);
    f.mean = mean(lat);
    std::printf("provision: n=%zu  p50=%.1f ms  p90=%.1f ms  max=%.1f ms  (min %.1f, mean %.1f, first call %.1f)\n",
                f.n, f.p50, f.p90, f.max, f.min, f.mean, f.first);
    std::printf("  of which argon2id ~%.1f ms (%.0f%% of p50), database work ~%.1f ms\n", f.hash_ms,
                f.p50 > 0 ? 100.0 * f.hash_ms / f.p50 : 0.0, f.p50 - f.hash_ms);
    co_return f;
}

// The steps of tenancy::provision replayed one by one with a clock around each, on the same
// connection, with the same statements (the seed and COMMIT are split so the commit's WAL flush
// shows on its own; provision sends them in one batch).
struct StepTimes {
    std::vector<double> hash, catalog_row, role_schema, tenant_stream, seed, commit, total;
};

asio::awaitable<void> replay_one(pg::Connection& conn, auth::PasswordHasher& hasher, Registry& registry,
                                 StepTimes& st) {
    auto t_start = Clock::now();
    std::string password(kAdminPassword);
    std::string password_hash = co_await hasher.hash(password);
    auto t_hash = Clock::now();

    const util::Uuid id = util::uuid_v7();
    const std::string id_text = util::to_string(id);
    const std::string schema = tenancy::schema_name_for(id);
    const std::string admin_id = util::to_string(util::uuid_v7());
    const std::string q = "\"" + schema + "\"";
    std::exception_ptr failure;
    try {
        std::vector<pg::Query> open;
        open.push_back({"BEGIN", {}, false});
        open.push_back(
            {"INSERT INTO platform.tenants (id, slug, name, plan, status, schema_name, role_name, "
             "schema_version) VALUES ($1, $2, $3, $4, 'active', $5, $5, 0)",
             {id_text, registry.new_slug(), registry.tenant_name(), "standard", schema},
             true});
        co_await conn.execute(open, soon());
        auto t_row = Clock::now();

        std::string ddl = "CREATE ROLE " + q + " NOLOGIN; GRANT " + q + " TO CURRENT_USER; CREATE SCHEMA " + q +
                          " AUTHORIZATION " + q;
        co_await conn.execute_script(ddl, soon());
        auto t_ddl = Clock::now();

        std::vector<pg::Query> bind;
        bind.push_back({"SELECT set_config('search_path', $1, true), set_config('role', $2, true)",
                        {schema + ", pg_temp", schema},
                        true});
        co_await conn.execute(bind, soon());
        int version = co_await migrate::apply_tenant_stream(conn, soon());
        auto t_stream = Clock::now();

        std::vector<pg::Query> seed;
        seed.push_back({"INSERT INTO users (id, email, name, role, password_hash) VALUES ($1, $2, $3, 'admin', $4)",
                        {admin_id, std::string(kAdminEmail), "Administrator", password_hash},
                        true});
        seed.push_back({"RESET ROLE", {}, false});
        seed.push_back({"SELECT set_config('search_path', 'platform', true)", {}, false});
        seed.push_back({"UPDATE platform.tenants SET schema_version = $2 WHERE id = $1",
                        {id_text, std::to_string(version)},
                        true});
        co_await conn.execute(seed, soon());
        auto t_seed = Clock::now();

        co_await conn.execute_script("COMMIT", soon());
        auto t_commit = Clock::now();
        registry.tenants.push_back({id_text, schema});

        st.hash.push_back(ms(t_hash - t_start));
        st.catalog_row.push_back(ms(t_row - t_hash));
        st.role_schema.push_back(ms(t_ddl - t_row));
        st.tenant_stream.push_back(ms(t_stream - t_ddl));
        st.seed.push_back(ms(t_seed - t_stream));
        st.commit.push_back(ms(t_commit - t_seed));
        st.total.push_back(ms(t_commit - t_start));
        co_return;
    } catch (...) {
        failure = std::current_exception();
    }
    co_await rollback_quietly(conn);
    std::rethrow_exception(failure);
}

// Each file of the embedded tenant stream run bare (no schema_migrations, no checks) as a fresh
// tenant role in a fresh schema, then rolled back: what the DDL itself costs. Medians per file.
asio::awaitable<std::vector<double>> time_files_bare(pg::Connection& conn, std::size_t count) {
    migrate::Stream stream = migrate::tenant_migrations();
    std::vector<std::vector<double>> per_file(stream.size());
    for (std::size_t i = 0; i < count; ++i) {
        check_stop();
        const std::string schema = tenancy::schema_name_for(util::uuid_v7());
        const std::string q = "\"" + schema + "\"";
        std::exception_ptr failure;
        try {
            co_await conn.execute_script("BEGIN", soon());
            std::string ddl = "CREATE ROLE " + q + " NOLOGIN; GRANT " + q + " TO CURRENT_USER; CREATE SCHEMA " + q +
                              " AUTHORIZATION " + q;
            co_await conn.execute_script(ddl, soon());
            std::string bind = "SELECT set_config('search_path', '" + schema +
                               ", pg_temp', true), set_config('role', '" + schema + "', true)";
            co_await conn.execute_script(bind, soon());
            for (std::size_t k = 0; k < stream.size(); ++k) {
                auto t0 = Clock::now();
                co_await conn.execute_script(stream[k].sql, soon());
                per_file[k].push_back(ms(Clock::now() - t0));
            }
        } catch (...) {
            failure = std::current_exception();
        }
        co_await rollback_quietly(conn);
        if (failure) std::rethrow_exception(failure);
    }
    std::vector<double> out;
    for (auto& v : per_file)
        out.push_back(median(v));
    co_return out;
}

struct BreakdownFigures {
    double hash = 0, catalog_row = 0, role_schema = 0, tenant_stream = 0, seed = 0, commit = 0, total = 0;
    double files = 0;  // the tenant stream's files alone
};

asio::awaitable<BreakdownFigures> bench_breakdown(pg::Connection& conn, auth::PasswordHasher& hasher,
                                                  Registry& registry, std::size_t count) {
    std::printf("\n== where provisioning time goes: provision's steps replayed one by one, %zu tenants (medians)\n",
                count);
    StepTimes st;
    for (std::size_t i = 0; i < count; ++i) {
        check_stop();
        co_await replay_one(conn, hasher, registry, st);
    }
    BreakdownFigures b;
    b.hash = median(st.hash);
    b.catalog_row = median(st.catalog_row);
    b.role_schema = median(st.role_schema);
    b.tenant_stream = median(st.tenant_stream);
    b.seed = median(st.seed);
    b.commit = median(st.commit);
    b.total = median(st.total);
    auto row = [&](const char* what, double v, const std::vector<double>& all) {
        std::printf("  %-52s %7.1f ms  (%4.0f%%)  max %.1f\n", what, v, b.total > 0 ? 100.0 * v / b.total : 0.0,
                    percentile(all, 100));
    };
    row("argon2id hash on the PasswordHasher pool", b.hash, st.hash);
    row("BEGIN + INSERT platform.tenants", b.catalog_row, st.catalog_row);
    row("CREATE ROLE + GRANT + CREATE SCHEMA", b.role_schema, st.role_schema);
    std::string stream_what = "bind role + apply_tenant_stream (" + std::to_string(migrate::tenant_head()) + " files)";
    row(stream_what.c_str(), b.tenant_stream, st.tenant_stream);
    row("seed admin user + RESET ROLE + UPDATE version", b.seed, st.seed);
    row("COMMIT (WAL flush)", b.commit, st.commit);
    std::printf("  %-52s %7.1f ms  (sum of the step medians %.1f)\n", "total", b.total,
                b.hash + b.catalog_row + b.role_schema + b.tenant_stream + b.seed + b.commit);
    double db = b.catalog_row + b.role_schema + b.tenant_stream + b.seed + b.commit;
    std::printf("  database part %.1f ms; hashing overlapped with the database work would give ~%.1f ms\n", db,
                std::max(b.hash, db - b.seed - b.commit) + b.seed + b.commit);

    std::vector<double> files = co_await time_files_bare(conn, count);
    migrate::Stream stream = migrate::tenant_migrations();
    double files_sum = 0;
    std::printf("  the tenant stream's files run bare as a new tenant role (rolled back), medians:\n");
    for (std::size_t k = 0; k < files.size(); ++k) {
        std::printf("    %-50s %7.1f ms\n", std::string(stream[k].name).c_str(), files[k]);
        files_sum += files[k];
    }
    std::printf("    %-50s %+7.1f ms  (difference; near 0 means within noise)\n",
                "apply_tenant_stream's own work (bind, bookkeeping)", b.tenant_stream - files_sum);
    b.files = files_sum;
    co_return b;
}

// ---------------------------------------------------------------- migrating a fleet

// A stream held in memory: the embedded tenant files plus kAddedSql as the next version.
class AddedStream {
  public:
    AddedStream() : list_(migrate::tenant_migrations().begin(), migrate::tenant_migrations().end()) {
        int version = static_cast<int>(list_.size()) + 1;
        char prefix[16];
        std::snprintf(prefix, sizeof prefix, "%04d_", version);
        name_ = std::string(prefix) + std::string(kAddedName) + ".sql";
        sql_ = std::string(kAddedSql);
        sum_ = migrate::sha256_hex(sql_);
        list_.push_back({version, name_, sql_, sum_});
    }
    AddedStream(const AddedStream&) = delete;
    AddedStream& operator=(const AddedStream&) = delete;
    migrate::Stream stream() const { return list_; }
    int head() const { return static_cast<int>(list_.size()); }
    const std::string& name() const { return name_; }

  private:
    std::string name_, sql_, sum_;
    std::vector<migrate::Migration> list_;
};

// A tenant as provisioning leaves it, without the admin user and the hashing: catalog row, role,
// schema owned by the role, the embedded tenant stream applied as that role; one transaction.
asio::awaitable<BenchTenant> create_at_head(pg::Connection& conn, const Registry& registry) {
    const util::Uuid id = util::uuid_v7();
    BenchTenant t{util::to_string(id), tenancy::schema_name_for(id)};
    const std::string q = "\"" + t.schema + "\"";
    std::exception_ptr failure;
    try {
        std::vector<pg::Query> open;
        open.push_back({"BEGIN", {}, false});
        open.push_back(
            {"INSERT INTO platform.tenants (id, slug, name, plan, status, schema_name, role_name, "
             "schema_version) VALUES ($1, $2, $3, 'standard', 'active', $4, $4, 0)",
             {t.id, registry.new_slug(), registry.tenant_name(), t.schema},
             true});
        co_await conn.execute(open, soon());
        std::string ddl = "CREATE ROLE " + q + " NOLOGIN; GRANT " + q + " TO CURRENT_USER; CREATE SCHEMA " + q +
                          " AUTHORIZATION " + q;
        co_await conn.execute_script(ddl, soon());
        std::vector<pg::Query> bind;
        bind.push_back({"SELECT set_config('search_path', $1, true), set_config('role', $2, true)",
                        {t.schema + ", pg_temp", t.schema},
                        true});
        co_await conn.execute(bind, soon());
        int version = co_await migrate::apply_tenant_stream(conn, soon());
        std::vector<pg::Query> close;
        close.push_back({"RESET ROLE", {}, false});
        close.push_back({"SELECT set_config('search_path', 'platform', true)", {}, false});
        close.push_back(
            {"UPDATE platform.tenants SET schema_version = $2 WHERE id = $1", {t.id, std::to_string(version)}, true});
        close.push_back({"COMMIT", {}, false});
        co_await conn.execute(close, soon());
        co_return t;
    } catch (...) {
        failure = std::current_exception();
    }
    co_await rollback_quietly(conn);
    std::rethrow_exception(failure);
}

struct MigrateFigures {
    std::size_t n = 0;
    unsigned concurrency = 0;
    double setup_s = 0;
    double migrate_s = 0;
    double tenants_per_s = 0;
    double noop_ms = 0;
    bool ok = false;
};

asio::awaitable<MigrateFigures> bench_migrate(asio::io_context& ioc, pg::Connection& conn, const Options& opts,
                                              Registry& registry) {
    MigrateFigures f;
    f.n = opts.migrate_tenants;
    f.concurrency = opts.migrate_concurrency;
    AddedStream added;
    std::printf("\n== migrating %zu tenants through one added migration (%s), run_all concurrency %u\n", f.n,
                added.name().c_str(), f.concurrency);

    // Setup (not part of the figure).
    const std::size_t first = registry.tenants.size();
    std::vector<std::optional<BenchTenant>> made(f.n);
    std::size_t done = 0;
    auto setup_start = Clock::now();
    IndexedBody make_one = [&](pg::Connection& c, std::size_t i) -> asio::awaitable<void> {
        BenchTenant t = co_await create_at_head(c, registry);
        registry.tenants.push_back(t);
        made[i] = std::move(t);
        if (++done % 250 == 0 || done == f.n) {
            std::printf("  setup: %zu/%zu tenants at version %d (%.1f s)\n", done, f.n, migrate::tenant_head(),
                        std::chrono::duration<double>(Clock::now() - setup_start).count());
            std::fflush(stdout);
        }
    };
    co_await for_each_parallel(ioc, opts, f.n, opts.setup_concurrency, make_one);
    f.setup_s = std::chrono::duration<double>(Clock::now() - setup_start).count();
    std::printf(
        "setup: %zu tenants created at version %d in %.1f s on %u connections (%.0f tenants/s; not part of "
        "the figure)\n",
        f.n, migrate::tenant_head(), f.setup_s, opts.setup_concurrency, static_cast<double>(f.n) / f.setup_s);

    std::vector<std::string> ids;
    for (std::size_t i = first; i < registry.tenants.size(); ++i)
        ids.push_back(registry.tenants[i].id);

    // The measured run: exactly what `mtapi migrate` does, restricted to these tenants.
    migrate::RunOptions ro;
    ro.database_url = opts.database_url;
    ro.concurrency = opts.migrate_concurrency;
    ro.timeout = std::chrono::minutes(10);
    ro.tenant = added.stream();
    ro.tenant_ids = ids;
    auto run_start = Clock::now();
    ro.on_tenant = [&](const migrate::TenantRef&, const migrate::TenantOutcome&, const migrate::Report& r) {
        if (r.tenants_processed % 250 == 0 || r.tenants_processed == r.tenants_pending) {
            std::printf("  migrate: %zu/%zu (%.1f s)\n", r.tenants_processed, r.tenants_pending,
                        std::chrono::duration<double>(Clock::now() - run_start).count());
            std::fflush(stdout);
        }
    };
    migrate::Report report = co_await migrate::run_all(ioc, ro);
    f.migrate_s = std::chrono::duration<double>(Clock::now() - run_start).count();
    check_stop();
    f.tenants_per_s = f.migrate_s > 0 ? static_cast<double>(report.tenants_migrated) / f.migrate_s : 0;
    std::printf(
        "migrate: %zu tenants to version %d in %.2f s wall (run_all elapsed %.2f s) = %.0f tenants/s  "
        "[pending %zu, migrated %zu, at head %zu, failed %zu]\n",
        report.tenants_total, report.tenant_head, f.migrate_s, static_cast<double>(report.elapsed.count()) / 1000.0,
        f.tenants_per_s, report.tenants_pending, report.tenants_migrated, report.tenants_at_head,
        report.tenants_failed);
    for (std::size_t i = 0; i < report.failures.size() && i < 5; ++i)
        std::printf("  failed: %s: %s\n", report.failures[i].slug.c_str(),
                    one_line(report.failures[i].message).c_str());

    // Checks: the catalog says every tenant is at the new head, and every schema has the index.
    std::string arr = id_array(ids);
    pg::Query head_q =
        one_off("SELECT count(*) FROM platform.tenants WHERE id = ANY($1::uuid[]) AND schema_version = $2",
                {arr, std::to_string(added.head())});
    pg::Result at_head = co_await conn.query(std::move(head_q), soon());
    pg::Query index_q = one_off(
        "SELECT count(*) FROM pg_catalog.pg_indexes i JOIN platform.tenants t ON i.schemaname = t.schema_name "
        "WHERE t.id = ANY($1::uuid[]) AND i.indexname = 'vehicles_bench_note_idx'",
        {arr});
    pg::Result indexed = co_await conn.query(std::move(index_q), soon());
    auto n_head = static_cast<std::size_t>(at_head.int64(0, 0));
    auto n_index = static_cast<std::size_t>(indexed.int64(0, 0));
    f.ok = report.tenants_migrated == f.n && report.tenants_failed == 0 && n_head == f.n && n_index == f.n;
    std::printf("check: %zu/%zu at version %d in platform.tenants, %zu/%zu schemas with vehicles_bench_note_idx: %s\n",
                n_head, f.n, added.head(), n_index, f.n, f.ok ? "ok" : "FAILED");

    // A second run finds everything at head (what every later `mtapi migrate` does).
    migrate::RunOptions again;
    again.database_url = opts.database_url;
    again.concurrency = opts.migrate_concurrency;
    again.tenant = added.stream();
    again.tenant_ids = ids;
    auto noop_start = Clock::now();
    migrate::Report second = co_await migrate::run_all(ioc, again);
    f.noop_ms = ms(Clock::now() - noop_start);
    std::printf("second run: %zu at head, %zu migrated, in %.0f ms\n", second.tenants_at_head, second.tenants_migrated,
                f.noop_ms);
    if (second.tenants_migrated != 0 || second.tenants_at_head != f.n) f.ok = false;
    co_return f;
}

// ---------------------------------------------------------------- the run

struct Figures {
    std::optional<ProvisionFigures> provision;
    std::optional<BreakdownFigures> breakdown;
    std::optional<MigrateFigures> migrate;
    double cleanup_s = 0;
    std::size_t left_behind = 0;
};

std::string read_first_line(const char* path) {
    std::ifstream in(path);
    std::string line;
    std::getline(in, line);
    return line;
}

asio::awaitable<void> print_environment(pg::Connection& conn, const Options& opts) {
    pg::Query q = one_off(
        "SELECT current_setting('server_version'), current_setting('fsync'), current_setting('synchronous_commit'), "
        "current_setting('shared_buffers'), current_setting('max_locks_per_transaction'), "
        "(SELECT count(*) FROM platform.tenants)");
    pg::Result v = co_await conn.query(std::move(q), soon());
    std::printf(
        "mtapi tenancy benchmark: PostgreSQL %s (fsync=%s, synchronous_commit=%s, shared_buffers=%s, "
        "max_locks_per_transaction=%s)\n",
        std::string(v.text(0, 0)).c_str(), std::string(v.text(0, 1)).c_str(), std::string(v.text(0, 2)).c_str(),
        std::string(v.text(0, 3)).c_str(), std::string(v.text(0, 4)).c_str());
    // CPU pressure (share of time some runnable task waited for a CPU): on a shared machine the
    // figures below move with it.
    std::string psi = read_first_line("/proc/pressure/cpu");
    std::printf("machine: %ld CPUs, load average %s%s%s\n", sysconf(_SC_NPROCESSORS_ONLN),
                read_first_line("/proc/loadavg").c_str(), psi.empty() ? "" : "; CPU pressure ", psi.c_str());
    std::printf("catalog before the run: %s tenants; tenant stream head %d\n", std::string(v.text(0, 5)).c_str(),
                migrate::tenant_head());
    std::printf(
        "settings: provision %zu, breakdown %zu, migrate %zu tenants at concurrency %u, setup/cleanup on %u "
        "connections, %u hashing thread(s), catalog vacuum %s\n",
        opts.provision_tenants, opts.breakdown_tenants, opts.migrate_tenants, opts.migrate_concurrency,
        opts.setup_concurrency, opts.hash_threads, opts.vacuum ? "on" : "off");
}

asio::awaitable<Figures> run(asio::io_context& ioc, const Options& opts, Registry& registry) {
    Figures fig;
    pg::ConnectOptions copts = connect_options(opts);
    ConnPtr conn = co_await pg::Connection::connect(ioc, copts);

    pg::Query lock = one_off("SELECT pg_try_advisory_lock($1::bigint)", {std::to_string(kRunLockKey)});
    pg::Result locked = co_await conn->query(std::move(lock), soon());
    if (!locked.boolean(0, 0)) throw std::runtime_error("another mtapi_tenancy_bench is running against this database");

    int platform = co_await migrate::migrate_platform(*conn, soon());
    co_await print_environment(*conn, opts);
    std::printf("platform schema at version %d\n", platform);

    // What an earlier run could not remove (killed, or the database gone during its cleanup).
    std::string any_run = std::string(kNamePrefix) + " %";
    std::vector<BenchTenant> stale = co_await find_bench_tenants(*conn, any_run);
    if (!stale.empty()) {
        std::printf("removing %zu tenants left by an earlier benchmark run\n", stale.size());
        std::vector<BenchTenant> left = co_await remove_all(ioc, opts, stale, opts.setup_concurrency);
        if (!left.empty()) throw std::runtime_error("could not remove the tenants of an earlier run");
    }
    // Every run measures from the same catalog state (see kTenantCatalogs).
    if (opts.vacuum) co_await vacuum_catalogs(*conn, "before the run");

    std::exception_ptr failure;
    try {
        if (opts.provision_tenants > 0 || opts.breakdown_tenants > 0) {
            // A small queue is enough: provisioning here is sequential.
            auth::PasswordHasher hasher(opts.hash_threads, 8, auth::HashParams{});
            if (opts.provision_tenants > 0)
                fig.provision = co_await bench_provision(*conn, hasher, registry, opts.provision_tenants);
            if (opts.breakdown_tenants > 0)
                fig.breakdown = co_await bench_breakdown(*conn, hasher, registry, opts.breakdown_tenants);
        }
        if (opts.migrate_tenants > 0) fig.migrate = co_await bench_migrate(ioc, *conn, opts, registry);
    } catch (...) {
        failure = std::current_exception();
    }

    // Cleanup, whatever happened above (a second Ctrl-C exits at once; the next run removes the rest).
    if (failure) {
        try {
            std::rethrow_exception(failure);
        } catch (const Interrupted&) {
            std::printf("\ninterrupted: removing the benchmark's tenants\n");
        } catch (const std::exception& e) {
            std::printf("\nfailed: %s\nremoving the benchmark's tenants\n", one_line(e.what()).c_str());
        }
    }
    std::printf("\n== cleanup: removing %zu tenants (schema, role, catalog row)\n", registry.tenants.size());
    std::fflush(stdout);
    auto cleanup_start = Clock::now();
    std::vector<BenchTenant> left = co_await remove_all(ioc, opts, registry.tenants, opts.setup_concurrency);
    // A tenant committed just as its connection failed is in the catalog but not in the registry.
    if (conn->broken()) {
        conn.reset();
        try {
            conn = co_await pg::Connection::connect(ioc, copts);
        } catch (const std::exception&) {
        }
    }
    if (conn && left.empty()) {
        std::string this_run = registry.tenant_name();
        std::vector<BenchTenant> more = co_await find_bench_tenants(*conn, this_run);
        if (!more.empty()) left = co_await remove_all(ioc, opts, more, opts.setup_concurrency);
    }
    fig.cleanup_s = std::chrono::duration<double>(Clock::now() - cleanup_start).count();
    fig.left_behind = left.size();
    if (left.empty()) {
        std::printf("cleanup: done in %.1f s; the catalog is as before the run\n", fig.cleanup_s);
    } else {
        std::printf("cleanup: %zu tenants could not be removed (the next run removes them):\n", left.size());
        for (const auto& t : left)
            std::printf("  %s %s\n", t.id.c_str(), t.schema.c_str());
    }
    if (conn && !conn->broken()) {
        pg::Query q = one_off("SELECT count(*) FROM platform.tenants");
        pg::Result count = co_await conn->query(std::move(q), soon());
        std::printf("catalog after the run: %s tenants\n", std::string(count.text(0, 0)).c_str());
        // Leaves no dead catalog rows of the dropped schemas behind (see kTenantCatalogs).
        if (opts.vacuum && !registry.tenants.empty()) {
            try {
                co_await vacuum_catalogs(*conn, "after cleanup");
            } catch (const std::exception& e) {
                std::printf("catalog vacuum after cleanup failed: %s\n", one_line(e.what()).c_str());
            }
        }
    }
    if (failure) std::rethrow_exception(failure);
    co_return fig;
}

void print_machine_line(const Figures& fig) {
    std::string line = "BENCH_TENANCY";
    char buf[128];
    auto add = [&](const char* key, double v, int decimals) {
        std::snprintf(buf, sizeof buf, " %s=%.*f", key, decimals, v);
        line += buf;
    };
    if (fig.provision) {
        add("provision_n", static_cast<double>(fig.provision->n), 0);
        add("provision_p50_ms", fig.provision->p50, 1);
        add("provision_p90_ms", fig.provision->p90, 1);
        add("provision_max_ms", fig.provision->max, 1);
        add("hash_ms", fig.provision->hash_ms, 1);
    }
    if (fig.breakdown) {
        add("step_hash_ms", fig.breakdown->hash, 1);
        add("step_catalog_row_ms", fig.breakdown->catalog_row, 1);
        add("step_role_schema_ms", fig.breakdown->role_schema, 1);
        add("step_tenant_stream_ms", fig.breakdown->tenant_stream, 1);
        add("step_seed_ms", fig.breakdown->seed, 1);
        add("step_commit_ms", fig.breakdown->commit, 1);
        add("stream_files_bare_ms", fig.breakdown->files, 1);
    }
    if (fig.migrate) {
        add("migrate_n", static_cast<double>(fig.migrate->n), 0);
        add("migrate_concurrency", fig.migrate->concurrency, 0);
        add("migrate_s", fig.migrate->migrate_s, 2);
        add("migrate_tenants_per_s", fig.migrate->tenants_per_s, 0);
        add("migrate_ok", fig.migrate->ok ? 1 : 0, 0);
        add("setup_s", fig.migrate->setup_s, 1);
        add("noop_ms", fig.migrate->noop_ms, 0);
    }
    add("cleanup_s", fig.cleanup_s, 1);
    add("left_behind", static_cast<double>(fig.left_behind), 0);
    std::printf("\n%s\n", line.c_str());
}

}  // namespace
}  // namespace mtapi::bench

int main(int argc, char** argv) {
    using namespace mtapi::bench;
    Options opts = parse_options(argc, argv);
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    // Rollback warnings and the like only; the figures are printed here.
    mtapi::obs::set_level(mtapi::obs::Level::warn);

    asio::io_context ioc;
    Registry registry;
    registry.tag = mtapi::util::to_hex(mtapi::util::uuid_v7()).substr(20);

    // First SIGINT/SIGTERM: stop after the current step and clean up. Second: leave at once.
    asio::signal_set signals(ioc, SIGINT, SIGTERM);
    std::function<void(const boost::system::error_code&, int)> on_signal = [&](const boost::system::error_code& ec,
                                                                               int) {
        if (ec) return;
        if (g_stop.exchange(true)) {
            std::fprintf(stderr, "mtapi_tenancy_bench: leaving now; the next run removes the remaining tenants\n");
            std::_Exit(130);
        }
        std::fprintf(stderr,
                     "mtapi_tenancy_bench: stopping after the current step, then cleaning up (again to leave "
                     "at once)\n");
        signals.async_wait(on_signal);
    };
    signals.async_wait(on_signal);

    int status = 1;
    std::optional<Figures> figures;
    asio::co_spawn(ioc, run(ioc, opts, registry), [&](std::exception_ptr e, Figures f) {
        boost::system::error_code ignored;
        signals.cancel(ignored);
        if (!e) {
            figures = std::move(f);
            status = 0;
            return;
        }
        try {
            std::rethrow_exception(e);
        } catch (const Interrupted&) {
            status = 130;
        } catch (const std::exception& ex) {
            std::fprintf(stderr, "mtapi_tenancy_bench: %s\n", ex.what());
            status = 1;
        }
    });
    ioc.run();
    if (!figures) return status;
    print_machine_line(*figures);
    if (figures->migrate && !figures->migrate->ok) return 1;
    if (figures->left_behind > 0) return 1;
    return 0;
}
