#pragma once
// Internal to src/http: one shard's state, touched only from the shard's own thread.

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <functional>
#include <optional>

#include "http/router.hpp"
#include "http/server.hpp"
#include "obs/log.hpp"
#include "obs/metrics.hpp"

namespace mtapi::http::detail {

// Links a live connection into its shard so a drain can reach connections waiting idle, and so
// the shard's watchdog can enforce the connection's deadline.
struct SessionHook {
    using Clock = std::chrono::steady_clock;

    SessionHook* prev = nullptr;
    SessionHook* next = nullptr;
    boost::asio::ip::tcp::socket* socket = nullptr;
    // The current phase (request read, response write, keep-alive wait, lingering close) must end
    // by this time; max() while a handler runs. The session sets it as it enters a phase.
    Clock::time_point deadline = Clock::time_point::max();
    bool timed_out = false;  // the watchdog cancelled the socket's operations past the deadline
    bool idle = true;        // waiting for the first byte of a request

    void expires_at(Clock::time_point t) {
        deadline = t;
        timed_out = false;
    }
    void expires_never() { expires_at(Clock::time_point::max()); }
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
    // Watchdog sweep: cancels the pending operations of every connection past its deadline (the
    // session sees operation_aborted with timed_out set). Repeated on every sweep while the
    // deadline stays passed, so an operation started after a cancel cannot outlive it by more
    // than one period.
    void expire_sessions(SessionHook::Clock::time_point now) {
        for (SessionHook* h = sessions.next; h != &sessions; h = h->next) {
            if (h->deadline <= now && h->socket != nullptr) {
                h->timed_out = true;
                boost::system::error_code ignored;
                h->socket->cancel(ignored);
            }
        }
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
