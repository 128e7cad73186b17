#pragma once
// Integration-test harness: runs the real mtapi binary as a child process and talks HTTP/1.1 to
// it over plain POSIX sockets, so every suite exercises the server exactly as a client would.
//
// Everything here is bounded in time: process start, socket connects, sends and reads all take a
// timeout, so a misbehaving server fails a test instead of hanging it.

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/types.h>

#include <atomic>
#include <boost/json/object.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace mtapi::test {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using namespace std::chrono_literals;

// Name/value pairs; a later pair overrides an earlier one with the same name. An empty value
// counts as unset for mtapi's configuration.
using Env = std::vector<std::pair<std::string, std::string>>;
using Headers = std::vector<std::pair<std::string, std::string>>;

// Milliseconds elapsed since `start`.
milliseconds since(Clock::time_point start);

// What every server started by the harness gets before the test's own variables: an ephemeral
// port on loopback, two shards and the /__test endpoints.
Env default_test_env();

enum class Stream { out, err };

// The mtapi binary (path from MTAPI_BINARY) running as a child process. stdout and stderr are
// captured line by line by a background thread; the port is taken from the "listening" log line.
class ServerProcess {
  public:
    // `env` is applied over the inherited environment and default_test_env(); `args` follow the
    // binary name on the command line.
    explicit ServerProcess(Env env, std::vector<std::string> args = {"serve"});
    ServerProcess() : ServerProcess(Env{}) {}
    // ServerProcess server({{"MTAPI_READ_TIMEOUT", "2s"}});
    ServerProcess(std::initializer_list<std::pair<std::string, std::string>> env) : ServerProcess(Env(env)) {}
    ~ServerProcess();  // SIGKILL if still running, then reap
    ServerProcess(const ServerProcess&) = delete;
    ServerProcess& operator=(const ServerProcess&) = delete;

    // Spawns the binary and waits until it reports the port it listens on.
    ::testing::AssertionResult start(milliseconds timeout = 10s);
    // Spawns the binary without waiting for anything (for runs expected to exit on their own).
    ::testing::AssertionResult launch();

    std::uint16_t port() const;
    pid_t pid() const { return pid_; }

    // Lines received so far on one stream, without their line ends.
    std::vector<std::string> lines(Stream stream = Stream::out) const;
    // The first line of `stream` (including lines already received) for which `pred` is true.
    std::optional<std::string> wait_for_line(const std::function<bool(std::string_view)>& pred, milliseconds timeout,
                                             Stream stream = Stream::out);
    // The first stdout line that is a JSON object for which `pred` is true.
    std::optional<boost::json::object> wait_for_log(const std::function<bool(const boost::json::object&)>& pred,
                                                    milliseconds timeout);

    // Sends a signal to the process; false when it is not running.
    bool signal(int sig);
    // Waits for the process to end and for its output to be fully read. Returns the exit code
    // (128 + signal number when a signal ended it), or nullopt when it is still running.
    std::optional<int> wait_exit(milliseconds timeout);

    // All captured output, for failure messages (the last lines only when there are many).
    std::string output_tail(std::size_t max_lines = 40) const;

  private:
    void reader_loop(int out_fd, int err_fd);
    void add_line(Stream stream, std::string line);
    bool reap(bool block);

    Env env_;
    std::vector<std::string> args_;
    pid_t pid_ = -1;
    std::optional<int> exit_code_;
    std::thread reader_;
    std::atomic<bool> stop_reader_{false};

    mutable std::mutex mutex_;
    std::condition_variable changed_;
    std::vector<std::string> out_lines_;
    std::vector<std::string> err_lines_;
    std::uint16_t port_ = 0;
    bool output_closed_ = false;
};

struct Response {
    int status = 0;  // 0: no response was read (see error)
    std::string version;
    std::string reason;
    Headers headers;
    std::string body;
    std::string error;  // why no response was read

    // First header with this name (case-insensitive); empty when absent.
    std::string header(std::string_view name) const;
    bool has_header(std::string_view name) const;
    std::size_t header_count(std::string_view name) const;
};

enum class ParseResult { complete, incomplete, malformed };

// Parses one response from the start of `data`. `head_request`: the response to a HEAD request
// carries no body. `at_eof`: no more bytes will come (completes a body delimited by close).
ParseResult parse_response(std::string_view data, bool head_request, bool at_eof, Response& out, std::size_t& consumed);

enum class ReadStatus { ok, timeout, eof, reset, error, malformed };
std::string_view to_string(ReadStatus s);

// A blocking-style HTTP/1.1 client connection to 127.0.0.1; every operation has a deadline.
// Bytes received beyond one response are kept for the next read, so pipelined responses that
// arrive together are read one after the other.
class Connection {
  public:
    explicit Connection(std::uint16_t port, milliseconds connect_timeout = 5s);
    ~Connection();
    Connection(Connection&& other) noexcept;
    Connection& operator=(Connection&& other) noexcept;
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    bool connected() const { return fd_ >= 0; }
    const std::string& error() const { return error_; }
    int fd() const { return fd_; }

    // Sends all bytes; false (see error()) on failure or timeout.
    bool send(std::string_view bytes, milliseconds timeout = 10s);
    // Reads one complete response; nullopt on failure (see last_status() and error()).
    std::optional<Response> read_response(milliseconds timeout = 5s, bool head_request = false);
    ReadStatus last_status() const { return status_; }
    // Waits until the peer closes: eof or reset. ok means bytes arrived instead (left in
    // pending()); timeout means the connection stayed open.
    ReadStatus wait_closed(milliseconds timeout);
    // Waits until at least one byte is available or the peer closes; status as for wait_closed.
    ReadStatus wait_readable(milliseconds timeout);
    // Bytes received but not yet consumed by read_response.
    const std::string& pending() const { return buffer_; }

    void shutdown_write();
    void close();

  private:
    // Reads once (after waiting up to `deadline`) into buffer_.
    ReadStatus fill(Clock::time_point deadline);

    int fd_ = -1;
    std::string buffer_;
    std::string error_;
    ReadStatus status_ = ReadStatus::ok;
    bool peer_closed_ = false;
};

// A request with Host added, and Content-Length when there is a body (or the method normally
// has one) and the caller set neither Content-Length nor Transfer-Encoding.
std::string build_request(std::string_view method, std::string_view target, const Headers& headers = {},
                          std::string_view body = {});

// One request on a fresh connection; status 0 and error set on failure.
Response http_request(std::uint16_t port, std::string_view method, std::string_view target, const Headers& headers = {},
                      std::string_view body = {}, milliseconds timeout = 5s);

// Raises the soft RLIMIT_NOFILE of this process (and so of servers it starts) to at least
// `wanted`, within the hard limit; returns the resulting soft limit.
rlim_t raise_open_file_limit(rlim_t wanted);

std::optional<boost::json::object> parse_json_object(std::string_view text);
// 8-4-4-4-12 lowercase or uppercase hexadecimal.
bool is_uuid(std::string_view text);
bool iequals(std::string_view a, std::string_view b);

}  // namespace mtapi::test
