#pragma once
// Support for the PostgreSQL driver and pool tests (src/pg/) against the test cluster that
// `make test` starts: the URLs from the environment, a way to run a coroutine on a private
// io_context with a hard time limit, a blocking libpq session for acting on the server from
// outside the driver (DDL, pg_terminate_backend), and a scratch schema per test.
//
// Environment: MTAPI_DATABASE_URL (the application's login role), MTAPI_PG_SUPERUSER_URL (for
// pg_terminate_backend), MTAPI_SOURCE_DIR (repository root, for scripts/services).

#include <gtest/gtest.h>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <functional>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "pg/connection.hpp"
#include "pg/error.hpp"
#include "pg/pool.hpp"

struct pg_conn;

namespace mtapi::pg {
// Lets GoogleTest print kinds by name in EXPECT_EQ failures.
inline void PrintTo(ErrorKind kind, std::ostream* os) {
    *os << kind_name(kind);
}
}  // namespace mtapi::pg

namespace mtapi::pgtest {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using std::chrono::milliseconds;
using Clock = pg::Clock;

// Inside a coroutine ASSERT_* cannot be used (it returns instead of co_returning): these record
// the failure and end a void coroutine.
#define PGTEST_CO_ASSERT_TRUE(cond)                                  \
    do {                                                             \
        if (!(cond)) {                                               \
            ADD_FAILURE() << "Value of: " #cond "\n  Actual: false"; \
            co_return;                                               \
        }                                                            \
    } while (0)

// ----------------------------------------------------------------------------- environment

std::string database_url();   // MTAPI_DATABASE_URL, empty when unset
std::string superuser_url();  // MTAPI_PG_SUPERUSER_URL, empty when unset
// Success when both URLs are set; otherwise a message saying how to provide them.
::testing::AssertionResult database_configured();

pg::ConnectOptions options(std::string url = database_url());
inline pg::Deadline after(milliseconds d) {
    return Clock::now() + d;
}
inline milliseconds since(Clock::time_point start) {
    return std::chrono::duration_cast<milliseconds>(Clock::now() - start);
}

// ----------------------------------------------------------------------------- running coroutines

// Runs the coroutine made by `body` on a fresh io_context in this thread until it finishes and
// rethrows what it threw (a pg::Error as a std::runtime_error naming its kind and SQLSTATE).
// Throws when it has not finished within `limit`; the io_context and whatever still waits on it
// are then leaked on purpose, so nothing runs against objects the test has already destroyed.
// A watchdog ends the process (after `on_hang`, when set) if the thread is stuck for longer than
// `limit` + 10 s without ever returning to the event loop.
void run(const std::function<asio::awaitable<void>(asio::io_context&)>& body, milliseconds limit = 20s);
// Work to do before the watchdog ends a stuck process (restart a stopped server, …).
void set_on_hang(std::function<void()> cleanup);

// Suspends the calling coroutine for `d` without blocking the io_context.
asio::awaitable<void> sleep_for(milliseconds d);

// Awaits `op` and returns the pg::Error it threw, or nullopt when it completed normally. Other
// exceptions propagate.
template <class T>
asio::awaitable<std::optional<pg::Error>> error_of(asio::awaitable<T> op) {
    try {
        co_await std::move(op);
    } catch (const pg::Error& e) {
        co_return e;
    }
    co_return std::nullopt;
}

// Counts coroutines started with co_spawn and lets the spawning coroutine wait for all of them.
class Join {
  public:
    explicit Join(asio::io_context& ioc) : ioc_(ioc) {}
    // Completion handler for co_spawn: records the end and any exception.
    std::function<void(std::exception_ptr)> handler();
    // Waits until every spawned coroutine ended; false when `limit` passed first.
    asio::awaitable<bool> wait(milliseconds limit);
    std::size_t running() const { return running_; }
    // Messages of exceptions that escaped the coroutines.
    const std::vector<std::string>& errors() const { return errors_; }

  private:
    asio::io_context& ioc_;
    std::size_t running_ = 0;
    std::vector<std::string> errors_;
};

// ----------------------------------------------------------------------------- outside the driver

// A blocking libpq session (simple protocol), independent of the code under test.
class AdminSession {
  public:
    explicit AdminSession(const std::string& url);
    ~AdminSession();
    AdminSession(const AdminSession&) = delete;
    AdminSession& operator=(const AdminSession&) = delete;

    // Runs `sql` and returns the first column of every row (NULL as ""); throws std::runtime_error
    // on failure.
    std::vector<std::string> column(const std::string& sql);
    // The first value of the first row, "" when there is none.
    std::string value(const std::string& sql);
    void exec(const std::string& sql) { column(sql); }

  private:
    pg_conn* conn_ = nullptr;
};

// Terminates the backends with these pids as the superuser and waits until each has exited.
// Returns how many were terminated.
int terminate_backends(const std::vector<int>& pids);

// Polls pg_stat_activity (every 20 ms, without blocking the io_context for long) until backend
// `pid` is running a statement that contains `text`; false after `limit`.
asio::awaitable<bool> wait_until_running(int pid, std::string text, milliseconds limit);

// A schema of its own for one test, created by the application role (which owns the database)
// and dropped with everything in it at the end.
class ScratchSchema {
  public:
    ScratchSchema();
    ~ScratchSchema();
    ScratchSchema(const ScratchSchema&) = delete;
    ScratchSchema& operator=(const ScratchSchema&) = delete;

    const std::string& name() const { return name_; }
    // Schema-qualified name of a table in the scratch schema.
    std::string operator()(std::string_view table) const { return name_ + "." + std::string(table); }
    // Runs SQL as the application role outside the driver (DDL, fixtures).
    void exec(const std::string& sql) { admin_.exec(sql); }
    std::string value(const std::string& sql) { return admin_.value(sql); }

  private:
    AdminSession admin_;
    std::string name_;
};

// ----------------------------------------------------------------------------- local services

struct CommandResult {
    int status = -1;     // exit status; -1 when it could not be run
    std::string output;  // stdout and stderr together
};
// Runs `scripts/services <args>` from MTAPI_SOURCE_DIR and waits for it (blocking).
CommandResult services(const std::string& args);
// The same without blocking the io_context: the script runs on a helper thread and the
// coroutine polls for its end.
asio::awaitable<CommandResult> services_async(std::string args);

}  // namespace mtapi::pgtest
