// The PostgreSQL driver (pg::Connection) and the per-shard pool (pg::Pool) against the real test
// cluster: pipelining, the prepared-statement cache, typed errors, pool bounds and deadlines, and
// what happens when backends die or statements overrun their deadline.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "pg_test_support.hpp"

namespace mtapi::pgtest {
namespace {

using pg::ErrorKind;
using pg::Query;

// A prepared statement with text parameters (nullopt binds NULL). Kept free of braced lists: GCC 12
// cannot hold their temporary arrays across co_await.
template <class... Params>
Query q(std::string_view sql, Params&&... params) {
    Query out;
    out.sql = sql;
    (out.params.emplace_back(std::forward<Params>(params)), ...);
    return out;
}
Query with_params(std::string_view sql, std::vector<std::optional<std::string>> params) {
    Query out = q(sql);
    out.params = std::move(params);
    return out;
}
// An unnamed (unprepared) statement.
Query unnamed(std::string_view sql) {
    Query out = q(sql);
    out.prepare = false;
    return out;
}

// Prepared statements the server holds for this connection's session, by statement text. Runs
// unnamed, so it does not add one itself.
asio::awaitable<std::vector<std::string>> server_statements(pg::Connection& conn) {
    auto r = co_await conn.query(unnamed("SELECT statement FROM pg_prepared_statements ORDER BY statement"), after(5s));
    std::vector<std::string> out;
    for (int i = 0; i < r.rows(); ++i)
        out.emplace_back(r.text(i, 0));
    co_return out;
}

asio::awaitable<int> backend_pid_of(pg::Connection& conn) {
    auto r = co_await conn.query(q("SELECT pg_backend_pid()"), after(5s));
    co_return static_cast<int>(r.int64(0, 0));
}

pg::PoolOptions pool_options(std::size_t size) {
    pg::PoolOptions o;
    o.connect = options();
    o.size = size;
    o.acquire_timeout = 5s;
    return o;
}

// ------------------------------------------------------------------------------ pipelining

TEST(PgPipeline, returns_one_result_per_statement_in_statement_order) {
    ASSERT_TRUE(database_configured());
    run([](asio::io_context& ioc) -> asio::awaitable<void> {
        auto conn = co_await pg::Connection::connect(ioc, options());
        std::vector<Query> batch;
        for (int i = 0; i < 50; ++i)
            batch.push_back(q("SELECT $1::int", std::to_string(i)));
        auto results = co_await conn->execute(batch, after(5s));
        PGTEST_CO_ASSERT_TRUE(results.size() == 50);
        for (int i = 0; i < 50; ++i) {
            EXPECT_EQ(results[i].rows(), 1) << "statement " << i;
            if (results[i].rows() == 1) {
                EXPECT_EQ(results[i].int64(0, 0), i) << "statement " << i;
            }
        }
        // The same text fifty times in one batch is prepared once.
        EXPECT_EQ(conn->cached_statements(), 1u);
        auto statements = co_await server_statements(*conn);
        EXPECT_EQ(statements, (std::vector<std::string>{"SELECT $1::int"}));
    });
}

TEST(PgPipeline, later_statements_in_a_batch_see_earlier_writes) {
    ASSERT_TRUE(database_configured());
    ScratchSchema s;
    s.exec("CREATE TABLE " + s("items") + " (id int PRIMARY KEY, name text NOT NULL)");
    const std::string insert = "INSERT INTO " + s("items") + " (id, name) VALUES ($1, $2)";
    const std::string count = "SELECT count(*) FROM " + s("items");
    const std::string names = "SELECT string_agg(name, ',' ORDER BY id) FROM " + s("items");
    const std::string update = "UPDATE " + s("items") + " SET name = upper(name) WHERE id = $1";
    const std::string one = "SELECT name FROM " + s("items") + " WHERE id = $1";
    run([&](asio::io_context& ioc) -> asio::awaitable<void> {
        auto conn = co_await pg::Connection::connect(ioc, options());
        std::vector<Query> batch{q(insert, "1", "a"), q(count),   q(insert, "2", "b"), q(names),
                                 q(update, "1"),      q(one, "1")};
        auto r = co_await conn->execute(batch, after(5s));
        PGTEST_CO_ASSERT_TRUE(r.size() == 6);
        EXPECT_EQ(r[0].affected(), 1);
        EXPECT_EQ(r[1].int64(0, 0), 1);
        EXPECT_EQ(r[2].affected(), 1);
        EXPECT_EQ(r[3].text(0, 0), "a,b");
        EXPECT_EQ(r[4].affected(), 1);
        EXPECT_EQ(r[5].text(0, 0), "A");
    });
    // The batch committed at its Sync: another session sees the rows.
    EXPECT_EQ(s.value("SELECT string_agg(name, ',' ORDER BY id) FROM " + s("items")), "A,b");
}

TEST(PgPipeline, reads_results_of_any_size_completely) {
    ASSERT_TRUE(database_configured());
    run([](asio::io_context& ioc) -> asio::awaitable<void> {
        auto conn = co_await pg::Connection::connect(ioc, options());
        const std::string sql = "SELECT i, repeat('x', 200) FROM generate_series(1, $1::int) i";
        // From a few rows up to about 10 MB, which takes many reads; in between, results that
        // fit in the socket buffers and arrive before the driver has read them.
        const std::vector<int> sizes{10, 1000, 5000, 20000, 50000};
        for (int rows : sizes) {
            auto t0 = Clock::now();
            std::optional<pg::Result> r;
            std::optional<pg::Error> err;
            try {
                r = co_await conn->query(q(sql, std::to_string(rows)), after(10s));
            } catch (const pg::Error& e) {
                err = e;
            }
            if (err) {
                ADD_FAILURE() << rows << " rows: " << pg::kind_name(err->kind()) << " after " << since(t0).count()
                              << " ms: " << err->what();
                co_return;
            }
            EXPECT_EQ(r->rows(), rows);
            if (r->rows() == rows) {
                EXPECT_EQ(r->int64(rows - 1, 0), rows);
                EXPECT_EQ(r->text(rows - 1, 1).size(), 200u);
            }
        }
    });
}

TEST(PgPipeline, sends_parameters_larger_than_the_socket_buffers) {
    ASSERT_TRUE(database_configured());
    run([](asio::io_context& ioc) -> asio::awaitable<void> {
        auto conn = co_await pg::Connection::connect(ioc, options());
        const std::string big(8 * 1024 * 1024, 'y');
        auto r = co_await conn->query(q("SELECT length($1::text)", big), after(10s));
        EXPECT_EQ(r.int64(0, 0), static_cast<std::int64_t>(big.size()));
    });
}

TEST(PgConnection, execute_script_runs_several_statements_and_pipelining_continues_afterwards) {
    ASSERT_TRUE(database_configured());
    ScratchSchema s;
    const std::string script = "CREATE TABLE " + s("t") + " (x int); INSERT INTO " + s("t") + " VALUES (1), (2);";
    const std::string count = "SELECT count(*) FROM " + s("t");
    run([&](asio::io_context& ioc) -> asio::awaitable<void> {
        auto conn = co_await pg::Connection::connect(ioc, options());
        co_await conn->execute_script(script, after(5s));
        EXPECT_EQ((co_await conn->query(q(count), after(5s))).int64(0, 0), 2);
        // A failing script reports the failure and leaves the connection usable.
        auto err = co_await error_of(conn->execute_script("SELECT 1; SELECT * FROM no_such_table_here;", after(5s)));
        PGTEST_CO_ASSERT_TRUE(err.has_value());
        EXPECT_EQ(err->kind(), ErrorKind::undefined_object);
        EXPECT_EQ(err->sqlstate(), "42P01");
        EXPECT_FALSE(conn->broken());
        std::vector<Query> batch{q(count), q("SELECT $1::int", "7")};
        auto r = co_await conn->execute(batch, after(5s));
        EXPECT_EQ(r[0].int64(0, 0), 2);
        EXPECT_EQ(r[1].int64(0, 0), 7);
    });
}

TEST(PgConnection, delivers_notifications_sent_to_a_listened_channel) {
    ASSERT_TRUE(database_configured());
    ScratchSchema s;  // its random name doubles as a channel name no other test uses
    const std::string listen = "LISTEN " + s.name();
    run([&](asio::io_context& ioc) -> asio::awaitable<void> {
        auto conn = co_await pg::Connection::connect(ioc, options());
        co_await conn->query(unnamed(listen), after(5s));
        s.exec("NOTIFY " + s.name() + ", 'hello'");
        auto t0 = Clock::now();
        std::vector<pg::Connection::Notification> got;
        while (got.empty() && since(t0) < 3s) {
            EXPECT_TRUE(co_await conn->wait_readable(after(3s)));
            got = conn->take_notifications();
        }
        PGTEST_CO_ASSERT_TRUE(got.size() == 1);
        EXPECT_EQ(got[0].channel, s.name());
        EXPECT_EQ(got[0].payload, "hello");
        // The connection still runs statements afterwards.
        EXPECT_EQ((co_await conn->query(q("SELECT 5"), after(5s))).int64(0, 0), 5);
    });
}

// ------------------------------------------------------------------------------ statement cache

TEST(PgStatementCache, reuses_the_prepared_statement_for_the_same_sql) {
    ASSERT_TRUE(database_configured());
    run([](asio::io_context& ioc) -> asio::awaitable<void> {
        auto conn = co_await pg::Connection::connect(ioc, options());
        EXPECT_EQ(conn->cached_statements(), 0u);
        auto r1 = co_await conn->query(q("SELECT $1::int + 1", "1"), after(5s));
        EXPECT_EQ(r1.int64(0, 0), 2);
        EXPECT_EQ(conn->cached_statements(), 1u);
        auto r2 = co_await conn->query(q("SELECT $1::int + 1", "2"), after(5s));
        EXPECT_EQ(r2.int64(0, 0), 3);
        EXPECT_EQ(conn->cached_statements(), 1u);
        // One statement on the server, not one per execution.
        auto statements = co_await server_statements(*conn);
        EXPECT_EQ(statements, (std::vector<std::string>{"SELECT $1::int + 1"}));
        // Unnamed statements stay out of the cache.
        co_await conn->query(unnamed("SELECT 'unnamed'"), after(5s));
        EXPECT_EQ(conn->cached_statements(), 1u);
    });
}

TEST(PgStatementCache, keeps_a_statement_of_its_own_per_scope_for_the_same_sql) {
    ASSERT_TRUE(database_configured());
    run([](asio::io_context& ioc) -> asio::awaitable<void> {
        auto conn = co_await pg::Connection::connect(ioc, options());
        std::vector<Query> batch;
        batch.push_back(q("SELECT $1::int * 2", "21"));
        // Named first: GCC 12 mishandles braced temporaries in a statement that contains co_await.
        const std::vector<std::string> scopes{"tenant_a", "tenant_b", "tenant_a", "tenant_b", ""};
        for (const std::string& scope : scopes) {
            auto r = co_await conn->execute(batch, after(5s), scope);
            EXPECT_EQ(r.front().int64(0, 0), 42);
        }
        // One per scope (the unscoped one included), each reused afterwards.
        EXPECT_EQ(conn->cached_statements(), 3u);
        auto statements = co_await server_statements(*conn);
        EXPECT_EQ(statements, (std::vector<std::string>(3, "SELECT $1::int * 2")));
    });
}

TEST(PgStatementCache, stays_within_its_capacity_on_the_client_and_on_the_server) {
    ASSERT_TRUE(database_configured());
    std::vector<std::string> sqls;
    for (int i = 0; i < 10; ++i)
        sqls.push_back("SELECT " + std::to_string(i) + " AS n");
    run([&](asio::io_context& ioc) -> asio::awaitable<void> {
        auto opts = options();
        opts.statement_cache_size = 3;
        auto conn = co_await pg::Connection::connect(ioc, opts);
        for (int i = 0; i < 10; ++i) {
            auto r = co_await conn->query(q(sqls[i]), after(5s));
            EXPECT_EQ(r.int64(0, 0), i);
            EXPECT_LE(conn->cached_statements(), 3u) << "after statement " << i;
            // At most one eviction can still wait for its DEALLOCATE (sent with the next batch).
            EXPECT_LE((co_await server_statements(*conn)).size(), 4u) << "after statement " << i;
        }
        EXPECT_EQ(conn->cached_statements(), 3u);
        auto statements = co_await server_statements(*conn);
        EXPECT_EQ(statements, (std::vector<std::string>{sqls[7], sqls[8], sqls[9]}));
    });
}

TEST(PgStatementCache, deallocates_everything_evicted_within_one_batch_with_the_next_batch) {
    ASSERT_TRUE(database_configured());
    std::vector<std::string> sqls;
    for (int i = 0; i < 10; ++i)
        sqls.push_back("SELECT " + std::to_string(i) + " AS n");
    run([&](asio::io_context& ioc) -> asio::awaitable<void> {
        auto opts = options();
        opts.statement_cache_size = 3;
        auto conn = co_await pg::Connection::connect(ioc, opts);
        std::vector<Query> batch;
        for (const auto& sql : sqls)
            batch.push_back(q(sql));
        auto r = co_await conn->execute(batch, after(5s));
        PGTEST_CO_ASSERT_TRUE(r.size() == 10);
        for (int i = 0; i < 10; ++i)
            EXPECT_EQ(r[i].int64(0, 0), i);
        EXPECT_EQ(conn->cached_statements(), 3u);
        auto statements = co_await server_statements(*conn);
        EXPECT_EQ(statements, (std::vector<std::string>{sqls[7], sqls[8], sqls[9]}));
    });
}

TEST(PgStatementCache, evicts_the_least_recently_used_statement) {
    ASSERT_TRUE(database_configured());
    run([](asio::io_context& ioc) -> asio::awaitable<void> {
        auto opts = options();
        opts.statement_cache_size = 3;
        auto conn = co_await pg::Connection::connect(ioc, opts);
        const std::vector<std::string> uses{"SELECT 'a'", "SELECT 'b'", "SELECT 'c'", "SELECT 'a'", "SELECT 'd'"};
        for (const auto& sql : uses)
            co_await conn->query(q(sql), after(5s));
        // 'a' was used again after 'b', so 'b' is the one that went.
        auto statements = co_await server_statements(*conn);
        EXPECT_EQ(statements, (std::vector<std::string>{"SELECT 'a'", "SELECT 'c'", "SELECT 'd'"}));
    });
}

TEST(PgStatementCache, reprepares_a_statement_whose_result_type_changed) {
    ASSERT_TRUE(database_configured());
    ScratchSchema s;
    s.exec("CREATE TABLE " + s("t") + " (a int); INSERT INTO " + s("t") + " VALUES (1)");
    const std::string select = "SELECT * FROM " + s("t");
    run([&](asio::io_context& ioc) -> asio::awaitable<void> {
        auto conn = co_await pg::Connection::connect(ioc, options());
        auto before = co_await conn->query(q(select), after(5s));
        EXPECT_EQ(before.columns(), 1);
        s.exec("ALTER TABLE " + s("t") + " ADD COLUMN b int DEFAULT 7");
        auto err = co_await error_of(conn->query(q(select), after(5s)));
        if (err) {
            EXPECT_EQ(err->kind(), ErrorKind::cached_plan_changed) << err->what();
            EXPECT_EQ(err->sqlstate(), "0A000");
            EXPECT_FALSE(conn->broken());
        }
        // The stale entry was dropped: the retry on the same connection prepares afresh.
        auto retry = co_await error_of(conn->query(q(select), after(5s)));
        EXPECT_FALSE(retry) << retry->what();
        auto after_change = co_await conn->query(q(select), after(5s));
        EXPECT_EQ(after_change.columns(), 2);
        EXPECT_EQ(after_change.text(0, 1), "7");
        EXPECT_EQ(conn->cached_statements(), 1u);
        auto statements = co_await server_statements(*conn);
        EXPECT_EQ(statements, (std::vector<std::string>{select}));
    });
}

// The cache's housekeeping (DEALLOCATE of evicted or stale statements) must not fail the caller's
// next statement. Inside a failed transaction the server rejects everything but ROLLBACK/COMMIT.
TEST(PgStatementCache, a_failed_transaction_rolls_back_while_an_eviction_is_pending) {
    ASSERT_TRUE(database_configured());
    run([](asio::io_context& ioc) -> asio::awaitable<void> {
        auto opts = options();
        opts.statement_cache_size = 1;
        auto conn = co_await pg::Connection::connect(ioc, opts);
        co_await conn->query(unnamed("BEGIN"), after(5s));
        co_await conn->query(q("SELECT 1"), after(5s));
        // Prepared (evicting "SELECT 1"), then fails when run: the transaction is aborted.
        auto failed = co_await error_of(conn->query(q("SELECT 1/0"), after(5s)));
        PGTEST_CO_ASSERT_TRUE(failed.has_value());
        EXPECT_EQ(failed->kind(), ErrorKind::data_exception);
        EXPECT_TRUE(conn->in_transaction());

        auto rollback = co_await error_of(conn->query(unnamed("ROLLBACK"), after(5s)));
        EXPECT_FALSE(rollback) << "ROLLBACK failed: SQLSTATE " << rollback->sqlstate() << ": " << rollback->what();
        if (rollback) co_return;
        EXPECT_FALSE(conn->in_transaction());
        EXPECT_FALSE(conn->broken());
        // Afterwards the server holds no more than the cache plus one pending eviction.
        EXPECT_EQ((co_await conn->query(q("SELECT 2"), after(5s))).int64(0, 0), 2);
        auto statements = co_await server_statements(*conn);
        EXPECT_LE(statements.size(), 2u);
    });
}

TEST(PgStatementCache, a_transaction_failed_by_a_changed_result_type_rolls_back) {
    ASSERT_TRUE(database_configured());
    ScratchSchema s;
    s.exec("CREATE TABLE " + s("t") + " (a int); INSERT INTO " + s("t") + " VALUES (1)");
    const std::string select = "SELECT * FROM " + s("t");
    run([&](asio::io_context& ioc) -> asio::awaitable<void> {
        auto conn = co_await pg::Connection::connect(ioc, options());
        co_await conn->query(q(select), after(5s));
        s.exec("ALTER TABLE " + s("t") + " ADD COLUMN b int");
        co_await conn->query(unnamed("BEGIN"), after(5s));
        auto failed = co_await error_of(conn->query(q(select), after(5s)));
        PGTEST_CO_ASSERT_TRUE(failed.has_value());
        EXPECT_EQ(failed->kind(), ErrorKind::cached_plan_changed) << failed->what();
        EXPECT_TRUE(conn->in_transaction());

        auto rollback = co_await error_of(conn->query(unnamed("ROLLBACK"), after(5s)));
        EXPECT_FALSE(rollback) << "ROLLBACK failed: SQLSTATE " << rollback->sqlstate() << ": " << rollback->what();
        if (rollback) co_return;
        EXPECT_FALSE(conn->in_transaction());
        // The statement works again on the same connection.
        auto again = co_await error_of(conn->query(q(select), after(5s)));
        EXPECT_FALSE(again) << again->what();
    });
}

TEST(PgStatementCache, does_not_cache_a_statement_that_failed_to_prepare) {
    ASSERT_TRUE(database_configured());
    run([](asio::io_context& ioc) -> asio::awaitable<void> {
        auto conn = co_await pg::Connection::connect(ioc, options());
        for (int attempt = 0; attempt < 2; ++attempt) {
            auto err = co_await error_of(conn->query(q("SELEC 1"), after(5s)));
            PGTEST_CO_ASSERT_TRUE(err.has_value());
            EXPECT_EQ(err->sqlstate(), "42601") << "attempt " << attempt << ": " << err->what();
        }
        EXPECT_EQ(conn->cached_statements(), 0u);
        EXPECT_TRUE((co_await server_statements(*conn)).empty());
    });
}

// ------------------------------------------------------------------------------ typed errors

TEST(PgErrors, a_failing_statement_fails_its_batch_and_the_connection_stays_usable) {
    ASSERT_TRUE(database_configured());
    run([](asio::io_context& ioc) -> asio::awaitable<void> {
        auto conn = co_await pg::Connection::connect(ioc, options());
        std::vector<Query> batch{q("SELECT 1"), q("SELECT 1/0"), q("SELECT 3")};
        auto err = co_await error_of(conn->execute(batch, after(5s)));
        PGTEST_CO_ASSERT_TRUE(err.has_value());
        EXPECT_EQ(err->sqlstate(), "22012");
        EXPECT_EQ(err->kind(), ErrorKind::data_exception);
        EXPECT_FALSE(err->is_connection_problem());
        EXPECT_FALSE(conn->broken());
        EXPECT_FALSE(conn->in_transaction());
        // The next batch gets its own results, none left over from the failed one.
        std::vector<Query> next{q("SELECT 'x'"), q("SELECT 3"), q("SELECT $1::text", "z")};
        auto r = co_await conn->execute(next, after(5s));
        PGTEST_CO_ASSERT_TRUE(r.size() == 3);
        EXPECT_EQ(r[0].text(0, 0), "x");
        EXPECT_EQ(r[1].int64(0, 0), 3);
        EXPECT_EQ(r[2].text(0, 0), "z");
    });
}

TEST(PgErrors, constraint_violations_carry_their_kind_and_constraint) {
    ASSERT_TRUE(database_configured());
    ScratchSchema s;
    s.exec("CREATE TABLE " + s("parent") + " (id int PRIMARY KEY); INSERT INTO " + s("parent") + " VALUES (1)");
    s.exec("CREATE TABLE " + s("child") + " (id int PRIMARY KEY, parent_id int CONSTRAINT child_parent_fk REFERENCES " +
           s("parent") + " (id), qty int CONSTRAINT child_qty_positive CHECK (qty > 0), email text CONSTRAINT " +
           "child_email_key UNIQUE, name text NOT NULL)");
    const std::string insert =
        "INSERT INTO " + s("child") + " (id, parent_id, qty, email, name) VALUES ($1, $2, $3, $4, $5)";
    const std::string count = "SELECT count(*) FROM " + s("child");
    run([&](asio::io_context& ioc) -> asio::awaitable<void> {
        auto conn = co_await pg::Connection::connect(ioc, options());
        co_await conn->query(q(insert, "1", "1", "1", "a@example.com", "a"), after(5s));

        struct Case {
            std::vector<std::optional<std::string>> params;
            ErrorKind kind;
            const char* sqlstate;
            const char* constraint;
            const char* column;
        };
        const std::vector<Case> cases{
            {{"2", "1", "1", "a@example.com", "b"}, ErrorKind::unique_violation, "23505", "child_email_key", ""},
            {{"3", "99", "1", "c@example.com", "c"}, ErrorKind::foreign_key_violation, "23503", "child_parent_fk", ""},
            {{"4", "1", "0", "d@example.com", "d"}, ErrorKind::check_violation, "23514", "child_qty_positive", ""},
            {{"5", "1", "1", "e@example.com", std::nullopt}, ErrorKind::not_null_violation, "23502", "", "name"},
        };
        for (const auto& c : cases) {
            SCOPED_TRACE(c.sqlstate);
            auto err = co_await error_of(conn->query(with_params(insert, c.params), after(5s)));
            if (!err) {
                ADD_FAILURE() << "the insert succeeded";
                continue;
            }
            EXPECT_EQ(err->kind(), c.kind) << err->what();
            EXPECT_EQ(err->sqlstate(), c.sqlstate);
            EXPECT_EQ(err->constraint(), c.constraint);
            EXPECT_EQ(err->column(), c.column);
            EXPECT_FALSE(conn->broken());
            EXPECT_EQ((co_await conn->query(q(count), after(5s))).int64(0, 0), 1);
        }
    });
}

// ------------------------------------------------------------------------------ connecting

TEST(PgConnection, connecting_to_a_closed_port_fails_quickly_with_a_connection_error) {
    run([](asio::io_context& ioc) -> asio::awaitable<void> {
        auto opts = options("postgresql://mtapi@127.0.0.1:1/mtapi");
        auto t0 = Clock::now();
        auto err = co_await error_of(pg::Connection::connect(ioc, opts));
        PGTEST_CO_ASSERT_TRUE(err.has_value());
        EXPECT_EQ(err->kind(), ErrorKind::connection) << err->what();
        EXPECT_LT(since(t0), 1000ms);
    });
}

TEST(PgConnection, an_unresolvable_host_fails_cleanly_with_a_connection_error) {
    run([](asio::io_context& ioc) -> asio::awaitable<void> {
        auto opts = options("postgresql://mtapi@mtapi-no-such-host.invalid:5432/mtapi");
        opts.connect_timeout = 2s;
        auto t0 = Clock::now();
        auto err = co_await error_of(pg::Connection::connect(ioc, opts));
        PGTEST_CO_ASSERT_TRUE(err.has_value());
        EXPECT_EQ(err->kind(), ErrorKind::connection) << err->what();
        EXPECT_LT(since(t0), 3000ms);
    });
}

// A TCP port on loopback that accepts connections (the kernel completes the handshake) but never
// answers: a database host that hangs.
class SilentServer {
  public:
    SilentServer() {
        fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof addr;
        if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), len) != 0 || ::listen(fd_, 16) != 0 ||
            ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0)
            throw std::runtime_error("cannot open a listening socket");
        port_ = ntohs(addr.sin_port);
    }
    ~SilentServer() { ::close(fd_); }
    SilentServer(const SilentServer&) = delete;
    SilentServer& operator=(const SilentServer&) = delete;
    std::string url() const { return "postgresql://mtapi@127.0.0.1:" + std::to_string(port_) + "/mtapi"; }

  private:
    int fd_ = -1;
    int port_ = 0;
};

TEST(PgConnection, a_server_that_never_answers_times_out_at_the_connect_timeout) {
    SilentServer silent;
    run([&](asio::io_context& ioc) -> asio::awaitable<void> {
        auto opts = options(silent.url());
        opts.connect_timeout = 300ms;
        auto t0 = Clock::now();
        auto err = co_await error_of(pg::Connection::connect(ioc, opts));
        const auto took = since(t0);
        PGTEST_CO_ASSERT_TRUE(err.has_value());
        EXPECT_EQ(err->kind(), ErrorKind::timeout) << err->what();
        EXPECT_GE(took, 250ms);
        EXPECT_LT(took, 1500ms);
    });
}

TEST(PgPool, an_acquire_that_has_to_connect_keeps_to_its_deadline) {
    SilentServer silent;
    run([&](asio::io_context& ioc) -> asio::awaitable<void> {
        pg::PoolOptions po;
        po.connect = options(silent.url());
        po.connect.connect_timeout = 5s;
        pg::Pool pool(ioc, po);
        auto t0 = Clock::now();
        auto err = co_await error_of(pool.acquire(after(300ms)));
        const auto took = since(t0);
        PGTEST_CO_ASSERT_TRUE(err.has_value());
        EXPECT_EQ(err->kind(), ErrorKind::unavailable) << err->what();
        EXPECT_LT(took, 1500ms) << "the connect ran to its own 5 s timeout instead";
        EXPECT_EQ(pool.stats().total, 0u);
    });
}

TEST(PgConnection, connects_by_host_name) {
    ASSERT_TRUE(database_configured());
    // The same server as MTAPI_DATABASE_URL, named instead of numbered.
    std::string url = database_url();
    const auto at = url.find("@127.0.0.1:");
    if (at == std::string::npos) GTEST_SKIP() << "MTAPI_DATABASE_URL does not name 127.0.0.1";
    url.replace(at + 1, 9, "localhost");
    run([&](asio::io_context& ioc) -> asio::awaitable<void> {
        auto conn = co_await pg::Connection::connect(ioc, options(url));
        EXPECT_EQ((co_await conn->query(q("SELECT 11"), after(5s))).int64(0, 0), 11);
    });
}

TEST(PgPool, backs_off_after_a_failed_connect_and_fails_fast_meanwhile) {
    run([](asio::io_context& ioc) -> asio::awaitable<void> {
        pg::PoolOptions po;
        po.connect = options("postgresql://mtapi@127.0.0.1:1/mtapi");
        po.size = 2;
        po.backoff_min = 2s;
        po.backoff_max = 4s;
        pg::Pool pool(ioc, po);
        auto t0 = Clock::now();
        auto first = co_await error_of(pool.acquire(after(2s)));
        PGTEST_CO_ASSERT_TRUE(first.has_value());
        EXPECT_EQ(first->kind(), ErrorKind::unavailable) << first->what();
        EXPECT_TRUE(pool.degraded());
        // Within the backoff (at least 1 s with this configuration) no connect is even attempted.
        for (int i = 0; i < 5; ++i) {
            auto err = co_await error_of(pool.acquire(after(2s)));
            PGTEST_CO_ASSERT_TRUE(err.has_value());
            EXPECT_EQ(err->kind(), ErrorKind::unavailable);
        }
        EXPECT_LT(since(t0), 500ms);
        EXPECT_EQ(pool.stats().connect_failures, 1u);
        EXPECT_EQ(pool.stats().total, 0u);
    });
}

// ------------------------------------------------------------------------------ pool

asio::awaitable<void> one_pooled_query(pg::Pool& pool, int i, std::set<int>& pids, std::size_t& most_open,
                                       int& correct) {
    auto lease = co_await pool.acquire(after(30s));
    most_open = std::max(most_open, pool.stats().total);
    pids.insert(lease->backend_pid());
    auto r = co_await lease->query(q("SELECT $1::int, pg_sleep(0.001)", std::to_string(i)), after(30s));
    if (r.int64(0, 0) == i) ++correct;
}

TEST(PgPool, serves_a_thousand_concurrent_queries_with_a_bounded_number_of_connections) {
    ASSERT_TRUE(database_configured());
    run(
        [](asio::io_context& ioc) -> asio::awaitable<void> {
            pg::Pool pool(ioc, pool_options(4));
            std::set<int> pids;
            std::size_t most_open = 0;
            int correct = 0;
            Join join(ioc);
            for (int i = 0; i < 1000; ++i)
                asio::co_spawn(ioc, one_pooled_query(pool, i, pids, most_open, correct), join.handler());
            EXPECT_TRUE(co_await join.wait(40s)) << join.running() << " queries still running";
            EXPECT_TRUE(join.errors().empty()) << join.errors().size() << " failed, first: " << join.errors().front();
            EXPECT_EQ(correct, 1000);
            EXPECT_LE(most_open, 4u);
            EXPECT_LE(pool.stats().total, 4u);
            EXPECT_LE(pool.stats().connects, 4u);
            EXPECT_LE(pids.size(), 4u);
            EXPECT_EQ(pool.stats().waiting, 0u);
        },
        50s);
}

TEST(PgPool, bounds_its_waiters_and_hands_a_released_connection_to_the_first) {
    ASSERT_TRUE(database_configured());
    run([](asio::io_context& ioc) -> asio::awaitable<void> {
        auto po = pool_options(1);
        po.max_waiters = 2;
        pg::Pool pool(ioc, po);
        auto holder = co_await pool.acquire(after(5s));
        const int pid = holder->backend_pid();

        std::vector<int> order;
        std::vector<int> pids;
        auto waiter = [&](int id) -> asio::awaitable<void> {
            auto lease = co_await pool.acquire(after(5s));
            order.push_back(id);
            pids.push_back(lease->backend_pid());
        };
        Join join(ioc);
        asio::co_spawn(ioc, waiter(1), join.handler());
        asio::co_spawn(ioc, waiter(2), join.handler());
        co_await sleep_for(50ms);
        EXPECT_EQ(pool.stats().waiting, 2u);

        // The queue is full: the third caller is turned away at once, not at its deadline.
        auto t0 = Clock::now();
        auto err = co_await error_of(pool.acquire(after(5s)));
        PGTEST_CO_ASSERT_TRUE(err.has_value());
        EXPECT_EQ(err->kind(), ErrorKind::unavailable);
        EXPECT_LT(since(t0), 100ms);
        EXPECT_TRUE(order.empty());

        holder = pg::Pool::Lease();  // release
        EXPECT_TRUE(co_await join.wait(5s));
        EXPECT_TRUE(join.errors().empty()) << join.errors().front();
        EXPECT_EQ(order, (std::vector<int>{1, 2}));
        EXPECT_EQ(pids, (std::vector<int>{pid, pid}));
        EXPECT_EQ(pool.stats().connects, 1u);
    });
}

TEST(PgPool, a_waiter_gets_a_new_connection_when_the_leased_one_is_discarded) {
    ASSERT_TRUE(database_configured());
    run([](asio::io_context& ioc) -> asio::awaitable<void> {
        pg::Pool pool(ioc, pool_options(1));
        auto holder = co_await pool.acquire(after(5s));
        const int old_pid = holder->backend_pid();
        int new_pid = 0;
        Join join(ioc);
        asio::co_spawn(
            ioc,
            [&]() -> asio::awaitable<void> {
                auto lease = co_await pool.acquire(after(5s));
                new_pid = co_await backend_pid_of(*lease);
            },
            join.handler());
        co_await sleep_for(50ms);
        EXPECT_EQ(pool.stats().waiting, 1u);
        holder.discard();
        EXPECT_TRUE(co_await join.wait(5s));
        EXPECT_TRUE(join.errors().empty()) << join.errors().front();
        EXPECT_NE(new_pid, 0);
        EXPECT_NE(new_pid, old_pid);
        EXPECT_EQ(pool.stats().total, 1u);
        EXPECT_EQ(pool.stats().connects, 2u);
        EXPECT_EQ(pool.stats().discarded, 1u);
    });
}

TEST(PgPool, a_waiter_gives_up_at_its_deadline_and_leaves_the_queue) {
    ASSERT_TRUE(database_configured());
    run([](asio::io_context& ioc) -> asio::awaitable<void> {
        pg::Pool pool(ioc, pool_options(1));
        auto holder = co_await pool.acquire(after(5s));
        const int pid = holder->backend_pid();

        auto t0 = Clock::now();
        auto err = co_await error_of(pool.acquire(after(200ms)));
        const auto waited = since(t0);
        PGTEST_CO_ASSERT_TRUE(err.has_value());
        EXPECT_EQ(err->kind(), ErrorKind::unavailable);
        EXPECT_GE(waited, 150ms);
        EXPECT_LT(waited, 1000ms);
        EXPECT_EQ(pool.stats().waiting, 0u);

        // Released now, the connection goes back to the pool, not to the caller that gave up.
        holder = pg::Pool::Lease();
        EXPECT_EQ(pool.stats().idle, 1u);
        auto again = co_await pool.acquire(after(1s));
        EXPECT_EQ(again->backend_pid(), pid);
    });
}

TEST(PgPool, never_reuses_a_connection_released_inside_a_transaction) {
    ASSERT_TRUE(database_configured());
    ScratchSchema s;
    const std::string default_path = s.value("SELECT current_setting('search_path')");
    run([&](asio::io_context& ioc) -> asio::awaitable<void> {
        pg::Pool pool(ioc, pool_options(1));

        // Control: a clean connection comes back.
        int clean_pid = 0;
        {
            auto lease = co_await pool.acquire(after(5s));
            clean_pid = co_await backend_pid_of(*lease);
        }
        {
            auto lease = co_await pool.acquire(after(5s));
            EXPECT_EQ(co_await backend_pid_of(*lease), clean_pid);
        }
        EXPECT_EQ(pool.stats().discarded, 0u);

        // A transaction left open with a transaction-local setting.
        int open_pid = 0;
        {
            auto lease = co_await pool.acquire(after(5s));
            std::vector<Query> batch{unnamed("BEGIN"), q("SELECT set_config('search_path', $1, true)", s.name())};
            co_await lease->execute(batch, after(5s));
            EXPECT_TRUE(lease->in_transaction());
            open_pid = lease->backend_pid();
        }
        EXPECT_EQ(pool.stats().discarded, 1u);
        {
            auto lease = co_await pool.acquire(after(5s));
            auto r = co_await lease->query(q("SELECT current_setting('search_path'), pg_backend_pid()"), after(5s));
            EXPECT_EQ(r.text(0, 0), default_path);
            EXPECT_NE(r.int64(0, 1), open_pid);
            EXPECT_FALSE(lease->in_transaction());
        }

        // A transaction that failed (and so is still open) is not reused either.
        int failed_pid = 0;
        {
            auto lease = co_await pool.acquire(after(5s));
            failed_pid = lease->backend_pid();
            std::vector<Query> batch{unnamed("BEGIN"), q("SELECT 1/0")};
            auto err = co_await error_of(lease->execute(batch, after(5s)));
            EXPECT_TRUE(err.has_value());
            EXPECT_TRUE(lease->in_transaction());
        }
        EXPECT_EQ(pool.stats().discarded, 2u);
        {
            auto lease = co_await pool.acquire(after(5s));
            EXPECT_NE(co_await backend_pid_of(*lease), failed_pid);
        }
    });
}

// ------------------------------------------------------------------------------ affinity

// Leases `n` connections at once (so the pool opens n), labels them `labels[i]`, and returns
// them in order, so they become idle in that order. Returns their backend pids.
asio::awaitable<std::vector<int>> open_labelled(pg::Pool& pool, const std::vector<std::string>& labels) {
    std::vector<pg::Pool::Lease> leases;
    std::vector<int> pids;
    for (const auto& label : labels) {
        auto lease = co_await pool.acquire(after(5s));
        lease->set_affinity(label);
        pids.push_back(lease->backend_pid());
        leases.push_back(std::move(lease));
    }
    for (auto& lease : leases)
        lease = pg::Pool::Lease();
    co_return pids;
}

TEST(PgPool, prefers_an_idle_connection_last_used_with_the_same_affinity) {
    ASSERT_TRUE(database_configured());
    run([](asio::io_context& ioc) -> asio::awaitable<void> {
        pg::Pool pool(ioc, pool_options(3));
        std::vector<std::string> labels{"tenant_a", "tenant_b", "tenant_c"};
        auto pids = co_await open_labelled(pool, labels);
        PGTEST_CO_ASSERT_TRUE(pids.size() == 3 && pool.stats().idle == 3);
        const std::vector<std::size_t> wanted{1, 2, 0, 1};
        for (int round = 0; round < 3; ++round) {
            for (std::size_t i : wanted) {
                auto lease = co_await pool.acquire(after(5s), labels[i]);
                EXPECT_EQ(lease->backend_pid(), pids[i]) << labels[i];
                EXPECT_EQ(lease->affinity(), labels[i]);
            }
        }
        EXPECT_EQ(pool.stats().affinity_hits, 12u);
        EXPECT_EQ(pool.stats().affinity_misses, 0u);
        EXPECT_EQ(pool.stats().connects, 3u);
    });
}

TEST(PgPool, without_a_matching_connection_takes_the_one_idle_the_longest) {
    ASSERT_TRUE(database_configured());
    run([](asio::io_context& ioc) -> asio::awaitable<void> {
        pg::Pool pool(ioc, pool_options(3));
        std::vector<std::string> labels{"tenant_a", "tenant_b", "tenant_c"};
        auto pids = co_await open_labelled(pool, labels);  // idle since: a, then b, then c
        {
            auto lease = co_await pool.acquire(after(5s), "tenant_x");
            EXPECT_EQ(lease->backend_pid(), pids[0]);
            lease->set_affinity("tenant_x");
        }  // idle since: b, c, x
        {
            auto lease = co_await pool.acquire(after(5s));  // no key: also the one idle the longest
            EXPECT_EQ(lease->backend_pid(), pids[1]);
        }  // idle since: c, x, b
        {
            auto lease = co_await pool.acquire(after(5s), "tenant_x");
            EXPECT_EQ(lease->backend_pid(), pids[0]);
        }
        {
            auto lease = co_await pool.acquire(after(5s), "tenant_y");
            EXPECT_EQ(lease->backend_pid(), pids[2]);
        }
        EXPECT_EQ(pool.stats().affinity_hits, 1u);
        EXPECT_EQ(pool.stats().affinity_misses, 2u);
        EXPECT_EQ(pool.stats().connects, 3u);
    });
}

TEST(PgPool, serves_waiters_in_arrival_order_whatever_their_affinity) {
    ASSERT_TRUE(database_configured());
    run([](asio::io_context& ioc) -> asio::awaitable<void> {
        pg::Pool pool(ioc, pool_options(1));
        auto holder = co_await pool.acquire(after(5s), "tenant_a");
        holder->set_affinity("tenant_a");
        std::vector<int> order;
        auto waiter = [&](int id, std::string key) -> asio::awaitable<void> {
            auto lease = co_await pool.acquire(after(5s), key);
            order.push_back(id);
            lease->set_affinity(key);
            co_await sleep_for(5ms);
        };
        Join join(ioc);
        // The first in line wants another tenant; those behind it want the connection's own.
        asio::co_spawn(ioc, waiter(1, "tenant_b"), join.handler());
        asio::co_spawn(ioc, waiter(2, "tenant_a"), join.handler());
        asio::co_spawn(ioc, waiter(3, "tenant_b"), join.handler());
        asio::co_spawn(ioc, waiter(4, "tenant_a"), join.handler());
        co_await sleep_for(50ms);
        EXPECT_EQ(pool.stats().waiting, 4u);
        holder = pg::Pool::Lease();
        EXPECT_TRUE(co_await join.wait(5s));
        EXPECT_TRUE(join.errors().empty()) << join.errors().front();
        EXPECT_EQ(order, (std::vector<int>{1, 2, 3, 4}));
        EXPECT_EQ(pool.stats().waiting, 0u);
        EXPECT_EQ(pool.stats().connects, 1u);
    });
}

// ------------------------------------------------------------------------------ dying backends

TEST(PgConnection, check_alive_reports_a_backend_terminated_while_idle) {
    ASSERT_TRUE(database_configured());
    run([](asio::io_context& ioc) -> asio::awaitable<void> {
        auto conn = co_await pg::Connection::connect(ioc, options());
        const int pid = co_await backend_pid_of(*conn);
        EXPECT_TRUE(conn->check_alive());
        PGTEST_CO_ASSERT_TRUE(terminate_backends({pid}) == 1);
        co_await sleep_for(100ms);  // the server's goodbye and its close have arrived by now
        EXPECT_FALSE(conn->check_alive()) << "the backend was terminated 100 ms ago";
        auto err = co_await error_of(conn->query(q("SELECT 1"), after(2s)));
        PGTEST_CO_ASSERT_TRUE(err.has_value());
        EXPECT_EQ(err->kind(), ErrorKind::connection) << err->what();
        EXPECT_TRUE(conn->broken());
    });
}

TEST(PgPool, a_statement_in_flight_on_a_terminated_backend_fails_with_a_connection_error) {
    ASSERT_TRUE(database_configured());
    run([](asio::io_context& ioc) -> asio::awaitable<void> {
        pg::Pool pool(ioc, pool_options(2));
        auto lease = co_await pool.acquire(after(5s));
        const int pid = lease->backend_pid();

        std::optional<pg::Error> err;
        bool finished = false;
        Join join(ioc);
        asio::co_spawn(
            ioc,
            [&]() -> asio::awaitable<void> {
                err = co_await error_of(lease->query(unnamed("SELECT pg_sleep(5)"), after(15s)));
                finished = true;
            },
            join.handler());
        PGTEST_CO_ASSERT_TRUE(co_await wait_until_running(pid, "pg_sleep", 3s));
        auto t0 = Clock::now();
        EXPECT_EQ(terminate_backends({pid}), 1);
        EXPECT_TRUE(co_await join.wait(10s));
        const auto took = since(t0);
        PGTEST_CO_ASSERT_TRUE(finished);
        PGTEST_CO_ASSERT_TRUE(err.has_value());
        EXPECT_EQ(err->kind(), ErrorKind::connection) << err->what();
        EXPECT_LT(took, 2000ms) << "the statement was not interrupted";
        EXPECT_TRUE(lease->broken());

        lease = pg::Pool::Lease();
        EXPECT_EQ(pool.stats().discarded, 1u);
        auto next = co_await pool.acquire(after(5s));
        EXPECT_NE(co_await backend_pid_of(*next), pid);
    });
}

TEST(PgPool, replaces_idle_connections_whose_backends_were_terminated) {
    ASSERT_TRUE(database_configured());
    run([](asio::io_context& ioc) -> asio::awaitable<void> {
        pg::Pool pool(ioc, pool_options(2));
        std::vector<int> old_pids;
        {
            auto a = co_await pool.acquire(after(5s));
            auto b = co_await pool.acquire(after(5s));
            old_pids.push_back(co_await backend_pid_of(*a));
            old_pids.push_back(co_await backend_pid_of(*b));
        }
        EXPECT_EQ(pool.stats().idle, 2u);
        PGTEST_CO_ASSERT_TRUE(terminate_backends(old_pids) == 2);
        co_await sleep_for(100ms);

        // The same pool, nothing restarted: the next caller gets a working connection.
        for (int i = 0; i < 2; ++i) {
            auto lease = co_await pool.acquire(after(5s));
            const int pid = lease->backend_pid();
            auto r = co_await error_of(lease->query(q("SELECT 1"), after(5s)));
            EXPECT_FALSE(r) << "query " << i << " on backend " << pid << " (terminated: " << old_pids[0] << ", "
                            << old_pids[1] << "): " << pg::kind_name(r->kind()) << ": " << r->what();
            EXPECT_NE(pid, old_pids[0]);
            EXPECT_NE(pid, old_pids[1]);
        }
        EXPECT_EQ(pool.stats().discarded, 2u);
    });
}

TEST(PgPool, replaces_idle_connections_the_server_closed_after_its_idle_session_timeout) {
    ASSERT_TRUE(database_configured());
    run([](asio::io_context& ioc) -> asio::awaitable<void> {
        pg::Pool pool(ioc, pool_options(1));
        int old_pid = 0;
        {
            auto lease = co_await pool.acquire(after(5s));
            old_pid = lease->backend_pid();
            co_await lease->query(unnamed("SET idle_session_timeout = '100ms'"), after(5s));
        }
        co_await sleep_for(400ms);  // the server has said goodbye and closed the connection by now

        auto lease = co_await pool.acquire(after(5s));
        const int pid = lease->backend_pid();
        auto err = co_await error_of(lease->query(q("SELECT 1"), after(5s)));
        EXPECT_FALSE(err) << "query on backend " << pid << " (closed: " << old_pid
                          << "): " << pg::kind_name(err->kind()) << ": " << err->what();
        EXPECT_NE(pid, old_pid);
    });
}

// ------------------------------------------------------------------------------ deadlines

TEST(PgPool, a_statement_past_its_deadline_times_out_and_its_connection_is_dropped) {
    ASSERT_TRUE(database_configured());
    int sleeping_pid = 0;
    run([&](asio::io_context& ioc) -> asio::awaitable<void> {
        pg::Pool pool(ioc, pool_options(1));
        auto lease = co_await pool.acquire(after(5s));
        sleeping_pid = lease->backend_pid();
        auto t0 = Clock::now();
        auto err = co_await error_of(lease->query(unnamed("SELECT pg_sleep(10)"), after(200ms)));
        const auto took = since(t0);
        PGTEST_CO_ASSERT_TRUE(err.has_value());
        EXPECT_EQ(err->kind(), ErrorKind::timeout) << err->what();
        EXPECT_GE(took, 150ms);
        EXPECT_LT(took, 1000ms);
        EXPECT_TRUE(lease->broken());
        // A broken connection refuses further work at once.
        auto again = co_await error_of(lease->query(q("SELECT 1"), after(5s)));
        PGTEST_CO_ASSERT_TRUE(again.has_value());
        EXPECT_EQ(again->kind(), ErrorKind::connection);

        lease = pg::Pool::Lease();
        EXPECT_EQ(pool.stats().discarded, 1u);
        EXPECT_EQ(pool.stats().total, 0u);
        auto fresh = co_await pool.acquire(after(5s));
        EXPECT_NE(co_await backend_pid_of(*fresh), sleeping_pid);
    });
    // The server is still sleeping for the abandoned statement.
    if (sleeping_pid != 0) terminate_backends({sleeping_pid});
}

}  // namespace
}  // namespace mtapi::pgtest
