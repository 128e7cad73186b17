#pragma once
// Internal to src/http: one shard's state, touched only from the shard's own thread.

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <functional>
#include <optional>

#include "http/router.hpp"
#include "http/server.hpp"
#include "obs/log.hpp"
#include "obs/metrics.hpp"

namespace mtapi::http::detail {

// Links a live connection into its shard so a drain can reach connections waiting idle.
struct SessionHook {
    SessionHook* prev = nullptr;
    SessionHook* next = nullptr;
    boost::asio::ip::tcp::socket* socket = nullptr;
    bool idle = true;  // waiting for the first byte of a request
};

struct Shard {
    Shard(unsigned index, const ServerOptions& options, const Router& router, obs::HttpMetrics& metrics)
        : index(index), ioc(1), options(options), router(router), metrics(metrics) {
        sessions.prev = sessions.next = &sessions;
    }

    unsigned index;
    boost::asio::io_context ioc;
    std::optional<boost::asio::ip::tcp::acceptor> acceptor;
    const ServerOptions& options;
    const Router& router;
    obs::HttpMetrics& metrics;
    obs::LogBuffer access_log;

    bool draining = false;
    SessionHook sessions;  // sentinel of a circular list
    std::size_t session_count = 0;
    std::function<void()> on_drained;  // run when draining and the last session has ended

    void link(SessionHook& h) {
        h.prev = sessions.prev;
        h.next = &sessions;
        sessions.prev->next = &h;
        sessions.prev = &h;
        ++session_count;
    }
    void unlink(SessionHook& h) {
        h.prev->next = h.next;
        h.next->prev = h.prev;
        --session_count;
        if (draining && session_count == 0 && on_drained) on_drained();
    }
    // Drain: close connections that are between requests; busy ones close after their response.
    void close_idle_sessions() {
        for (SessionHook* h = sessions.next; h != &sessions; h = h->next) {
            if (h->idle && h->socket != nullptr) {
                boost::system::error_code ignored;
                h->socket->cancel(ignored);
            }
        }
    }
};

boost::asio::awaitable<void> run_session(Shard& shard, boost::asio::ip::tcp::socket socket);

}  // namespace mtapi::http::detail
