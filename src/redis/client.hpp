#pragma once
// A shard's Redis connection driven by Asio: hiredis's asynchronous context on the shard's
// io_context (the only folder that includes hiredis). Commands from any number of coroutines are
// pipelined on one connection and their replies matched to them in order.
//
// Failure model:
// - Every command has a deadline. A command that is already on the wire cannot be withdrawn, so
//   when a deadline passes the whole connection is dropped: the late command gets
//   Error(timeout), every other command still pending on it gets Error(connection).
// - A dropped connection is reopened by the next command. A failed connect starts a jittered
//   exponential backoff (100 ms → 2 s by default) during which commands fail at once with
//   Error(connection) instead of queueing behind a dead server.
// - A health loop PINGs every second (and reconnects when the backoff allows), so healthy()
//   turns false within about a second of Redis going away and true again soon after it returns,
//   even when no command is being sent.
//
// The client lives on one io_context and must be used from that io_context's thread only;
// healthy() and stats() may be read from any thread. Destroy it before its io_context.

#include <array>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace mtapi::redis {

using Clock = std::chrono::steady_clock;
using Deadline = Clock::time_point;

enum class ErrorKind {
    connection,  // not connected, could not connect, or the connection was lost or dropped
    timeout,     // the command's deadline passed; the connection was dropped
    reply,       // Redis answered with an error reply (code() holds its first word, e.g. NOSCRIPT)
};

const char* kind_name(ErrorKind kind);

class Error : public std::runtime_error {
  public:
    Error(ErrorKind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
    ErrorKind kind() const { return kind_; }
    // The error code of a reply error: its first word ("NOSCRIPT", "WRONGTYPE", "ERR", …).
    std::string_view code() const;

  private:
    ErrorKind kind_;
};

// A reply, copied out of hiredis. Strings and status lines are both in `str`; an error element
// inside an array (e.g. from EXEC) is Type::error with its message in `str`. A top-level error
// reply is never returned: command() throws Error(reply) for it.
struct Reply {
    enum class Type : unsigned char { nil, integer, string, status, array, error };
    Type type = Type::nil;
    long long integer = 0;
    std::string str;
    std::vector<Reply> elements;

    bool is_nil() const { return type == Type::nil; }
    bool is_integer() const { return type == Type::integer; }
    bool is_string() const { return type == Type::string || type == Type::status; }
    bool is_array() const { return type == Type::array; }
};

// Parsed `redis://[[user]:password@]host[:port][/db]` (IPv6 hosts in brackets). Throws
// std::invalid_argument naming what is wrong.
struct Endpoint {
    std::string host = "127.0.0.1";
    std::uint16_t port = 6379;
    int db = 0;
    std::string username;  // AUTH username password (Redis 6 ACL) when both are set
    std::string password;  // AUTH password when only this is set
};
Endpoint parse_url(std::string_view url);

struct ClientOptions {
    std::string url = "redis://127.0.0.1:6379/0";
    std::chrono::milliseconds connect_timeout{1000};  // TCP connect plus AUTH/SELECT
    std::chrono::milliseconds health_interval{1000};  // PING period
    std::chrono::milliseconds health_timeout{500};    // a PING slower than this drops the connection
    std::chrono::milliseconds backoff_min{100};
    std::chrono::milliseconds backoff_max{2000};
};

// Counters of one client (or, summed, of all shards' clients).
struct ClientStats {
    // Upper bounds (microseconds) of the command latency histogram buckets; +Inf is implied.
    static constexpr std::size_t kBuckets = 13;
    static constexpr std::array<std::uint64_t, kBuckets> kBucketBoundsUs = {
        50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 1000000};

    std::uint64_t commands = 0;  // commands answered (including error replies)
    std::uint64_t latency_sum_us = 0;
    std::array<std::uint64_t, kBuckets> latency_buckets{};  // non-cumulative counts
    std::uint64_t reply_errors = 0;
    std::uint64_t connection_errors = 0;  // commands failed for want of a connection
    std::uint64_t timeouts = 0;
    std::uint64_t connects = 0;  // connections established (handshake done)
    std::uint64_t connect_failures = 0;
    std::uint64_t drops = 0;    // established connections lost or dropped
    std::uint64_t healthy = 0;  // clients currently healthy (0 or 1 for one client)

    ClientStats& operator+=(const ClientStats& o);
};

// Prometheus text for the summed stats of all shards' clients:
// mtapi_redis_command_duration_seconds (histogram), mtapi_redis_errors_total{kind},
// mtapi_redis_connects_total, mtapi_redis_connect_failures_total, mtapi_redis_disconnects_total,
// mtapi_redis_healthy_connections.
void render_metrics(std::string& out, const ClientStats& sum);

class Client {
  public:
    // Parses the URL (throws std::invalid_argument) and starts connecting in the background once
    // the io_context runs.
    Client(boost::asio::io_context& ioc, ClientOptions options);
    ~Client();
    Client(const Client&) = delete;
    Client& operator=(const Client&) = delete;

    // Sends one command (argv[0] is the command name) and returns its reply. Throws Error: reply
    // for an error reply, timeout when `deadline` passes first (the connection is then dropped),
    // connection when there is no usable connection.
    boost::asio::awaitable<Reply> command(std::vector<std::string> argv, Deadline deadline);

    // True while connected and the last health check (or handshake) succeeded.
    bool healthy() const;
    // Waits until healthy() or the deadline; returns healthy().
    boost::asio::awaitable<bool> wait_healthy(Deadline deadline);

    // Stops the health loop and drops the connection (pending commands fail with
    // Error(connection)). Further commands fail. Also done by the destructor.
    void close();

    ClientStats stats() const;
    const Endpoint& endpoint() const;

  private:
    struct Impl;
    std::shared_ptr<Impl> impl_;  // shared with the health loop and with commands in flight
};

}  // namespace mtapi::redis
