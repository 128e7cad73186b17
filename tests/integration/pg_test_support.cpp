#include "pg_test_support.hpp"

#include <libpq-fe.h>
#include <sys/wait.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <mutex>
#include <random>
#include <stdexcept>
#include <thread>

namespace mtapi::pgtest {
namespace {

std::string env(const char* name) {
    const char* v = std::getenv(name);
    return v == nullptr ? std::string() : std::string(v);
}

std::mutex hang_mutex;
std::function<void()> hang_cleanup;

// Ends the process when the test thread has not come back within `limit`: a coroutine that
// never yields to the event loop cannot be interrupted any other way.
class Watchdog {
  public:
    Watchdog(milliseconds limit, std::string test) {
        thread_ = std::thread([this, limit, test = std::move(test)] {
            std::unique_lock lock(mutex_);
            if (changed_.wait_for(lock, limit, [this] { return finished_; })) return;
            std::fprintf(stderr, "\n%s: the test thread has not returned to its event loop for %lld ms; ending\n",
                         test.c_str(), static_cast<long long>(limit.count()));
            std::fflush(stderr);
            std::function<void()> cleanup;
            {
                std::lock_guard hang_lock(hang_mutex);
                cleanup = hang_cleanup;
            }
            if (cleanup) cleanup();
            std::_Exit(3);
        });
    }
    ~Watchdog() {
        {
            std::lock_guard lock(mutex_);
            finished_ = true;
        }
        changed_.notify_all();
        thread_.join();
    }
    Watchdog(const Watchdog&) = delete;
    Watchdog& operator=(const Watchdog&) = delete;

  private:
    std::mutex mutex_;
    std::condition_variable changed_;
    bool finished_ = false;
    std::thread thread_;
};

std::string current_test_name() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    return info == nullptr ? std::string("test") : std::string(info->test_suite_name()) + "." + info->name();
}

std::string describe(const pg::Error& e) {
    std::string s = std::string("pg::Error(") + pg::kind_name(e.kind());
    if (!e.sqlstate().empty()) s += ", SQLSTATE " + e.sqlstate();
    if (!e.constraint().empty()) s += ", constraint " + e.constraint();
    return s + "): " + e.what();
}

std::string random_suffix() {
    std::random_device rd;
    std::uint64_t v = (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
    return std::string(buf, 12);
}

void ignore_notice(void*, const char*) {}

}  // namespace

std::string database_url() {
    return env("MTAPI_DATABASE_URL");
}
std::string superuser_url() {
    return env("MTAPI_PG_SUPERUSER_URL");
}

::testing::AssertionResult database_configured() {
    if (database_url().empty() || superuser_url().empty())
        return ::testing::AssertionFailure()
               << "MTAPI_DATABASE_URL and MTAPI_PG_SUPERUSER_URL must be set (make test sets them; by hand: "
                  "scripts/services up --test; set -a; . .var/test.env; set +a)";
    return ::testing::AssertionSuccess();
}

pg::ConnectOptions options(std::string url) {
    pg::ConnectOptions o;
    o.url = std::move(url);
    o.connect_timeout = 5s;
    o.application_name = "mtapi-pg-tests";
    return o;
}

void set_on_hang(std::function<void()> cleanup) {
    std::lock_guard lock(hang_mutex);
    hang_cleanup = std::move(cleanup);
}

void run(const std::function<asio::awaitable<void>(asio::io_context&)>& body, milliseconds limit) {
    auto ioc = std::make_unique<asio::io_context>(1);
    bool done = false;
    std::exception_ptr error;
    asio::co_spawn(*ioc, body(*ioc), [&done, &error](std::exception_ptr e) {
        done = true;
        error = std::move(e);
    });
    {
        Watchdog watchdog(limit + 10s, current_test_name());
        const auto end = Clock::now() + limit;
        while (!done && Clock::now() < end) {
            ioc->run_one_until(end);
            if (ioc->stopped()) break;  // out of work
        }
    }
    if (!done) {
        const bool idle = ioc->stopped();
        (void)ioc.release();  // leaked on purpose: suspended coroutines still refer to the test's objects
        throw std::runtime_error(idle ? "the test coroutine is suspended with nothing left to wake it"
                                      : "the test coroutine did not finish within " + std::to_string(limit.count()) +
                                            " ms");
    }
    if (error) {
        try {
            std::rethrow_exception(error);
        } catch (const pg::Error& e) {
            throw std::runtime_error(describe(e));
        }
    }
}

asio::awaitable<void> sleep_for(milliseconds d) {
    asio::steady_timer timer(co_await asio::this_coro::executor, d);
    co_await timer.async_wait(asio::use_awaitable);
}

std::function<void(std::exception_ptr)> Join::handler() {
    ++running_;
    return [this](std::exception_ptr e) {
        --running_;
        if (!e) return;
        try {
            std::rethrow_exception(e);
        } catch (const pg::Error& err) {
            errors_.push_back(describe(err));
        } catch (const std::exception& err) {
            errors_.push_back(err.what());
        } catch (...) {
            errors_.push_back("unknown exception");
        }
    };
}

asio::awaitable<bool> Join::wait(milliseconds limit) {
    const auto end = Clock::now() + limit;
    while (running_ > 0) {
        if (Clock::now() >= end) co_return false;
        co_await sleep_for(2ms);
    }
    co_return true;
}

// ----------------------------------------------------------------------------- AdminSession

AdminSession::AdminSession(const std::string& url) {
    const char* keys[] = {"dbname", "connect_timeout", "application_name", nullptr};
    const char* values[] = {url.c_str(), "5", "mtapi-pg-tests-admin", nullptr};
    conn_ = PQconnectdbParams(keys, values, 1);
    if (conn_ == nullptr) throw std::runtime_error("admin session: out of memory");
    if (PQstatus(conn_) != CONNECTION_OK) {
        std::string msg = PQerrorMessage(conn_);
        PQfinish(conn_);
        conn_ = nullptr;
        throw std::runtime_error("admin session: cannot connect to " + url + ": " + msg);
    }
    PQsetNoticeProcessor(conn_, ignore_notice, nullptr);
}

AdminSession::~AdminSession() {
    if (conn_ != nullptr) PQfinish(conn_);
}

std::vector<std::string> AdminSession::column(const std::string& sql) {
    PGresult* res = PQexec(conn_, sql.c_str());
    const auto st = PQresultStatus(res);
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
        std::string msg = res != nullptr ? PQresultErrorMessage(res) : PQerrorMessage(conn_);
        PQclear(res);
        throw std::runtime_error("admin session: " + sql + ": " + msg);
    }
    std::vector<std::string> out;
    for (int r = 0; r < PQntuples(res); ++r)
        out.emplace_back(PQgetvalue(res, r, 0), static_cast<std::size_t>(PQgetlength(res, r, 0)));
    PQclear(res);
    return out;
}

std::string AdminSession::value(const std::string& sql) {
    auto col = column(sql);
    return col.empty() ? std::string() : col.front();
}

int terminate_backends(const std::vector<int>& pids) {
    AdminSession su(superuser_url());
    int n = 0;
    for (int pid : pids)
        if (su.value("SELECT pg_terminate_backend(" + std::to_string(pid) + ", 5000)") == "t") ++n;
    return n;
}

asio::awaitable<bool> wait_until_running(int pid, std::string text, milliseconds limit) {
    AdminSession su(superuser_url());
    const std::string sql = "SELECT count(*) FROM pg_stat_activity WHERE pid = " + std::to_string(pid) +
                            " AND state = 'active' AND strpos(query, $q$" + text + "$q$) > 0";
    const auto end = Clock::now() + limit;
    while (Clock::now() < end) {
        if (su.value(sql) == "1") co_return true;
        co_await sleep_for(20ms);
    }
    co_return false;
}

// ----------------------------------------------------------------------------- ScratchSchema

ScratchSchema::ScratchSchema() : admin_(database_url()), name_("pgtest_" + random_suffix()) {
    // Never wait long on a lock a broken test left behind.
    admin_.exec("SET lock_timeout = '5s'");
    admin_.exec("CREATE SCHEMA " + name_);
}

ScratchSchema::~ScratchSchema() {
    try {
        admin_.exec("DROP SCHEMA IF EXISTS " + name_ + " CASCADE");
    } catch (const std::exception& e) {
        std::fprintf(stderr, "scratch schema %s was not dropped: %s\n", name_.c_str(), e.what());
    }
}

// ----------------------------------------------------------------------------- local services

CommandResult services(const std::string& args) {
    CommandResult result;
    const std::string root = env("MTAPI_SOURCE_DIR");
    if (root.empty()) {
        result.output = "MTAPI_SOURCE_DIR is not set (ctest sets it to the repository root)";
        return result;
    }
    const std::string cmd = "cd '" + root + "' && scripts/services " + args + " 2>&1";
    FILE* p = ::popen(cmd.c_str(), "r");
    if (p == nullptr) {
        result.output = "popen failed for: " + cmd;
        return result;
    }
    char buf[512];
    std::size_t n = 0;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0)
        result.output.append(buf, n);
    const int st = ::pclose(p);
    result.status = (st != -1 && WIFEXITED(st)) ? WEXITSTATUS(st) : -1;
    return result;
}

asio::awaitable<CommandResult> services_async(std::string args) {
    auto done = std::async(std::launch::async, [args] { return services(args); });
    while (done.wait_for(0s) != std::future_status::ready)
        co_await sleep_for(20ms);
    co_return done.get();
}

}  // namespace mtapi::pgtest
