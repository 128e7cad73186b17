// Tenancy (src/tenancy/) against the test PostgreSQL that `make test` starts: isolation as the
// database enforces it through TenantTx, provisioning all or nothing, deletion, and the tenant
// catalog's freshness.
//
// Other test executables use the same database at the same time: every tenant here has a slug of
// its own (prefix + random hex) and is deleted at the end, and no check assumes that the catalog
// holds only this test's tenants. Checks that nothing was left behind compare the set of
// "orphans" (tenant_ schemas and roles without a catalog row), which concurrent provisioning and
// deletion never change because each of them is one transaction.

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <cstdio>
#include <memory>
#include <optional>
#include <regex>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "auth/password_hasher.hpp"
#include "migrate/migrations.hpp"
#include "migrate/runner.hpp"
#include "pg_test_support.hpp"
#include "tenancy/catalog.hpp"
#include "tenancy/provisioner.hpp"
#include "tenancy/tenant_tx.hpp"
#include "util/uuid.hpp"

namespace mtapi::pgtest {
namespace {

using pg::ErrorKind;
using pg::Query;
using tenancy::Tenant;
using tenancy::TenantTx;

// ------------------------------------------------------------------------------ helpers

// A prepared statement with text parameters. Kept free of braced lists: GCC 12 cannot hold their
// temporaries across co_await.
template <class... Params>
Query q(std::string_view sql, Params&&... params) {
    Query out;
    out.sql = sql;
    (out.params.emplace_back(std::forward<Params>(params)), ...);
    return out;
}
// An unnamed (unprepared) statement.
Query unnamed(std::string_view sql) {
    Query out = q(sql);
    out.prepare = false;
    return out;
}

// OWASP's minimum argon2id parameters (m = 19 MiB, t = 2), as provisioning uses in production.
auth::HashParams owasp_params() {
    return auth::HashParams{2, 19u * 1024u * 1024u};
}

auth::PasswordHasher& hasher() {
    static auth::PasswordHasher h(1, 8, owasp_params());
    return h;
}

// A slug nobody else uses: `prefix` and the random tail of a UUIDv7 (12 hex digits).
std::string unique_slug(std::string_view prefix) {
    return std::string(prefix) + "-" + util::to_hex(util::uuid_v7()).substr(20);
}

tenancy::ProvisionRequest request(const std::string& slug, std::optional<std::string> password) {
    tenancy::ProvisionRequest r;
    r.slug = slug;
    r.name = "Tenancy test " + slug;
    r.plan = "standard";
    r.admin_email = "admin@" + slug + ".example.com";
    r.admin_password = std::move(password);
    return r;
}

const std::string kPassword = "correct horse battery staple";

pg::PoolOptions pool_options(std::size_t size) {
    pg::PoolOptions o;
    o.connect = options();
    o.size = size;
    o.acquire_timeout = 5s;
    return o;
}

asio::awaitable<std::unique_ptr<pg::Connection>> connect(asio::io_context& ioc) {
    pg::ConnectOptions o = options();
    co_return co_await pg::Connection::connect(ioc, o);
}

asio::awaitable<tenancy::ProvisionResult> provision_on(asio::io_context& ioc, tenancy::ProvisionRequest req,
                                                       auth::PasswordHasher& h = hasher()) {
    auto conn = co_await connect(ioc);
    co_return co_await tenancy::provision(*conn, h, std::move(req), after(30s));
}

// Single-quoted SQL literal (test-generated text only: slugs, ids, schema names).
std::string lit(const std::string& s) {
    return "'" + s + "'";
}

// Deletes every tenant with one of these slugs at the end of a test, whatever happened in it.
class SlugCleanup {
  public:
    SlugCleanup() = default;
    SlugCleanup(const SlugCleanup&) = delete;
    SlugCleanup& operator=(const SlugCleanup&) = delete;
    ~SlugCleanup() {
        for (const auto& slug : slugs_) {
            try {
                remove_slug(slug);
            } catch (const std::exception& e) {
                std::fprintf(stderr, "tenant %s was not removed: %s\n", slug.c_str(), e.what());
            }
        }
    }
    const std::string& add(std::string slug) { return slugs_.emplace_back(std::move(slug)); }

    static void remove_slug(const std::string& slug) {
        AdminSession db(database_url());
        auto ids = db.column("SELECT id::text FROM platform.tenants WHERE slug = " + lit(slug));
        for (const auto& id : ids) {
            Tenant t;
            t.id_text = id;
            t.schema = db.value("SELECT schema_name FROM platform.tenants WHERE id = " + lit(id));
            t.role = db.value("SELECT role_name FROM platform.tenants WHERE id = " + lit(id));
            run([&t](asio::io_context& ioc) -> asio::awaitable<void> {
                auto conn = co_await connect(ioc);
                co_await tenancy::remove(*conn, t, after(30s));
            });
        }
    }

  private:
    std::vector<std::string> slugs_;
};

// tenant_ schemas and roles that no catalog row names, each list read in one snapshot.
struct Orphans {
    std::string schemas;
    std::string roles;
    bool operator==(const Orphans&) const = default;
};

Orphans orphans() {
    AdminSession su(superuser_url());
    Orphans o;
    o.schemas = su.value(
        "SELECT coalesce(string_agg(nspname, ',' ORDER BY nspname), '') FROM pg_namespace "
        "WHERE nspname LIKE 'tenant\\_%' AND nspname NOT IN (SELECT schema_name FROM platform.tenants)");
    o.roles = su.value(
        "SELECT coalesce(string_agg(rolname, ',' ORDER BY rolname), '') FROM pg_roles "
        "WHERE rolname LIKE 'tenant\\_%' AND rolname NOT IN (SELECT role_name FROM platform.tenants)");
    return o;
}

void PrintTo(const Orphans& o, std::ostream* os) {
    *os << "{schemas: [" << o.schemas << "], roles: [" << o.roles << "]}";
}

bool schema_exists(AdminSession& su, const std::string& name) {
    return su.value("SELECT count(*) FROM pg_namespace WHERE nspname = " + lit(name)) == "1";
}
bool role_exists(AdminSession& su, const std::string& name) {
    return su.value("SELECT count(*) FROM pg_roles WHERE rolname = " + lit(name)) == "1";
}
std::string catalog_rows_with_slug(AdminSession& su, const std::string& slug) {
    return su.value("SELECT count(*) FROM platform.tenants WHERE slug = " + lit(slug));
}

// Inserts `n` vehicles into the tenant in one tenant transaction; returns their ids.
asio::awaitable<std::set<std::string>> insert_vehicles(pg::Pool& pool, const Tenant& t, int n,
                                                       std::string_view plate_prefix) {
    std::set<std::string> ids;
    std::vector<Query> batch;
    for (int i = 0; i < n; ++i) {
        std::string id = util::to_string(util::uuid_v7());
        ids.insert(id);
        batch.push_back(
            q("INSERT INTO vehicles (id, plate) VALUES ($1, $2)", id, std::string(plate_prefix) + std::to_string(i)));
    }
    auto body = [&batch](TenantTx& tx) -> asio::awaitable<void> { co_await tx.execute(batch); };
    co_await tenancy::with_tenant(pool, t, after(10s), body);
    co_return ids;
}

// Every value of column `col` of `r`.
std::vector<std::string> column_of(const pg::Result& r, int col = 0) {
    std::vector<std::string> out;
    for (int i = 0; i < r.rows(); ++i)
        out.emplace_back(r.text(i, col));
    return out;
}

// The ids of every vehicle a statement returns inside the tenant's transaction.
// `sql` must outlive the call (a literal, or a named string of the caller).
asio::awaitable<std::vector<std::string>> vehicle_ids_in(pg::Pool& pool, const Tenant& t, std::string_view sql) {
    std::vector<std::string> ids;
    auto body = [&ids, &sql](TenantTx& tx) -> asio::awaitable<void> {
        Query select = q(sql);
        auto r = co_await tx.query(std::move(select));
        int col = r.column_index("id");
        ids = column_of(r, col < 0 ? 0 : col);
    };
    co_await tenancy::with_tenant(pool, t, after(10s), body);
    co_return ids;
}

std::set<std::string> as_set(const std::vector<std::string>& v) {
    return std::set<std::string>(v.begin(), v.end());
}

// Runs `statements` one after the other in a transaction of tenant `t`; the pg::Error that ended
// it, or nullopt when every statement succeeded.
asio::awaitable<std::optional<pg::Error>> error_in_tenant(pg::Pool& pool, const Tenant& t,
                                                          std::vector<std::string> statements) {
    auto body = [&statements](TenantTx& tx) -> asio::awaitable<void> {
        for (const auto& s : statements) {
            Query stmt = unnamed(s);
            co_await tx.query(std::move(stmt));
        }
    };
    co_return co_await error_of(tenancy::with_tenant(pool, t, after(10s), body));
}

std::string describe(const std::optional<pg::Error>& e) {
    if (!e) return "no error";
    return std::string(pg::kind_name(e->kind())) + " " + e->sqlstate() + ": " + e->what();
}

// ------------------------------------------------------------------------------ fixture

// Two tenants with vehicles, provisioned once per test process (ctest runs every test in a
// process of its own) on first use and deleted at the end.
struct Pair {
    Tenant a, b;
    std::set<std::string> a_ids, b_ids;
    std::string a_slug, b_slug;
};

class Tenancy : public ::testing::Test {
  protected:
    static void SetUpTestSuite() {
        if (!database_configured()) return;
        // Everything below needs platform.tenants; a no-op when the platform is at head.
        run([](asio::io_context& ioc) -> asio::awaitable<void> {
            auto conn = co_await connect(ioc);
            migrate::Stream stream = migrate::platform_migrations();
            co_await migrate::migrate_platform(*conn, after(60s), stream);
        });
    }
    static void TearDownTestSuite() {
        if (!pair_) return;
        for (const auto* slug : {&pair_->a_slug, &pair_->b_slug}) {
            try {
                SlugCleanup::remove_slug(*slug);
            } catch (const std::exception& e) {
                std::fprintf(stderr, "tenant %s was not removed: %s\n", slug->c_str(), e.what());
            }
        }
        pair_.reset();
    }
    void SetUp() override { ASSERT_TRUE(database_configured()); }

    static const Pair& pair() {
        if (pair_) return *pair_;
        auto p = std::make_unique<Pair>();
        p->a_slug = unique_slug("iso-a");
        p->b_slug = unique_slug("iso-b");
        pair_ = std::move(p);  // registered first, so a half-made pair is still cleaned up
        Pair& s = *pair_;
        run(
            [&s](asio::io_context& ioc) -> asio::awaitable<void> {
                auto req_a = request(s.a_slug, kPassword);
                auto ra = co_await provision_on(ioc, std::move(req_a));
                s.a = ra.tenant;
                auto req_b = request(s.b_slug, kPassword);
                auto rb = co_await provision_on(ioc, std::move(req_b));
                s.b = rb.tenant;
                pg::Pool pool(ioc, pool_options(1));
                s.a_ids = co_await insert_vehicles(pool, s.a, 5, "A-");
                s.b_ids = co_await insert_vehicles(pool, s.b, 7, "B-");
            },
            60s);
        return s;
    }

  private:
    static inline std::unique_ptr<Pair> pair_;
};

// ------------------------------------------------------------------------------ isolation

TEST_F(Tenancy, unqualified_queries_see_only_the_current_tenants_rows) {
    const Pair& s = pair();
    run([&s](asio::io_context& ioc) -> asio::awaitable<void> {
        pg::Pool pool(ioc, pool_options(2));
        auto a_seen = co_await vehicle_ids_in(pool, s.a, "SELECT id FROM vehicles");
        auto b_seen = co_await vehicle_ids_in(pool, s.b, "SELECT id FROM vehicles");
        EXPECT_EQ(a_seen.size(), s.a_ids.size());
        EXPECT_EQ(as_set(a_seen), s.a_ids);
        EXPECT_EQ(b_seen.size(), s.b_ids.size());
        EXPECT_EQ(as_set(b_seen), s.b_ids);

        std::vector<const Tenant*> both;
        both.push_back(&s.a);
        both.push_back(&s.b);
        for (const Tenant* t : both) {
            std::string users, admins;
            auto body = [&users, &admins](TenantTx& tx) -> asio::awaitable<void> {
                Query count = q("SELECT count(*), count(*) FILTER (WHERE role = 'admin') FROM users");
                auto r = co_await tx.query(std::move(count));
                users = std::string(r.text(0, 0));
                admins = std::string(r.text(0, 1));
            };
            co_await tenancy::with_tenant(pool, *t, after(10s), body);
            EXPECT_EQ(users, "1") << t->schema << " sees users other than its own admin";
            EXPECT_EQ(admins, "1");
        }
    });
}

TEST_F(Tenancy, a_query_that_forgets_any_tenant_filter_sees_only_the_current_tenants_rows) {
    const Pair& s = pair();
    run([&s](asio::io_context& ioc) -> asio::awaitable<void> {
        pg::Pool pool(ioc, pool_options(1));
        // One connection for both tenants: the same prepared statement serves each in turn.
        for (int round = 0; round < 2; ++round) {
            auto a_seen = co_await vehicle_ids_in(pool, s.a, "SELECT * FROM vehicles");
            auto b_seen = co_await vehicle_ids_in(pool, s.b, "SELECT * FROM vehicles");
            EXPECT_EQ(as_set(a_seen), s.a_ids);
            EXPECT_EQ(a_seen.size(), s.a_ids.size());
            EXPECT_EQ(as_set(b_seen), s.b_ids);
            EXPECT_EQ(b_seen.size(), s.b_ids.size());
        }
    });
}

TEST_F(Tenancy, references_outside_the_tenant_fail_with_permission_denied) {
    const Pair& s = pair();
    run([&s](asio::io_context& ioc) -> asio::awaitable<void> {
        pg::Pool pool(ioc, pool_options(1));
        const std::string other = "SELECT * FROM " + s.b.schema + ".vehicles";
        struct Case {
            std::string what;
            std::vector<std::string> statements;
        };
        std::vector<Case> cases;
        cases.push_back(Case{"another tenant's table, schema-qualified", std::vector<std::string>{other}});
        cases.push_back(Case{"the platform catalog", std::vector<std::string>{"SELECT * FROM platform.tenants"}});
        cases.push_back(
            Case{"the platform admins", std::vector<std::string>{"SELECT * FROM platform.platform_admins"}});
        cases.push_back(Case{"a temporary table", std::vector<std::string>{"CREATE TEMP TABLE x (i int)"}});
        cases.push_back(Case{"a table in public", std::vector<std::string>{"CREATE TABLE public.x (i int)"}});
        // Back to the login role: NOINHERIT, so it holds none of the tenant roles' rights.
        cases.push_back(
            Case{"another tenant's table as the login role", std::vector<std::string>{"RESET ROLE", other}});
        cases.push_back(Case{"the tenant's own table as the login role",
                             std::vector<std::string>{"RESET ROLE", "SELECT * FROM " + s.a.schema + ".vehicles"}});
        for (const auto& c : cases) {
            auto err = co_await error_in_tenant(pool, s.a, c.statements);
            EXPECT_TRUE(err.has_value()) << c.what << ": succeeded";
            if (!err) continue;
            EXPECT_EQ(err->kind(), ErrorKind::insufficient_privilege) << c.what << ": " << describe(err);
            EXPECT_EQ(err->sqlstate(), "42501") << c.what << ": " << describe(err);
        }
        // The connection is still good for the tenant's own data afterwards.
        auto own = co_await vehicle_ids_in(pool, s.a, "SELECT id FROM vehicles");
        EXPECT_EQ(as_set(own), s.a_ids);
    });
}

// PostgreSQL checks SET ROLE (and set_config('role', …)) against the session user, the login
// role, which is a member of every tenant role so that TenantTx can bind any tenant: the database
// alone would let a statement inside a tenant transaction switch to another tenant's role.
// TenantTx refuses such statements before they are sent (ADR 004).
TEST_F(Tenancy, a_tenant_transaction_cannot_assume_another_tenants_role) {
    const Pair& s = pair();
    run([&s](asio::io_context& ioc) -> asio::awaitable<void> {
        pg::Pool pool(ioc, pool_options(1));
        std::vector<std::vector<std::string>> cases;
        cases.push_back(std::vector<std::string>{"SET ROLE " + s.b.role});
        cases.push_back(std::vector<std::string>{"SELECT set_config('role', " + lit(s.b.role) + ", true)"});
        for (const auto& statements : cases) {
            auto err = co_await error_in_tenant(pool, s.a, statements);
            EXPECT_TRUE(err.has_value()) << statements.front() << ": succeeded inside " << s.a.schema
                                         << "'s transaction";
            if (err) {
                EXPECT_EQ(err->sqlstate(), "42501") << describe(err);
            }
        }
        // What a successful switch gives away.
        std::vector<std::string> read_other;
        read_other.push_back("SET ROLE " + s.b.role);
        read_other.push_back("SELECT count(*) FROM " + s.b.schema + ".vehicles");
        auto err = co_await error_in_tenant(pool, s.a, read_other);
        EXPECT_TRUE(err.has_value()) << "A's transaction read B's vehicles after SET ROLE";
    });
}

struct SessionState {
    std::string user;
    std::string search_path;
    int pid = 0;
};

// What a connection of `pool` carries outside any tenant transaction.
asio::awaitable<SessionState> session_state(pg::Pool& pool) {
    auto lease = co_await pool.acquire(after(5s));
    Query probe = q("SELECT current_user, current_setting('search_path'), pg_backend_pid()");
    auto r = co_await lease->query(std::move(probe), after(5s));
    SessionState s;
    s.user = std::string(r.text(0, 0));
    s.search_path = std::string(r.text(0, 1));
    s.pid = static_cast<int>(r.int64(0, 2));
    co_return s;
}

TEST_F(Tenancy, nothing_of_the_tenant_survives_on_the_connection_after_its_transaction) {
    const Pair& s = pair();
    // What a fresh session of the login role has: the reference.
    AdminSession fresh(database_url());
    const std::string login_role = fresh.value("SELECT current_user");
    const std::string default_path = fresh.value("SELECT current_setting('search_path')");
    EXPECT_EQ(default_path, "\"$user\", public");

    run([&](asio::io_context& ioc) -> asio::awaitable<void> {
        pg::Pool pool(ioc, pool_options(1));  // every transaction below runs on the same connection
        const SessionState before = co_await session_state(pool);
        EXPECT_EQ(before.user, login_role);
        EXPECT_EQ(before.search_path, default_path);

        auto expect_clean = [&](const SessionState& now, const char* after_what) {
            EXPECT_EQ(now.pid, before.pid) << after_what << ": the pool replaced the connection";
            EXPECT_EQ(now.user, login_role) << after_what;
            EXPECT_EQ(now.search_path, default_path) << after_what;
        };

        // Committed; inside, the tenant is bound.
        SessionState inside;
        auto committed = [&inside](TenantTx& tx) -> asio::awaitable<void> {
            Query probe = q("SELECT current_user, current_setting('search_path'), pg_backend_pid()");
            auto r = co_await tx.query(std::move(probe));
            inside.user = std::string(r.text(0, 0));
            inside.search_path = std::string(r.text(0, 1));
            inside.pid = static_cast<int>(r.int64(0, 2));
        };
        co_await tenancy::with_tenant(pool, s.a, after(10s), committed);
        EXPECT_EQ(inside.user, s.a.role);
        EXPECT_EQ(inside.search_path, s.a.schema + ", pg_temp");
        EXPECT_EQ(inside.pid, before.pid);
        const SessionState after_commit = co_await session_state(pool);
        expect_clean(after_commit, "after COMMIT");

        // Committed by the handler itself, with its last statement.
        auto self_committed = [](TenantTx& tx) -> asio::awaitable<void> {
            Query count = q("SELECT count(*) FROM vehicles");
            co_await tx.query_and_commit(std::move(count));
        };
        co_await tenancy::with_tenant(pool, s.b, after(10s), self_committed);
        const SessionState after_own_commit = co_await session_state(pool);
        expect_clean(after_own_commit, "after query_and_commit");

        // Rolled back: the handler throws after a write, which must not persist.
        bool rolled_back = false;
        auto throwing = [](TenantTx& tx) -> asio::awaitable<void> {
            Query insert =
                q("INSERT INTO vehicles (id, plate) VALUES ($1, 'ROLLED-BACK')", util::to_string(util::uuid_v7()));
            co_await tx.query(std::move(insert));
            throw std::runtime_error("handler failed");
        };
        try {
            co_await tenancy::with_tenant(pool, s.a, after(10s), throwing);
        } catch (const std::runtime_error& e) {
            rolled_back = std::string(e.what()) == "handler failed";
        }
        EXPECT_TRUE(rolled_back) << "the handler's exception did not come back unchanged";
        const SessionState after_rollback = co_await session_state(pool);
        expect_clean(after_rollback, "after a handler exception");
        auto a_now = co_await vehicle_ids_in(pool, s.a, "SELECT id FROM vehicles");
        EXPECT_EQ(as_set(a_now), s.a_ids) << "the rolled-back insert persisted";

        // Failed mid-way: the second statement fails in the server.
        auto failing = [](TenantTx& tx) -> asio::awaitable<void> {
            Query ok = q("SELECT count(*) FROM vehicles");
            co_await tx.query(std::move(ok));
            Query bad = q("SELECT 1 / (count(*) - count(*)) FROM vehicles");
            co_await tx.query(std::move(bad));
        };
        auto err = co_await error_of(tenancy::with_tenant(pool, s.b, after(10s), failing));
        EXPECT_TRUE(err.has_value());
        if (err) {
            EXPECT_EQ(err->sqlstate(), "22012") << describe(err);
        }
        const SessionState after_failure = co_await session_state(pool);
        expect_clean(after_failure, "after a failed statement");

        // Failed in the set-up batch itself (the first statement is an error) and in a batch.
        auto failing_first = [](TenantTx& tx) -> asio::awaitable<void> {
            std::vector<Query> batch;
            batch.push_back(q("SELECT count(*) FROM no_such_table"));
            batch.push_back(q("SELECT count(*) FROM vehicles"));
            co_await tx.execute(batch);
        };
        auto err2 = co_await error_of(tenancy::with_tenant(pool, s.a, after(10s), failing_first));
        EXPECT_TRUE(err2.has_value());
        const SessionState after_failed_setup = co_await session_state(pool);
        expect_clean(after_failed_setup, "after a failure in the first batch");
    });
}

struct Tally {
    int transactions = 0;
    int foreign_rows = 0;    // rows of the other tenant
    int wrong_counts = 0;    // results that were not exactly the tenant's own rows
    int wrong_identity = 0;  // current_user not the tenant's role
    std::string first_problem;
};

asio::awaitable<void> alternate(pg::Pool& pool, const Pair& s, int worker, int count, Tally& tally) {
    for (int i = 0; i < count; ++i) {
        const bool use_a = (worker + i) % 2 == 0;
        const Tenant& t = use_a ? s.a : s.b;
        const std::set<std::string>& own = use_a ? s.a_ids : s.b_ids;
        const std::set<std::string>& theirs = use_a ? s.b_ids : s.a_ids;
        auto body = [&](TenantTx& tx) -> asio::awaitable<void> {
            std::vector<Query> batch;
            batch.push_back(q("SELECT id FROM vehicles"));
            batch.push_back(q("SELECT current_user"));
            auto r = co_await tx.execute(batch);
            int own_rows = 0;
            for (const auto& id : column_of(r[0])) {
                if (own.count(id) != 0) {
                    ++own_rows;
                } else {
                    if (theirs.count(id) != 0) ++tally.foreign_rows;
                    if (tally.first_problem.empty()) tally.first_problem = t.schema + " saw " + id;
                }
            }
            if (own_rows != static_cast<int>(own.size()) || r[0].rows() != own_rows) ++tally.wrong_counts;
            if (r[1].text(0, 0) != t.role) ++tally.wrong_identity;
        };
        co_await tenancy::with_tenant(pool, t, after(20s), body);
        ++tally.transactions;
    }
}

TEST_F(Tenancy, two_thousand_interleaved_transactions_of_two_tenants_never_see_each_others_rows) {
    const Pair& s = pair();
    Tally tally;
    std::size_t statements_cached = 0;
    const auto start = Clock::now();
    run(
        [&](asio::io_context& ioc) -> asio::awaitable<void> {
            pg::Pool pool(ioc, pool_options(2));
            Join join(ioc);
            constexpr int kWorkers = 8;
            constexpr int kEach = 250;
            for (int w = 0; w < kWorkers; ++w)
                asio::co_spawn(ioc, alternate(pool, s, w, kEach, tally), join.handler());
            const bool finished = co_await join.wait(100s);
            EXPECT_TRUE(finished);
            EXPECT_TRUE(join.errors().empty()) << join.errors().front();
            auto lease = co_await pool.acquire(after(5s));
            statements_cached = lease->cached_statements();
            EXPECT_LE(pool.stats().total, 2u);
        },
        120s);
    const auto took = since(start);
    std::printf("2000 tenant transactions over 2 connections: %lld ms\n", static_cast<long long>(took.count()));
    EXPECT_EQ(tally.transactions, 2000);
    EXPECT_EQ(tally.foreign_rows, 0) << tally.first_problem;
    EXPECT_EQ(tally.wrong_counts, 0) << tally.first_problem;
    EXPECT_EQ(tally.wrong_identity, 0);
    // The statements were prepared once per tenant on a connection and reused from then on.
    EXPECT_GE(statements_cached, 2u);
    EXPECT_LE(statements_cached, 6u);
}

// What one tenant transaction saw: its backend, its identity, and the vehicles it read.
struct Seen {
    int pid = 0;
    std::string user;
    std::set<std::string> ids;
};

asio::awaitable<Seen> seen_in(pg::Pool& pool, const Tenant& t) {
    Seen seen;
    auto body = [&seen](TenantTx& tx) -> asio::awaitable<void> {
        std::vector<Query> batch;
        batch.push_back(q("SELECT pg_backend_pid(), current_user"));
        batch.push_back(q("SELECT id FROM vehicles WHERE plate <> $1", std::string("no such plate")));
        auto r = co_await tx.execute(batch);
        seen.pid = static_cast<int>(r[0].int64(0, 0));
        seen.user = std::string(r[0].text(0, 1));
        seen.ids = as_set(column_of(r[1]));
    };
    co_await tenancy::with_tenant(pool, t, after(10s), body);
    co_return seen;
}

TEST_F(Tenancy, a_tenant_gets_the_idle_connection_it_used_last_and_still_sees_only_its_rows) {
    const Pair& s = pair();
    run([&s](asio::io_context& ioc) -> asio::awaitable<void> {
        pg::Pool pool(ioc, pool_options(2));
        {  // two connections, idle and unlabelled
            auto l1 = co_await pool.acquire(after(5s));
            auto l2 = co_await pool.acquire(after(5s));
        }
        // The first use of each tenant takes the connection idle the longest and labels it.
        const Seen a1 = co_await seen_in(pool, s.a);
        const Seen b1 = co_await seen_in(pool, s.b);
        EXPECT_NE(a1.pid, b1.pid);
        for (int i = 0; i < 5; ++i) {
            const Seen a = co_await seen_in(pool, s.a);
            const Seen b = co_await seen_in(pool, s.b);
            const Seen b2 = co_await seen_in(pool, s.b);
            EXPECT_EQ(a.pid, a1.pid);
            EXPECT_EQ(b.pid, b1.pid);
            EXPECT_EQ(b2.pid, b1.pid);
            EXPECT_EQ(a.user, s.a.role);
            EXPECT_EQ(b.user, s.b.role);
            EXPECT_EQ(a.ids, s.a_ids);
            EXPECT_EQ(b.ids, s.b_ids);
            EXPECT_EQ(b2.ids, s.b_ids);
        }
        EXPECT_EQ(pool.stats().affinity_hits, 15u);
        EXPECT_EQ(pool.stats().connects, 2u);
        // Outside a tenant transaction the connection carries nothing of the tenant.
        const SessionState after_all = co_await session_state(pool);
        EXPECT_NE(after_all.user, s.a.role);
        EXPECT_NE(after_all.user, s.b.role);
        EXPECT_EQ(after_all.search_path, "\"$user\", public");
    });
}

TEST_F(Tenancy, tenants_sharing_one_connection_keep_prepared_statements_of_their_own) {
    const Pair& s = pair();
    run([&s](asio::io_context& ioc) -> asio::awaitable<void> {
        pg::Pool pool(ioc, pool_options(1));  // every transaction on one connection, tenants in turn
        for (int i = 0; i < 6; ++i) {
            const Seen a = co_await seen_in(pool, s.a);
            const Seen b = co_await seen_in(pool, s.b);
            EXPECT_EQ(a.ids, s.a_ids);
            EXPECT_EQ(b.ids, s.b_ids);
            EXPECT_EQ(a.user, s.a.role);
            EXPECT_EQ(b.user, s.b.role);
        }
        auto lease = co_await pool.acquire(after(5s));
        // The binding, the two statements: once per tenant, prepared once and reused since.
        EXPECT_EQ(lease->cached_statements(), 6u);
        Query count = q("SELECT count(*) FROM pg_prepared_statements WHERE statement = $1",
                        std::string("SELECT id FROM vehicles WHERE plate <> $1"));
        count.prepare = false;
        auto r = co_await lease->query(std::move(count), after(5s));
        EXPECT_EQ(r.int64(0, 0), 2);
        EXPECT_FALSE(lease->in_transaction());
    });
}

// ------------------------------------------------------------------------------ provisioning

TEST_F(Tenancy, provisioning_creates_schema_role_tables_admin_and_catalog_row) {
    SlugCleanup cleanup;
    const std::string slug = cleanup.add(unique_slug("prov-ok"));
    const std::string slug_gen = cleanup.add(unique_slug("prov-gen"));
    tenancy::ProvisionResult given, generated;
    run(
        [&](asio::io_context& ioc) -> asio::awaitable<void> {
            auto with_password = request(slug, kPassword);
            given = co_await provision_on(ioc, std::move(with_password));
            auto without_password = request(slug_gen, std::nullopt);
            generated = co_await provision_on(ioc, std::move(without_password));
        },
        60s);

    const Tenant& t = given.tenant;
    ASSERT_TRUE(util::parse_uuid(t.id_text).has_value()) << t.id_text;
    const std::string schema = tenancy::schema_name_for(*util::parse_uuid(t.id_text));
    EXPECT_EQ(t.schema, schema);
    EXPECT_EQ(t.role, schema);
    EXPECT_EQ(t.slug, slug);
    EXPECT_EQ(t.status, "active");
    EXPECT_EQ(t.schema_version, migrate::tenant_head());
    EXPECT_FALSE(given.password_generated);
    EXPECT_EQ(given.admin_password, kPassword);

    AdminSession su(superuser_url());
    // Schema owned by the tenant role.
    EXPECT_EQ(su.value("SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = " + lit(schema)), schema);
    // A role that cannot log in or do anything beyond its schema.
    EXPECT_EQ(su.value("SELECT format('login=%s super=%s createrole=%s createdb=%s replication=%s bypassrls=%s', "
                       "rolcanlogin, rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls) "
                       "FROM pg_roles WHERE rolname = " +
                       lit(schema)),
              "login=f super=f createrole=f createdb=f replication=f bypassrls=f");
    // The login role may SET ROLE to it but holds none of its rights.
    const std::string login = AdminSession(database_url()).value("SELECT current_user");
    EXPECT_EQ(su.value("SELECT format('%s %s', pg_has_role(" + lit(login) + ", " + lit(schema) + ", 'MEMBER'), " +
                       "has_schema_privilege(" + lit(login) + ", " + lit(schema) + ", 'USAGE'))"),
              "t f");
    // Tables, all the tenant role's.
    EXPECT_EQ(su.value("SELECT string_agg(tablename || ':' || tableowner, ',' ORDER BY tablename) FROM pg_tables "
                       "WHERE schemaname = " +
                       lit(schema)),
              "drivers:" + schema + ",schema_migrations:" + schema + ",trips:" + schema + ",users:" + schema +
                  ",vehicles:" + schema);
    EXPECT_EQ(su.value("SELECT count(*) FROM " + schema + ".schema_migrations"),
              std::to_string(migrate::tenant_head()));
    // Nothing in the schema belongs to anybody else.
    EXPECT_EQ(su.value("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                       "WHERE n.nspname = " +
                       lit(schema) + " AND pg_get_userbyid(c.relowner) <> " + lit(schema)),
              "0");
    // The first admin.
    EXPECT_EQ(su.value("SELECT count(*) FROM " + schema + ".users"), "1");
    EXPECT_EQ(su.value("SELECT id::text FROM " + schema + ".users"), given.admin_user_id);
    EXPECT_EQ(su.value("SELECT format('%s %s', email, role) FROM " + schema + ".users"), given.admin_email + " admin");
    EXPECT_EQ(given.admin_email, "admin@" + slug + ".example.com");
    const std::string hash = su.value("SELECT password_hash FROM " + schema + ".users");
    EXPECT_EQ(hash.rfind("$argon2id$", 0), 0u) << hash;
    EXPECT_NE(hash.find("m=19456,t=2,p=1"), std::string::npos) << hash;
    EXPECT_TRUE(auth::PasswordHasher::verify_now(hash, kPassword));
    EXPECT_FALSE(auth::PasswordHasher::verify_now(hash, kPassword + "x"));
    // The catalog row.
    EXPECT_EQ(su.value("SELECT format('%s|%s|%s|%s|%s|%s', slug, status, plan, schema_name, role_name, "
                       "schema_version) FROM platform.tenants WHERE id = " +
                       lit(t.id_text)),
              slug + "|active|standard|" + schema + "|" + schema + "|" + std::to_string(migrate::tenant_head()));

    // A generated password: long enough, shown once, and it is the admin's password.
    EXPECT_TRUE(generated.password_generated);
    EXPECT_GE(generated.admin_password.size(), 16u);
    const std::string gen_hash = su.value("SELECT password_hash FROM " + generated.tenant.schema + ".users");
    EXPECT_EQ(gen_hash.rfind("$argon2id$", 0), 0u) << gen_hash;
    EXPECT_TRUE(auth::PasswordHasher::verify_now(gen_hash, generated.admin_password));
}

// A trigger on platform.tenants that fails the provisioner's last catalog update for one slug:
// by then the role, the schema, every tenant table and the admin user exist in the transaction.
// The message reports what existed at that moment. Dropped (with its schema) on destruction.
class FailingCatalogUpdate {
  public:
    explicit FailingCatalogUpdate(const std::string& slug)
        : su_(superuser_url()), schema_("tenancytest_" + util::to_hex(util::uuid_v7()).substr(20)) {
        su_.exec("SET lock_timeout = '10s'");
        su_.exec("CREATE SCHEMA " + schema_);
        su_.exec("CREATE FUNCTION " + schema_ +
                 ".fail() RETURNS trigger LANGUAGE plpgsql AS $fn$ BEGIN "
                 "RAISE EXCEPTION 'injected failure for % (schema=% tables=%)', NEW.schema_name, "
                 "(SELECT count(*) FROM pg_catalog.pg_namespace WHERE nspname = NEW.schema_name), "
                 "(SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname = NEW.schema_name); "
                 "END $fn$");
        su_.exec("CREATE TRIGGER " + schema_ + " BEFORE UPDATE OF schema_version ON platform.tenants FOR EACH ROW " +
                 "WHEN (NEW.slug = " + lit(slug) + ") EXECUTE FUNCTION " + schema_ + ".fail()");
    }
    ~FailingCatalogUpdate() {
        try {
            su_.exec("DROP SCHEMA " + schema_ + " CASCADE");  // takes the trigger with it
        } catch (const std::exception& e) {
            std::fprintf(stderr, "failure injection %s was not removed: %s\n", schema_.c_str(), e.what());
        }
    }
    FailingCatalogUpdate(const FailingCatalogUpdate&) = delete;
    FailingCatalogUpdate& operator=(const FailingCatalogUpdate&) = delete;

  private:
    AdminSession su_;
    std::string schema_;
};

TEST_F(Tenancy, a_failure_after_the_schema_exists_leaves_nothing_behind) {
    SlugCleanup cleanup;
    const std::string slug = cleanup.add(unique_slug("failinject"));
    const Orphans before = orphans();
    std::optional<pg::Error> failure;
    bool connection_usable = false;
    {
        FailingCatalogUpdate inject(slug);
        run(
            [&](asio::io_context& ioc) -> asio::awaitable<void> {
                auto conn = co_await connect(ioc);
                auto req = request(slug, kPassword);
                failure = co_await error_of(tenancy::provision(*conn, hasher(), std::move(req), after(30s)));
                EXPECT_FALSE(conn->in_transaction());
                Query ping = q("SELECT 1");
                auto r = co_await conn->query(std::move(ping), after(5s));
                connection_usable = r.rows() == 1;
            },
            60s);
    }
    ASSERT_TRUE(failure.has_value()) << "provisioning succeeded despite the injected failure";
    const std::string message = failure->what();
    std::smatch m;
    ASSERT_TRUE(std::regex_search(message, m,
                                  std::regex("injected failure for (tenant_[0-9a-f]{32}) \\(schema=1 "
                                             "tables=([0-9]+)\\)")))
        << describe(failure);
    const std::string schema = m[1];
    EXPECT_EQ(std::string(m[2]), "5") << "the failure came before every tenant table existed";
    EXPECT_TRUE(connection_usable);

    AdminSession su(superuser_url());
    EXPECT_EQ(catalog_rows_with_slug(su, slug), "0");
    EXPECT_FALSE(schema_exists(su, schema));
    EXPECT_FALSE(role_exists(su, schema));
    EXPECT_EQ(orphans(), before);
}

TEST_F(Tenancy, invalid_input_is_refused_before_anything_is_created) {
    SlugCleanup cleanup;
    const std::string good_slug = cleanup.add(unique_slug("prov-bad"));
    const Orphans before = orphans();

    struct Case {
        tenancy::ProvisionRequest req;
        std::string field;
    };
    std::vector<Case> cases;
    cases.push_back(Case{request("Bad_Slug", kPassword), "slug"});
    cases.push_back(Case{request("ab", kPassword), "slug"});
    cases.push_back(Case{request(good_slug, std::string("short")), "admin_password"});
    cases.push_back(Case{request(good_slug, std::string(129, 'p')), "admin_password"});
    auto bad_email = request(good_slug, kPassword);
    bad_email.admin_email = "not an email";
    cases.push_back(Case{bad_email, "admin_email"});
    auto bad_plan = request(good_slug, kPassword);
    bad_plan.plan = "gold";
    cases.push_back(Case{bad_plan, "plan"});
    auto bad_name = request(good_slug, kPassword);
    bad_name.name = "";
    cases.push_back(Case{bad_name, "name"});

    for (const auto& c : cases) {
        std::vector<std::string> fields;
        std::string other;
        run([&](asio::io_context& ioc) -> asio::awaitable<void> {
            auto conn = co_await connect(ioc);
            try {
                tenancy::ProvisionRequest req = c.req;
                co_await tenancy::provision(*conn, hasher(), std::move(req), after(30s));
                other = "succeeded";
            } catch (const tenancy::InvalidTenantInput& e) {
                for (const auto& issue : e.issues)
                    fields.push_back(issue.field);
            } catch (const std::exception& e) {
                other = e.what();
            }
        });
        EXPECT_EQ(other, "") << c.field;
        EXPECT_EQ(fields, std::vector<std::string>{c.field}) << "slug '" << c.req.slug << "'";
    }
    AdminSession su(superuser_url());
    EXPECT_EQ(catalog_rows_with_slug(su, good_slug), "0");
    EXPECT_EQ(catalog_rows_with_slug(su, "Bad_Slug"), "0");
    EXPECT_EQ(orphans(), before);
}

TEST_F(Tenancy, two_concurrent_creates_of_one_slug_one_succeeds_the_other_gets_slug_taken) {
    SlugCleanup cleanup;
    const std::string slug = cleanup.add(unique_slug("prov-race"));
    const Orphans before = orphans();
    auth::PasswordHasher two_threads(2, 8, owasp_params());  // both hash at once, then race
    int succeeded = 0;
    int taken = 0;
    std::vector<std::string> other;
    std::string winner_schema;
    run(
        [&](asio::io_context& ioc) -> asio::awaitable<void> {
            auto c1 = co_await connect(ioc);
            auto c2 = co_await connect(ioc);
            auto attempt = [&](pg::Connection& conn) -> asio::awaitable<void> {
                try {
                    auto req = request(slug, kPassword);
                    auto r = co_await tenancy::provision(conn, two_threads, std::move(req), after(30s));
                    ++succeeded;
                    winner_schema = r.tenant.schema;
                } catch (const tenancy::SlugTaken&) {
                    ++taken;
                } catch (const std::exception& e) {
                    other.push_back(e.what());
                }
                EXPECT_FALSE(conn.in_transaction());
            };
            Join join(ioc);
            asio::co_spawn(ioc, attempt(*c1), join.handler());
            asio::co_spawn(ioc, attempt(*c2), join.handler());
            const bool finished = co_await join.wait(50s);
            EXPECT_TRUE(finished);
        },
        60s);
    EXPECT_EQ(succeeded, 1);
    EXPECT_EQ(taken, 1);
    EXPECT_TRUE(other.empty()) << other.front();

    AdminSession su(superuser_url());
    EXPECT_EQ(catalog_rows_with_slug(su, slug), "1");
    EXPECT_EQ(su.value("SELECT schema_name FROM platform.tenants WHERE slug = " + lit(slug)), winner_schema);
    EXPECT_TRUE(schema_exists(su, winner_schema));
    EXPECT_TRUE(role_exists(su, winner_schema));
    // The loser left no schema or role: exactly one of each more, and it is the winner's.
    EXPECT_EQ(orphans(), before);
}

TEST_F(Tenancy, remove_drops_schema_role_and_catalog_row_and_the_tenant_is_gone) {
    SlugCleanup cleanup;
    const std::string slug = cleanup.add(unique_slug("prov-del"));
    Tenant t;
    bool removed = false;
    std::optional<pg::Error> after_removal;
    bool pool_still_serves = false;
    run(
        [&](asio::io_context& ioc) -> asio::awaitable<void> {
            auto req = request(slug, kPassword);
            auto r = co_await provision_on(ioc, std::move(req));
            t = r.tenant;
            pg::Pool pool(ioc, pool_options(1));
            co_await insert_vehicles(pool, t, 3, "D-");
            auto conn = co_await connect(ioc);
            removed = co_await tenancy::remove(*conn, t, after(30s));
            after_removal = co_await error_of(vehicle_ids_in(pool, t, "SELECT id FROM vehicles"));
            auto lease = co_await pool.acquire(after(5s));
            Query ping = q("SELECT 1");
            auto pong = co_await lease->query(std::move(ping), after(5s));
            pool_still_serves = pong.rows() == 1;
        },
        60s);
    EXPECT_TRUE(removed);
    AdminSession su(superuser_url());
    EXPECT_EQ(catalog_rows_with_slug(su, slug), "0");
    EXPECT_FALSE(schema_exists(su, t.schema));
    EXPECT_FALSE(role_exists(su, t.role));
    ASSERT_TRUE(after_removal.has_value()) << "a transaction of the removed tenant succeeded";
    std::printf("tenant transaction after removal: %s\n", describe(after_removal).c_str());
    EXPECT_NE(std::string(after_removal->what()).find("does not exist"), std::string::npos) << describe(after_removal);
    EXPECT_TRUE(pool_still_serves);
}

// ------------------------------------------------------------------------------ catalog

// Polls the catalog every 20 ms until `pred` holds; the time it took, or nullopt after `limit`.
template <class Pred>
asio::awaitable<std::optional<milliseconds>> until(Pred pred, milliseconds limit) {
    const auto start = Clock::now();
    while (!pred()) {
        if (since(start) > limit) co_return std::nullopt;
        co_await sleep_for(20ms);
    }
    co_return since(start);
}

TEST_F(Tenancy, catalog_sees_status_changes_within_a_second_and_reads_unknown_tenants_from_the_database) {
    SlugCleanup cleanup;
    const std::string slug = cleanup.add(unique_slug("cat-status"));
    const std::string late_slug = cleanup.add(unique_slug("cat-late"));
    std::optional<milliseconds> suspended_after, created_after, removed_after;
    run(
        [&](asio::io_context& ioc) -> asio::awaitable<void> {
            auto req = request(slug, kPassword);
            auto provisioned = co_await provision_on(ioc, std::move(req));
            const Tenant t = provisioned.tenant;

            tenancy::Catalog live;
            auto stop = std::make_shared<std::atomic<bool>>(false);
            Join refresher(ioc);
            asio::co_spawn(ioc, live.run_refresher(ioc, options(), stop), refresher.handler());
            auto has_tenant = [&] { return live.find_id(t.id_text) != nullptr; };
            auto loaded = co_await until(has_tenant, 5s);
            EXPECT_TRUE(loaded.has_value()) << "the refresher never loaded the snapshot";
            if (loaded) {
                EXPECT_EQ(live.find_id(t.id_text)->status, "active");
                EXPECT_EQ(live.find_slug(slug)->id_text, t.id_text);
            }

            // A status change made elsewhere.
            auto admin = co_await connect(ioc);
            const auto start = Clock::now();
            const std::string suspended = "suspended";
            const bool changed = co_await tenancy::set_status(*admin, t.id_text, suspended, after(5s));
            EXPECT_TRUE(changed);
            auto is_suspended = [&] {
                auto now = live.find_id(t.id_text);
                return now != nullptr && now->status == suspended;
            };
            auto seen = co_await until(is_suspended, 3s);
            if (seen) suspended_after = since(start);

            // A catalog loaded before a tenant existed reads it from the database on a miss.
            tenancy::Catalog cold;
            co_await cold.reload(*admin, after(5s));
            EXPECT_NE(cold.find_id(t.id_text), nullptr);
            auto late_req = request(late_slug, kPassword);
            auto late = co_await provision_on(ioc, std::move(late_req));
            const auto late_created = Clock::now();
            EXPECT_EQ(cold.find_id(late.tenant.id_text), nullptr);
            pg::Pool pool(ioc, pool_options(1));
            auto found = co_await cold.lookup_id(pool, late.tenant.id_text);
            EXPECT_NE(found, nullptr);
            if (found) {
                EXPECT_EQ(found->slug, late_slug);
                EXPECT_EQ(found->schema, late.tenant.schema);
                EXPECT_EQ(found->status, "active");
            }
            EXPECT_NE(cold.find_id(late.tenant.id_text), nullptr) << "the database read was not kept";
            auto found_by_slug = co_await cold.lookup_slug(pool, late_slug);
            EXPECT_NE(found_by_slug, nullptr);
            const std::string unknown_id = util::to_string(util::uuid_v7());
            auto unknown = co_await cold.lookup_id(pool, unknown_id);
            EXPECT_EQ(unknown, nullptr);
            const std::string unknown_slug_text = unique_slug("cat-none");
            auto unknown_slug = co_await cold.lookup_slug(pool, unknown_slug_text);
            EXPECT_EQ(unknown_slug, nullptr);
            const std::string garbage = "not-a-uuid";
            auto not_an_id = co_await cold.lookup_id(pool, garbage);
            EXPECT_EQ(not_an_id, nullptr);

            // The live catalog got the new tenant by notification, and loses a removed one.
            auto has_late = [&] { return live.find_id(late.tenant.id_text) != nullptr; };
            auto arrived = co_await until(has_late, 3s);
            if (arrived) created_after = since(late_created);
            const auto remove_start = Clock::now();
            co_await tenancy::remove(*admin, late.tenant, after(30s));
            auto lost_late = [&] { return live.find_id(late.tenant.id_text) == nullptr; };
            auto gone = co_await until(lost_late, 3s);
            if (gone) removed_after = since(remove_start);

            stop->store(true);
            const bool stopped = co_await refresher.wait(5s);
            EXPECT_TRUE(stopped) << "the refresher did not stop";
            EXPECT_TRUE(refresher.errors().empty()) << refresher.errors().front();
        },
        60s);
    ASSERT_TRUE(suspended_after.has_value()) << "the status change never reached the catalog";
    std::printf("catalog latency: suspended %lld ms", static_cast<long long>(suspended_after->count()));
    if (created_after) std::printf(", created %lld ms", static_cast<long long>(created_after->count()));
    if (removed_after) std::printf(", removed %lld ms", static_cast<long long>(removed_after->count()));
    std::printf("\n");
    EXPECT_LE(suspended_after->count(), 1000);
    ASSERT_TRUE(created_after.has_value()) << "a new tenant never reached the live catalog";
    EXPECT_LE(created_after->count(), 1000);
    ASSERT_TRUE(removed_after.has_value()) << "a removed tenant stayed in the live catalog";
    EXPECT_LE(removed_after->count(), 1000);
}

}  // namespace
}  // namespace mtapi::pgtest
