// Migrations against the test PostgreSQL (MTAPI_DATABASE_URL, the login role; `make test` starts
// it). Each test creates its own tenants directly in SQL, as provisioning would leave them before
// any tenant migration (role, schema owned by it, catalog row at version 0), runs the migrator on
// exactly those tenants (RunOptions::tenant_ids) and drops them again. Streams with an extra
// tenant migration are built in memory: the embedded files cannot change under a test.

#include <gtest/gtest.h>
#include <signal.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "harness.hpp"
#include "migrate/migrations.hpp"
#include "migrate/runner.hpp"
#include "pg/connection.hpp"
#include "util/uuid.hpp"

namespace mtapi::migrate {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;

std::string env(const char* name) {
    const char* v = std::getenv(name);
    return v == nullptr ? std::string() : std::string(v);
}

pg::Deadline soon() {
    return pg::Clock::now() + 60s;
}

template <class T>
T run_sync(asio::io_context& ioc, asio::awaitable<T> work) {
    std::optional<T> out;
    std::exception_ptr failure;
    asio::co_spawn(ioc, std::move(work), [&](std::exception_ptr e, T value) {
        if (e)
            failure = e;
        else
            out = std::move(value);
    });
    ioc.restart();
    ioc.run();
    if (failure) std::rethrow_exception(failure);
    return std::move(*out);
}

void run_sync(asio::io_context& ioc, asio::awaitable<void> work) {
    std::exception_ptr failure;
    asio::co_spawn(ioc, std::move(work), [&](std::exception_ptr e) { failure = e; });
    ioc.restart();
    ioc.run();
    if (failure) std::rethrow_exception(failure);
}

// A blocking session as the login role, for setting up and checking what the migrator did.
class Db {
  public:
    explicit Db(std::string url = env("MTAPI_DATABASE_URL")) {
        pg::ConnectOptions options;
        options.url = std::move(url);
        conn_ = run_sync(ioc_, pg::Connection::connect(ioc_, options));
    }

    void script(const std::string& sql) { run_sync(ioc_, conn_->execute_script(sql, soon())); }

    pg::Result query(const std::string& sql, std::vector<std::optional<std::string>> params = {}) {
        return run_sync(ioc_, conn_->query(pg::Query{sql, std::move(params), false}, soon()));
    }

    std::string value(const std::string& sql, std::vector<std::optional<std::string>> params = {}) {
        pg::Result r = query(sql, std::move(params));
        return r.rows() > 0 ? std::string(r.text(0, 0)) : std::string();
    }

    std::int64_t number(const std::string& sql, std::vector<std::optional<std::string>> params = {}) {
        pg::Result r = query(sql, std::move(params));
        return r.int64(0, 0);
    }

    asio::io_context& ioc() { return ioc_; }
    pg::Connection& conn() { return *conn_; }

  private:
    asio::io_context ioc_;
    std::unique_ptr<pg::Connection> conn_;
};

struct TestTenant {
    std::string id;
    std::string slug;
    std::string schema;
};

// Tenants as provisioning creates them before the tenant stream runs. Dropped on destruction,
// each in its own transaction (a schema holds a few dozen objects; one transaction for hundreds
// of schemas would run out of lock slots).
class TenantSet {
  public:
    TenantSet(Db& db, std::size_t count) : db_(db) {
        constexpr std::size_t kChunk = 50;
        for (std::size_t done = 0; done < count; done += kChunk) {
            std::vector<TestTenant> chunk;
            std::string sql;
            for (std::size_t i = done; i < std::min(count, done + kChunk); ++i) {
                auto id = util::uuid_v7();
                TestTenant t{util::to_string(id), "mig-" + util::to_hex(id), "tenant_" + util::to_hex(id)};
                sql += "CREATE ROLE " + t.schema + " NOLOGIN; GRANT " + t.schema + " TO CURRENT_USER; CREATE SCHEMA " +
                       t.schema + " AUTHORIZATION " + t.schema +
                       "; INSERT INTO platform.tenants (id, slug, name, schema_name, role_name) VALUES ('" + t.id +
                       "', '" + t.slug + "', 'Migration test', '" + t.schema + "', '" + t.schema + "');\n";
                chunk.push_back(std::move(t));
            }
            db_.script(sql);
            tenants_.insert(tenants_.end(), chunk.begin(), chunk.end());
        }
    }
    // On a connection of its own: the test's may be broken or inside a failed transaction.
    ~TenantSet() {
        std::optional<Db> db;
        try {
            db.emplace();
        } catch (const std::exception& e) {
            ADD_FAILURE() << "cleanup: " << e.what();
            return;
        }
        for (const auto& t : tenants_) {
            try {
                db->script("SET ROLE " + t.schema + "; DROP SCHEMA IF EXISTS " + t.schema + " CASCADE; RESET ROLE; " +
                           "DROP ROLE IF EXISTS " + t.schema + "; DELETE FROM platform.tenants WHERE id = '" + t.id +
                           "'");
            } catch (const std::exception& e) {
                ADD_FAILURE() << "cleanup of " << t.schema << ": " << e.what();
            }
        }
    }
    TenantSet(const TenantSet&) = delete;
    TenantSet& operator=(const TenantSet&) = delete;

    const std::vector<TestTenant>& tenants() const { return tenants_; }
    const TestTenant& operator[](std::size_t i) const { return tenants_[i]; }
    std::size_t size() const { return tenants_.size(); }
    std::vector<std::string> ids() const {
        std::vector<std::string> out;
        for (const auto& t : tenants_)
            out.push_back(t.id);
        return out;
    }
    // '{id,id,…}' for `= ANY(…::uuid[])`.
    std::string id_array() const {
        std::string out = "{";
        for (const auto& t : tenants_)
            out += (out.size() > 1 ? "," : "") + t.id;
        return out + "}";
    }

  private:
    Db& db_;
    std::vector<TestTenant> tenants_;
};

// A stream held in memory: the embedded tenant files plus `extra` files appended, or with one
// file's text replaced.
class OwnedStream {
  public:
    explicit OwnedStream(migrate::Stream base) : list_(base.begin(), base.end()) {}

    OwnedStream& add(std::string name_suffix, std::string sql) {
        int version = static_cast<int>(list_.size()) + 1;
        char prefix[16];
        std::snprintf(prefix, sizeof prefix, "%04d_", version);
        keep(std::string(prefix) + name_suffix + ".sql", std::move(sql));
        list_.push_back({version, names_.back(), texts_.back(), sums_.back()});
        return *this;
    }
    OwnedStream& edit(std::size_t index, std::string sql) {
        keep(std::string(list_[index].name), std::move(sql));
        list_[index].sql = texts_.back();
        list_[index].checksum = sums_.back();
        return *this;
    }
    migrate::Stream stream() const { return list_; }
    int head() const { return static_cast<int>(list_.size()); }

  private:
    void keep(std::string name, std::string sql) {
        names_.push_back(std::move(name));
        sums_.push_back(sha256_hex(sql));
        texts_.push_back(std::move(sql));
    }
    // Deques keep the texts in place while the list points at them.
    std::deque<std::string> names_, texts_, sums_;
    std::vector<Migration> list_;
};

OwnedStream with_extra_table() {
    OwnedStream s(tenant_migrations());
    s.add("extra_test", "CREATE TABLE extra_test (id integer PRIMARY KEY);\nINSERT INTO extra_test VALUES (1);\n");
    return s;
}

RunOptions options_for(const TenantSet& set, std::optional<migrate::Stream> tenant = std::nullopt) {
    RunOptions o;
    o.database_url = env("MTAPI_DATABASE_URL");
    o.concurrency = 4;
    o.timeout = 60s;
    o.tenant_ids = set.ids();
    o.tenant = tenant;
    return o;
}

Report run(RunOptions options) {
    asio::io_context ioc;
    return run_sync(ioc, run_all(ioc, std::move(options)));
}

class Migrate : public ::testing::Test {
  protected:
    static void SetUpTestSuite() {
        if (env("MTAPI_DATABASE_URL").empty()) return;
        // Every test below relies on platform.tenants; a no-op when the platform is at head.
        Db db;
        run_sync(db.ioc(), migrate_platform(db.conn(), soon()));
    }
    void SetUp() override {
        if (env("MTAPI_DATABASE_URL").empty())
            GTEST_SKIP() << "MTAPI_DATABASE_URL is not set (source .var/test.env after scripts/services up --test)";
    }

    // Catalog versions of the set's tenants: version → how many tenants.
    std::map<int, int> versions(Db& db, const TenantSet& set) {
        pg::Result r =
            db.query("SELECT schema_version, count(*) FROM platform.tenants WHERE id = ANY($1::uuid[]) GROUP BY 1",
                     {set.id_array()});
        std::map<int, int> out;
        for (int i = 0; i < r.rows(); ++i)
            out[static_cast<int>(r.int64(i, 0))] = static_cast<int>(r.int64(i, 1));
        return out;
    }

    // The versions recorded in a tenant's schema_migrations ("1,2"); empty when it has none. The
    // login role reads it as the tenant's role (it inherits nothing).
    std::string applied(Db& db, const TestTenant& t) {
        if (db.number("SELECT count(*) FROM pg_tables WHERE schemaname = $1 AND tablename = 'schema_migrations'",
                      {t.schema}) == 0)
            return {};
        db.script("SET ROLE " + t.schema);
        std::string v;
        try {
            v = db.value("SELECT coalesce(string_agg(version::text, ',' ORDER BY version), '') FROM " + t.schema +
                         ".schema_migrations");
        } catch (...) {
            db.script("RESET ROLE");
            throw;
        }
        db.script("RESET ROLE");
        return v;
    }

    std::string expected_list(int head) {
        std::string out;
        for (int v = 1; v <= head; ++v)
            out += (out.empty() ? "" : ",") + std::to_string(v);
        return out;
    }
};

TEST_F(Migrate, brings_new_tenants_to_head_as_their_own_role) {
    Db db;
    TenantSet set(db, 3);
    Report r = run(options_for(set));
    EXPECT_EQ(r.tenant_head, tenant_head());
    EXPECT_EQ(r.tenants_total, 3u);
    EXPECT_EQ(r.tenants_migrated, 3u);
    EXPECT_EQ(r.tenants_failed, 0u);
    EXPECT_EQ(versions(db, set), (std::map<int, int>{{tenant_head(), 3}}));
    for (const auto& t : set.tenants()) {
        EXPECT_EQ(applied(db, t), expected_list(tenant_head()));
        // Everything in the schema belongs to the tenant's role; the login role owns nothing there.
        EXPECT_EQ(db.number("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                            "WHERE n.nspname = $1 AND pg_get_userbyid(c.relowner) <> $1",
                            {t.schema}),
                  0);
        EXPECT_EQ(db.value("SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_class c JOIN pg_namespace n ON "
                           "n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind = 'r'",
                           {t.schema}),
                  "drivers,schema_migrations,trips,users,vehicles");
        // Constraint names the API maps to fields.
        EXPECT_EQ(db.number("SELECT count(*) FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace "
                            "WHERE n.nspname = $1 AND conname IN ('vehicles_plate_key', 'drivers_license_number_key', "
                            "'trips_vehicle_id_fkey', 'trips_driver_id_fkey', 'vehicles_vin_check')",
                            {t.schema}),
                  5);
        EXPECT_EQ(db.number("SELECT count(*) FROM pg_indexes WHERE schemaname = $1 AND indexname = 'users_email_key'",
                            {t.schema}),
                  1);
    }
}

TEST_F(Migrate, second_run_is_a_no_op) {
    Db db;
    TenantSet set(db, 5);
    Report first = run(options_for(set));
    ASSERT_EQ(first.tenants_migrated, 5u);
    std::string platform_rows = db.value(
        "SELECT string_agg(version || ':' || applied_at, ',') FROM "
        "platform.schema_migrations");
    std::string catalog = db.value(
        "SELECT string_agg(updated_at::text, ',' ORDER BY id) FROM platform.tenants "
        "WHERE id = ANY($1::uuid[])",
        {set.id_array()});

    Report second = run(options_for(set));
    EXPECT_EQ(second.platform_version, first.platform_version);
    EXPECT_EQ(second.tenants_total, 5u);
    EXPECT_EQ(second.tenants_pending, 0u);
    EXPECT_EQ(second.tenants_migrated, 0u);
    EXPECT_EQ(second.tenants_at_head, 5u);
    EXPECT_EQ(second.tenants_failed, 0u);
    // Nothing was applied and the tenants were not even touched.
    EXPECT_EQ(db.value("SELECT string_agg(version || ':' || applied_at, ',') FROM platform.schema_migrations"),
              platform_rows);
    EXPECT_EQ(db.value("SELECT string_agg(updated_at::text, ',' ORDER BY id) FROM platform.tenants "
                       "WHERE id = ANY($1::uuid[])",
                       {set.id_array()}),
              catalog);
}

TEST_F(Migrate, platform_run_twice_applies_nothing_the_second_time) {
    Db db;
    int before = static_cast<int>(db.number("SELECT count(*) FROM platform.schema_migrations"));
    int version = run_sync(db.ioc(), migrate_platform(db.conn(), soon()));
    EXPECT_EQ(version, head(platform_migrations()));
    EXPECT_EQ(db.number("SELECT count(*) FROM platform.schema_migrations"), before);
    EXPECT_EQ(db.value("SELECT string_agg(name, ',' ORDER BY version) FROM platform.schema_migrations "
                       "WHERE version <= 1"),
              std::string(platform_migrations()[0].name));
}

TEST_F(Migrate, an_added_tenant_migration_brings_200_tenants_to_head) {
    Db db;
    TenantSet set(db, 200);
    Report base = run(options_for(set));
    ASSERT_EQ(base.tenants_migrated, 200u);

    OwnedStream extended = with_extra_table();
    auto started = std::chrono::steady_clock::now();
    Report r = run(options_for(set, extended.stream()));
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
    std::printf("[ timing ] 200 tenants through one added migration: %lld ms (concurrency 4)\n",
                static_cast<long long>(ms.count()));

    EXPECT_EQ(r.tenant_head, extended.head());
    EXPECT_EQ(r.tenants_pending, 200u);
    EXPECT_EQ(r.tenants_migrated, 200u);
    EXPECT_EQ(r.tenants_failed, 0u);
    EXPECT_EQ(versions(db, set), (std::map<int, int>{{extended.head(), 200}}));
    // The new table landed in every tenant's own schema, owned by the tenant's role.
    EXPECT_EQ(db.number("SELECT count(*) FROM pg_tables WHERE tablename = 'extra_test' AND tableowner = schemaname "
                        "AND schemaname IN (SELECT schema_name FROM platform.tenants WHERE id = ANY($1::uuid[]))",
                        {set.id_array()}),
              200);
    EXPECT_EQ(applied(db, set[0]), expected_list(extended.head()));
    EXPECT_EQ(applied(db, set[199]), expected_list(extended.head()));
}

TEST_F(Migrate, an_edited_applied_tenant_file_is_refused) {
    Db db;
    TenantSet set(db, 3);
    ASSERT_EQ(run(options_for(set)).tenants_migrated, 3u);

    OwnedStream edited(tenant_migrations());
    edited.edit(0, std::string(tenant_migrations()[0].sql) + "\n-- edited\n");
    edited.add("extra_test", "CREATE TABLE extra_test (id integer)");
    Report r = run(options_for(set, edited.stream()));
    EXPECT_EQ(r.tenants_failed, 3u);
    EXPECT_EQ(r.tenants_migrated, 0u);
    ASSERT_EQ(r.failures.size(), 3u);
    const std::string& message = r.failures[0].message;
    EXPECT_NE(message.find("tenant migration " + std::string(tenant_migrations()[0].name) +
                           " was edited after it was applied (checksum differs)"),
              std::string::npos)
        << message;
    // Nothing applied; the failure is recorded in the catalog.
    EXPECT_EQ(versions(db, set), (std::map<int, int>{{tenant_head(), 3}}));
    EXPECT_EQ(applied(db, set[0]), expected_list(tenant_head()));
    EXPECT_EQ(
        db.number("SELECT count(*) FROM pg_tables WHERE tablename = 'extra_test' AND schemaname = $1", {set[0].schema}),
        0);
    EXPECT_NE(db.value("SELECT migration_error FROM platform.tenants WHERE id = $1", {set[0].id}).find("edited"),
              std::string::npos);
}

TEST_F(Migrate, an_edited_applied_platform_file_is_refused) {
    Db db;
    const std::string before = db.value("SELECT string_agg(version || checksum, ',') FROM platform.schema_migrations");
    OwnedStream edited(platform_migrations());
    edited.edit(0, std::string(platform_migrations()[0].sql) + "\n-- edited\n");
    RunOptions o;
    o.database_url = env("MTAPI_DATABASE_URL");
    o.platform = edited.stream();
    o.tenant_ids = {util::to_string(util::uuid_v7())};
    try {
        run(o);
        FAIL() << "an edited platform file was accepted";
    } catch (const MigrationError& e) {
        EXPECT_EQ(std::string(e.what()), "platform migration " + std::string(platform_migrations()[0].name) +
                                             " was edited after it was applied (checksum differs); restore it and "
                                             "add a new migration instead");
    }
    EXPECT_EQ(db.value("SELECT string_agg(version || checksum, ',') FROM platform.schema_migrations"), before);
}

TEST_F(Migrate, a_database_newer_than_the_binary_is_refused) {
    Db db;
    // Platform: the binary knows no platform migration at all.
    try {
        run_sync(db.ioc(), migrate_platform(db.conn(), soon(), migrate::Stream{}));
        FAIL() << "an unknown applied platform version was accepted";
    } catch (const MigrationError& e) {
        EXPECT_NE(std::string(e.what()).find("database is newer than this binary"), std::string::npos) << e.what();
    }
    // Tenant: at version 1, handed a stream without any file.
    TenantSet set(db, 1);
    ASSERT_EQ(run(options_for(set)).tenants_migrated, 1u);
    TenantRef ref{set[0].id, set[0].slug, set[0].schema, set[0].schema, 0};
    TenantOutcome outcome = run_sync(db.ioc(), migrate_tenant(db.conn(), ref, soon(), migrate::Stream{}));
    EXPECT_EQ(outcome.result, TenantResult::failed);
    EXPECT_NE(outcome.error.find("database is newer than this binary"), std::string::npos) << outcome.error;
    EXPECT_FALSE(db.conn().in_transaction());
    EXPECT_EQ(db.value("SELECT current_user"), "mtapi");
}

TEST_F(Migrate, a_failing_tenant_is_recorded_and_the_others_reach_head) {
    Db db;
    TenantSet set(db, 6);
    ASSERT_EQ(run(options_for(set)).tenants_migrated, 6u);
    const TestTenant& bad = set[2];
    // The tenant already has the table the next migration creates.
    db.script("SET ROLE " + bad.schema + "; CREATE TABLE " + bad.schema + ".extra_test (x text); RESET ROLE");

    OwnedStream extended = with_extra_table();
    Report r = run(options_for(set, extended.stream()));
    EXPECT_EQ(r.tenants_migrated, 5u);
    EXPECT_EQ(r.tenants_failed, 1u);
    ASSERT_EQ(r.failures.size(), 1u);
    EXPECT_EQ(r.failures[0].slug, bad.slug);
    const int head = migrate::tenant_head();
    char extra_name[64];
    std::snprintf(extra_name, sizeof(extra_name), "%04d_extra_test.sql failed", head + 1);
    EXPECT_NE(r.failures[0].message.find(extra_name), std::string::npos) << r.failures[0].message;
    EXPECT_NE(r.failures[0].message.find("already exists"), std::string::npos) << r.failures[0].message;
    EXPECT_EQ(versions(db, set), (std::map<int, int>{{head, 1}, {head + 1, 5}}));
    pg::Result row = db.query(
        "SELECT migration_error, migration_failed_at IS NOT NULL FROM platform.tenants "
        "WHERE id = $1",
        {bad.id});
    EXPECT_EQ(std::string(row.text(0, 0)), r.failures[0].message);
    EXPECT_TRUE(row.boolean(0, 1));
    EXPECT_EQ(applied(db, bad), expected_list(head));

    // Once the conflict is gone, the next run finishes the tenant and clears the error.
    db.script("SET ROLE " + bad.schema + "; DROP TABLE " + bad.schema + ".extra_test; RESET ROLE");
    Report again = run(options_for(set, extended.stream()));
    EXPECT_EQ(again.tenants_migrated, 1u);
    EXPECT_EQ(again.tenants_at_head, 5u);
    EXPECT_EQ(again.tenants_failed, 0u);
    EXPECT_EQ(versions(db, set), (std::map<int, int>{{head + 1, 6}}));
    EXPECT_EQ(db.number("SELECT count(*) FROM platform.tenants WHERE id = $1 AND migration_error IS NULL AND "
                        "migration_failed_at IS NULL",
                        {bad.id}),
              1);
}

TEST_F(Migrate, two_runs_at_once_both_finish_and_apply_each_file_once) {
    Db db;
    TenantSet set(db, 60);
    OwnedStream extended = with_extra_table();
    asio::io_context ioc;
    std::optional<Report> a, b;
    std::exception_ptr failure;
    auto done = [&](std::optional<Report>& slot) {
        return [&](std::exception_ptr e, Report r) {
            if (e)
                failure = e;
            else
                slot = std::move(r);
        };
    };
    asio::co_spawn(ioc, run_all(ioc, options_for(set, extended.stream())), done(a));
    asio::co_spawn(ioc, run_all(ioc, options_for(set, extended.stream())), done(b));
    ioc.run();
    if (failure) std::rethrow_exception(failure);
    ASSERT_TRUE(a && b);
    EXPECT_EQ(a->tenants_failed + b->tenants_failed, 0u);
    // Every tenant was brought to head by exactly one of the two runs.
    EXPECT_EQ(a->tenants_migrated + b->tenants_migrated, 60u);
    EXPECT_EQ(a->tenants_migrated + a->tenants_at_head, 60u);
    EXPECT_EQ(b->tenants_migrated + b->tenants_at_head, 60u);
    EXPECT_EQ(versions(db, set), (std::map<int, int>{{extended.head(), 60}}));
    for (const auto& t : set.tenants())
        ASSERT_EQ(applied(db, t), expected_list(extended.head())) << t.schema;
}

// ---------------------------------------------------------------------------------------------
// The mtapi binary. It migrates every tenant in the catalog, so these tests only judge their own
// tenants (others may exist in the shared test database).

std::set<std::string> failed_ids(const test::ServerProcess& p) {
    std::set<std::string> out;
    for (const auto& line : p.lines(test::Stream::err)) {
        auto open = line.find(" (");
        auto close = line.find(") failed: ");
        if (line.find("tenant ") != std::string::npos && open != std::string::npos && close != std::string::npos)
            out.insert(line.substr(open + 2, close - open - 2));
    }
    return out;
}

bool names_any(const std::set<std::string>& ids, const TenantSet& set) {
    for (const auto& t : set.tenants())
        if (ids.contains(t.id)) return true;
    return false;
}

TEST_F(Migrate, binary_second_run_is_a_no_op_and_prints_a_summary) {
    Db db;
    TenantSet set(db, 4);
    test::ServerProcess first({}, {"migrate"});
    ASSERT_TRUE(first.launch());
    auto code = first.wait_exit(120s);
    ASSERT_TRUE(code.has_value()) << first.output_tail();
    EXPECT_FALSE(names_any(failed_ids(first), set)) << first.output_tail();
    if (failed_ids(first).empty()) {
        EXPECT_EQ(*code, 0) << first.output_tail();
    }
    EXPECT_EQ(versions(db, set), (std::map<int, int>{{tenant_head(), 4}}));

    test::ServerProcess second({}, {"migrate"});
    ASSERT_TRUE(second.launch());
    ASSERT_TRUE(second.wait_exit(120s).has_value());
    auto out = second.lines(test::Stream::out);
    ASSERT_FALSE(out.empty()) << second.output_tail();
    EXPECT_NE(out.back().find("mtapi: migrate: platform at version"), std::string::npos) << out.back();
    EXPECT_NE(out.back().find(" 0 migrated"), std::string::npos) << second.output_tail();
    for (const auto& t : set.tenants())
        EXPECT_EQ(applied(db, t), expected_list(tenant_head()));
}

TEST_F(Migrate, binary_two_processes_at_once_both_finish) {
    Db db;
    TenantSet set(db, 80);
    test::ServerProcess a({}, {"migrate"});
    test::ServerProcess b({}, {"migrate"});
    ASSERT_TRUE(a.launch());
    ASSERT_TRUE(b.launch());
    auto code_a = a.wait_exit(120s);
    auto code_b = b.wait_exit(120s);
    ASSERT_TRUE(code_a.has_value() && code_b.has_value());
    EXPECT_FALSE(names_any(failed_ids(a), set)) << a.output_tail();
    EXPECT_FALSE(names_any(failed_ids(b), set)) << b.output_tail();
    if (failed_ids(a).empty()) {
        EXPECT_EQ(*code_a, 0) << a.output_tail();
    }
    if (failed_ids(b).empty()) {
        EXPECT_EQ(*code_b, 0) << b.output_tail();
    }
    EXPECT_EQ(versions(db, set), (std::map<int, int>{{tenant_head(), 80}}));
    for (const auto& t : set.tenants())
        ASSERT_EQ(applied(db, t), expected_list(tenant_head())) << t.schema;
}

TEST_F(Migrate, binary_killed_half_way_resumes) {
    Db db;
    TenantSet set(db, 300);
    test::ServerProcess killed({{"MTAPI_MIGRATE_CONCURRENCY", "1"}}, {"migrate"});
    ASSERT_TRUE(killed.launch());
    // Kill once some (not all) of this test's tenants are done.
    auto deadline = std::chrono::steady_clock::now() + 60s;
    std::int64_t done = 0;
    while (std::chrono::steady_clock::now() < deadline) {
        done = db.number("SELECT count(*) FROM platform.tenants WHERE id = ANY($1::uuid[]) AND schema_version > 0",
                         {set.id_array()});
        if (done >= 20) break;
        std::this_thread::sleep_for(5ms);
    }
    killed.signal(SIGKILL);
    ASSERT_TRUE(killed.wait_exit(30s).has_value());
    done = db.number("SELECT count(*) FROM platform.tenants WHERE id = ANY($1::uuid[]) AND schema_version > 0",
                     {set.id_array()});
    std::printf("[ info   ] killed after %lld of 300 tenants\n", static_cast<long long>(done));
    EXPECT_GT(done, 0);
    EXPECT_LT(done, 300) << "the run finished before it could be killed";
    // Each tenant is one transaction: either untouched or at head, never in between.
    for (const auto& t : set.tenants()) {
        std::string list = applied(db, t);
        ASSERT_TRUE(list.empty() || list == expected_list(tenant_head())) << t.schema << ": " << list;
    }

    test::ServerProcess resumed({}, {"migrate"});
    ASSERT_TRUE(resumed.launch());
    ASSERT_TRUE(resumed.wait_exit(120s).has_value());
    EXPECT_FALSE(names_any(failed_ids(resumed), set)) << resumed.output_tail();
    EXPECT_EQ(versions(db, set), (std::map<int, int>{{tenant_head(), 300}}));
    for (const auto& t : set.tenants())
        ASSERT_EQ(applied(db, t), expected_list(tenant_head())) << t.schema;
}

// ---------------------------------------------------------------------------------------------
// What 0001_platform.sql locks down (CVE-2018-1058 class), seen from roles that only have what
// PUBLIC has.

TEST_F(Migrate, platform_leaves_public_nothing_to_plant_objects_with) {
    Db db;
    auto id = util::uuid_v7();
    std::string role = "mig_probe_" + util::to_hex(id);
    db.script("CREATE ROLE " + role + " NOLOGIN; GRANT " + role + " TO CURRENT_USER");
    db.script("SET ROLE " + role);
    EXPECT_FALSE(db.query("SELECT has_schema_privilege('public', 'CREATE')").boolean(0, 0));
    EXPECT_FALSE(db.query("SELECT has_database_privilege(current_database(), 'TEMP')").boolean(0, 0));
    EXPECT_FALSE(db.query("SELECT has_schema_privilege('platform', 'USAGE')").boolean(0, 0));
    try {
        db.script("CREATE TEMP TABLE vehicles (id int)");
        ADD_FAILURE() << "a PUBLIC-only role created a temporary table";
    } catch (const pg::Error& e) {
        EXPECT_EQ(e.sqlstate(), "42501") << e.what();
    }
    try {
        db.script("CREATE TABLE public.vehicles (id int)");
        ADD_FAILURE() << "a PUBLIC-only role created a table in public";
    } catch (const pg::Error& e) {
        EXPECT_EQ(e.sqlstate(), "42501") << e.what();
    }
    db.script("RESET ROLE; DROP ROLE " + role);
    EXPECT_EQ(db.number("SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE "
                        "n.nspname = 'platform' AND has_function_privilege('public', p.oid, 'EXECUTE')"),
              0);
}

TEST_F(Migrate, a_tenant_role_cannot_read_the_platform_catalog) {
    Db db;
    TenantSet set(db, 1);
    ASSERT_EQ(run(options_for(set)).tenants_migrated, 1u);
    db.script("BEGIN; SELECT set_config('search_path', '" + set[0].schema + ", pg_temp', true), set_config('role', '" +
              set[0].schema + "', true)");
    try {
        db.query("SELECT * FROM platform.tenants");
        ADD_FAILURE() << "a tenant role read platform.tenants";
    } catch (const pg::Error& e) {
        EXPECT_EQ(e.sqlstate(), "42501") << e.what();
        EXPECT_EQ(e.kind(), pg::ErrorKind::insufficient_privilege);
    }
    db.script("ROLLBACK");
    // As the tenant it sees its own tables, unqualified.
    db.script("BEGIN; SELECT set_config('search_path', '" + set[0].schema + ", pg_temp', true), set_config('role', '" +
              set[0].schema + "', true)");
    EXPECT_EQ(db.number("SELECT count(*) FROM vehicles"), 0);
    db.script("ROLLBACK");
}

TEST_F(Migrate, tenant_changes_are_notified) {
    Db listener;
    listener.script("LISTEN mtapi_tenants");
    Db db;
    TenantSet set(db, 1);  // the INSERT notifies
    db.script("UPDATE platform.tenants SET status = 'suspended' WHERE id = '" + set[0].id + "'");
    int seen = 0;  // one per transaction: the INSERT and the UPDATE
    auto deadline = pg::Clock::now() + 5s;
    while (seen < 2 && pg::Clock::now() < deadline) {
        run_sync(listener.ioc(), listener.conn().wait_readable(pg::Clock::now() + 500ms));
        for (auto& n : listener.conn().take_notifications())
            if (n.channel == "mtapi_tenants" && n.payload == set[0].id) ++seen;
    }
    EXPECT_EQ(seen, 2);
    EXPECT_EQ(db.value("SELECT status FROM platform.tenants WHERE id = $1", {set[0].id}), "suspended");
    EXPECT_EQ(db.number("SELECT count(*) FROM platform.tenants WHERE id = $1 AND updated_at > created_at", {set[0].id}),
              1);
}

}  // namespace
}  // namespace mtapi::migrate
