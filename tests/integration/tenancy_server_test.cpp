// The server's view of PostgreSQL, from the outside: `mtapi serve` runs as a child process and
// /ready reports the database truthfully while it is up, while it is stopped and after its
// backends are killed, and the server recovers by itself without a restart.
//
// One test stops the shared test PostgreSQL and another terminates backends, so ctest runs this
// executable on its own (RUN_SERIAL). PostgreSQL is started again in TearDown whatever happened.

#include <signal.h>
#include <sys/types.h>

#include <algorithm>
#include <boost/json/value.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "harness.hpp"
#include "migrate/migrations.hpp"
#include "migrate/runner.hpp"
#include "pg_test_support.hpp"

namespace mtapi::test {
namespace {

std::string json_string(const boost::json::object& o, std::string_view key) {
    auto v = o.if_contains(key);
    return v != nullptr && v->is_string() ? std::string(v->as_string()) : std::string();
}

// One GET /ready, timed.
struct Readiness {
    Response response;
    std::string status;    // "status" of the body
    std::string postgres;  // "checks.postgres" of the body
    milliseconds took{0};
};

Readiness ready(std::uint16_t port, milliseconds timeout = 5s) {
    Readiness r;
    const auto start = Clock::now();
    r.response = http_request(port, "GET", "/ready", {}, {}, timeout);
    r.took = since(start);
    if (auto body = parse_json_object(r.response.body)) {
        r.status = json_string(*body, "status");
        if (auto checks = body->if_contains("checks"); checks != nullptr && checks->is_object())
            r.postgres = json_string(checks->as_object(), "postgres");
    }
    return r;
}

std::string describe(const Readiness& r) {
    return std::to_string(r.response.status) + " in " + std::to_string(r.took.count()) +
           " ms: " + (r.response.status == 0 ? r.response.error : r.response.body);
}

bool running(const ServerProcess& server) {
    return ::kill(server.pid(), 0) == 0;
}

// Local ports of the ESTABLISHED TCP connections that process `pid` holds to `remote_port`: its
// PostgreSQL connections, as pg_stat_activity.client_port knows them.
std::set<int> connected_ports(pid_t pid, int remote_port) {
    namespace fs = std::filesystem;
    std::set<std::string> inodes;
    std::error_code ec;
    const fs::path fds = "/proc/" + std::to_string(pid) + "/fd";
    for (fs::directory_iterator it(fds, ec), end; !ec && it != end; it.increment(ec)) {
        std::error_code link_ec;
        const std::string target = fs::read_symlink(it->path(), link_ec).string();
        if (!link_ec && target.rfind("socket:[", 0) == 0) inodes.insert(target.substr(8, target.size() - 9));
    }
    std::set<int> ports;
    for (const char* table : {"tcp", "tcp6"}) {
        std::ifstream in("/proc/" + std::to_string(pid) + "/net/" + table);
        std::string line;
        std::getline(in, line);  // header
        while (std::getline(in, line)) {
            std::istringstream fields(line);
            std::string slot, local, remote, state, skip, inode;
            fields >> slot >> local >> remote >> state;
            for (int i = 0; i < 5; ++i)
                fields >> skip;  // tx_queue:rx_queue tr:tm->when retrnsmt uid timeout
            fields >> inode;
            if (state != "01" || inodes.count(inode) == 0) continue;
            const int rport = std::stoi(remote.substr(remote.find(':') + 1), nullptr, 16);
            if (rport == remote_port) ports.insert(std::stoi(local.substr(local.find(':') + 1), nullptr, 16));
        }
    }
    return ports;
}

// Backend pids of the server's PostgreSQL connections (pool connections and the catalog
// listener; every one of them is named 'mtapi').
std::vector<int> server_backends(const ServerProcess& server) {
    pgtest::AdminSession su(pgtest::superuser_url());
    const int pg_port = std::stoi(su.value("SELECT current_setting('port')"));
    const auto ports = connected_ports(server.pid(), pg_port);
    if (ports.empty()) return {};
    std::string list;
    for (int p : ports)
        list += (list.empty() ? "" : ",") + std::to_string(p);
    std::vector<int> pids;
    for (const auto& pid : su.column("SELECT pid FROM pg_stat_activity WHERE application_name = 'mtapi' AND "
                                     "client_port IN (" +
                                     list + ")"))
        pids.push_back(std::stoi(pid));
    return pids;
}

class TenancyServer : public ::testing::Test {
  protected:
    static void SetUpTestSuite() {
        if (!pgtest::database_configured()) return;
        // platform.tenants for the catalog the server loads; a no-op when at head.
        pgtest::run([](boost::asio::io_context& ioc) -> boost::asio::awaitable<void> {
            pg::ConnectOptions o = pgtest::options();
            auto conn = co_await pg::Connection::connect(ioc, o);
            migrate::Stream stream = migrate::platform_migrations();
            co_await migrate::migrate_platform(*conn, pgtest::after(60s), stream);
        });
    }
    void SetUp() override {
        ASSERT_TRUE(pgtest::database_configured());
        ASSERT_NE(std::getenv("MTAPI_SOURCE_DIR"), nullptr) << "MTAPI_SOURCE_DIR must point at the repository root";
        pgtest::set_on_hang([] { pgtest::services("pg-start --test"); });
    }
    void TearDown() override {
        // Whatever happened above: leave PostgreSQL running for everything else.
        auto r = pgtest::services("pg-start --test");
        EXPECT_EQ(r.status, 0) << r.output;
        pgtest::set_on_hang(nullptr);
    }

    // A server on the test database, answering /ready with 200 already.
    void start(ServerProcess& server) {
        ASSERT_TRUE(server.start());
        Readiness first;
        const auto start = Clock::now();
        do {
            first = ready(server.port());
        } while (first.response.status != 200 && since(start) < 10s);
        ASSERT_EQ(first.response.status, 200) << describe(first) << "\n" << server.output_tail();
    }
};

TEST_F(TenancyServer, ready_reports_postgres_ok_while_it_is_up) {
    ServerProcess server;
    ASSERT_NO_FATAL_FAILURE(start(server));
    for (int i = 0; i < 5; ++i) {
        Readiness r = ready(server.port());
        EXPECT_EQ(r.response.status, 200) << describe(r);
        EXPECT_EQ(r.response.header("Content-Type"), "application/json; charset=utf-8");
        EXPECT_EQ(r.status, "ready") << describe(r);
        EXPECT_EQ(r.postgres, "ok") << describe(r);
        EXPECT_LT(r.took, 1000ms) << describe(r);
    }
}

TEST_F(TenancyServer, a_postgres_outage_answers_503_quickly_and_the_server_recovers_by_itself) {
    ServerProcess server;
    ASSERT_NO_FATAL_FAILURE(start(server));
    // Connections on both shards before the outage.
    for (int i = 0; i < 6; ++i)
        ASSERT_EQ(ready(server.port()).response.status, 200);

    const auto stop_start = Clock::now();
    auto stopped = pgtest::services("pg-stop --test");
    ASSERT_EQ(stopped.status, 0) << stopped.output;
    std::printf("pg-stop took %lld ms\n", static_cast<long long>(since(stop_start).count()));

    // Down: every answer is a quick 503, liveness is untouched, the process stays up.
    milliseconds slowest{0};
    const auto down_start = Clock::now();
    int answered = 0;
    while (since(down_start) < 3s) {
        Readiness r = ready(server.port(), 5s);
        slowest = std::max(slowest, r.took);
        EXPECT_EQ(r.response.status, 503) << describe(r);
        EXPECT_EQ(r.status, "unavailable") << describe(r);
        EXPECT_NE(r.postgres, "ok") << describe(r);
        EXPECT_LE(r.took, 2000ms) << describe(r);
        Response health = http_request(server.port(), "GET", "/health", {}, {}, 2s);
        EXPECT_EQ(health.status, 200) << health.error << health.body;
        ++answered;
        std::this_thread::sleep_for(100ms);
    }
    std::printf("while down: %d /ready answers, slowest %lld ms\n", answered, static_cast<long long>(slowest.count()));
    ASSERT_TRUE(running(server)) << server.output_tail();

    auto started = pgtest::services("pg-start --test");
    ASSERT_EQ(started.status, 0) << started.output;
    // Recovered means every shard serves again: each pool may still be backing off (at most
    // backoff_max) when PostgreSQL comes back, so wait for a run of 200s, not for the first one.
    const auto up_start = Clock::now();
    std::optional<milliseconds> first_ok;
    int consecutive = 0;
    Readiness r;
    while (consecutive < 10 && since(up_start) < 10s) {
        r = ready(server.port(), 5s);
        if (r.response.status == 200) {
            if (!first_ok) first_ok = since(up_start);
            ++consecutive;
        } else {
            consecutive = 0;
            std::this_thread::sleep_for(50ms);
        }
    }
    const milliseconds recovery = since(up_start);
    std::printf("after pg-start returned: first 200 after %lld ms, every shard serving after %lld ms\n",
                static_cast<long long>(first_ok.value_or(-1ms).count()), static_cast<long long>(recovery.count()));
    EXPECT_EQ(consecutive, 10) << describe(r) << "\n" << server.output_tail();
    EXPECT_EQ(r.postgres, "ok");
    EXPECT_LE(recovery, 10s);
    EXPECT_TRUE(running(server));
    EXPECT_FALSE(server.wait_exit(0ms).has_value()) << server.output_tail();
}

TEST_F(TenancyServer, terminated_backends_are_replaced_without_a_restart) {
    ServerProcess server;
    ASSERT_NO_FATAL_FAILURE(start(server));
    // Connections on both shards (each request takes a connection of its own).
    for (int i = 0; i < 8; ++i)
        ASSERT_EQ(ready(server.port()).response.status, 200);

    const std::vector<int> before = server_backends(server);
    ASSERT_FALSE(before.empty()) << "no PostgreSQL connection of the server was found";
    const int terminated = pgtest::terminate_backends(before);
    EXPECT_EQ(terminated, static_cast<int>(before.size()));
    std::printf("terminated %d backends of the server\n", terminated);

    std::vector<int> statuses;
    for (int i = 0; i < 10; ++i) {
        Readiness r = ready(server.port());
        statuses.push_back(r.response.status);
        if (i > 0) {
            EXPECT_EQ(r.response.status, 200) << "request " << i << ": " << describe(r);
        }
        EXPECT_LE(r.took, 2000ms) << describe(r);
    }
    std::string seen;
    for (int s : statuses)
        seen += std::to_string(s) + " ";
    std::printf("/ready after the kill: %s\n", seen.c_str());
    EXPECT_LE(std::count_if(statuses.begin(), statuses.end(), [](int s) { return s != 200; }), 1) << seen;

    // New backends, none of them the old ones.
    const std::vector<int> after = server_backends(server);
    EXPECT_FALSE(after.empty());
    for (int pid : after)
        EXPECT_EQ(std::count(before.begin(), before.end(), pid), 0) << "backend " << pid << " survived";
    EXPECT_TRUE(running(server)) << server.output_tail();
}

}  // namespace
}  // namespace mtapi::test
