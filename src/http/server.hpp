#pragma once
// The HTTP/1.1 server: N shards, each a thread running its own io_context with its own
// SO_REUSEPORT acceptor, so connections are spread by the kernel and a connection lives on one
// thread for its whole life (no locks on the request path).

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "http/router.hpp"
#include "obs/metrics.hpp"

namespace boost::asio {
class io_context;
}

namespace mtapi::http {

struct ServerOptions {
    std::string host = "127.0.0.1";
    std::uint16_t port = 8000;  // 0: pick a free port (see Server::port())
    unsigned threads = 1;
    std::size_t header_limit = 16 * 1024;             // request line + header fields → 431 beyond
    std::size_t request_line_limit = 8 * 1024;        // → 414 beyond
    std::size_t body_limit = 1024 * 1024;             // → 413 beyond
    std::chrono::milliseconds read_timeout{10'000};   // a whole request, head and body
    std::chrono::milliseconds idle_timeout{60'000};   // keep-alive wait for the next request
    std::chrono::milliseconds drain_timeout{15'000};  // shutdown: bound on finishing in-flight requests
    bool access_log = true;
};

class Server {
  public:
    Server(ServerOptions options, std::shared_ptr<const Router> router, std::shared_ptr<obs::HttpMetrics> metrics);
    ~Server();
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;

    // Binds every shard's acceptor; throws std::runtime_error with a readable message on failure.
    void bind();
    std::uint16_t port() const;
    unsigned shards() const;

    // The io_context of a shard, for per-shard resources created before run().
    boost::asio::io_context& shard_context(unsigned shard);

    // Serves until SIGTERM or SIGINT, then drains: stops accepting, closes idle connections, lets
    // in-flight requests finish (bounded by drain_timeout) and returns. A second signal during the
    // drain stops at once.
    void run();

    // Starts the drain from any thread (as a signal would).
    void request_stop();

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace mtapi::http
