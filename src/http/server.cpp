#include "http/server.hpp"

#include <pthread.h>
#include <sys/socket.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <csignal>
#include <stdexcept>
#include <thread>

#include "http/shard.hpp"
#include "obs/log.hpp"

namespace mtapi::http {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using reuse_port = asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;
constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);

asio::awaitable<void> accept_loop(detail::Shard& shard) {
    asio::steady_timer backoff(shard.ioc);
    for (;;) {
        auto [ec, socket] = co_await shard.acceptor->async_accept(nothrow);
        if (ec) {
            if (ec == asio::error::operation_aborted || !shard.acceptor->is_open()) co_return;
            // Out of descriptors or a transient network error: wait a little rather than spin.
            obs::warn("accept failed", {{"error", ec.message()}, {"shard", shard.index}});
            backoff.expires_after(std::chrono::milliseconds(50));
            co_await backoff.async_wait(nothrow);
            continue;
        }
        boost::system::error_code ignored;
        socket.set_option(tcp::no_delay(true), ignored);
        shard.metrics.connection_accepted(shard.index);
        asio::co_spawn(shard.ioc, detail::run_session(shard, std::move(socket)), asio::detached);
    }
}

asio::awaitable<void> flush_loop(detail::Shard& shard) {
    asio::steady_timer timer(shard.ioc);
    for (;;) {
        timer.expires_after(std::chrono::milliseconds(200));
        auto [ec] = co_await timer.async_wait(nothrow);
        if (ec) co_return;
        shard.access_log.flush();
    }
}

// One timer per shard enforces every connection's deadline (see SessionHook), instead of a timer
// per connection re-armed for each read and write. The period bounds how late a timeout fires.
std::chrono::milliseconds watchdog_period(const ServerOptions& o) {
    auto p = std::min({std::chrono::milliseconds(250), o.read_timeout / 4, o.idle_timeout / 4});
    return std::max(p, std::chrono::milliseconds(10));
}

asio::awaitable<void> watchdog_loop(detail::Shard& shard) {
    asio::steady_timer timer(shard.ioc);
    const auto period = watchdog_period(shard.options);
    for (;;) {
        timer.expires_after(period);
        auto [ec] = co_await timer.async_wait(nothrow);
        if (ec) co_return;
        shard.expire_sessions(detail::SessionHook::Clock::now());
    }
}

tcp::endpoint resolve_listen(const std::string& host, std::uint16_t port) {
    boost::system::error_code ec;
    auto addr = asio::ip::make_address(host, ec);
    if (!ec) return {addr, port};
    asio::io_context ioc;
    tcp::resolver resolver(ioc);
    auto results = resolver.resolve(host, std::to_string(port), ec);
    if (ec || results.empty()) throw std::runtime_error("cannot resolve listen host '" + host + "'");
    return *results.begin();
}

}  // namespace

struct Server::Impl {
    asio::io_context main_ioc{1};  // declared first: destroyed after the shards
    ServerOptions options;
    std::shared_ptr<const Router> router;
    std::shared_ptr<obs::HttpMetrics> metrics;
    std::vector<std::unique_ptr<detail::Shard>> shards;
    std::vector<std::thread> threads;
    std::uint16_t port = 0;
    bool bound = false;

    void drain();
};

Server::Server(ServerOptions options, std::shared_ptr<const Router> router, std::shared_ptr<obs::HttpMetrics> metrics)
    : impl_(std::make_unique<Impl>()) {
    impl_->options = std::move(options);
    impl_->router = std::move(router);
    impl_->metrics = std::move(metrics);
    if (impl_->options.threads == 0) impl_->options.threads = 1;
    for (unsigned i = 0; i < impl_->options.threads; ++i)
        impl_->shards.push_back(std::make_unique<detail::Shard>(i, impl_->options, *impl_->router, *impl_->metrics));
}

Server::~Server() {
    for (auto& s : impl_->shards)
        s->ioc.stop();
    for (auto& t : impl_->threads)
        if (t.joinable()) t.join();
}

void Server::bind() {
    tcp::endpoint ep = resolve_listen(impl_->options.host, impl_->options.port);
    for (auto& shard : impl_->shards) {
        if (impl_->port != 0) ep.port(impl_->port);
        boost::system::error_code ec;
        shard->acceptor.emplace(shard->ioc);
        shard->acceptor->open(ep.protocol(), ec);
        if (!ec) shard->acceptor->set_option(tcp::acceptor::reuse_address(true), ec);
        if (!ec) shard->acceptor->set_option(reuse_port(true), ec);
        if (!ec) shard->acceptor->bind(ep, ec);
        if (!ec) shard->acceptor->listen(tcp::socket::max_listen_connections, ec);
        if (ec) {
            throw std::runtime_error("cannot listen on " + ep.address().to_string() + ":" + std::to_string(ep.port()) +
                                     ": " + ec.message());
        }
        impl_->port = shard->acceptor->local_endpoint().port();
    }
    impl_->bound = true;
}

std::uint16_t Server::port() const {
    return impl_->port;
}

unsigned Server::shards() const {
    return static_cast<unsigned>(impl_->shards.size());
}

asio::io_context& Server::shard_context(unsigned shard) {
    return impl_->shards.at(shard)->ioc;
}

void Server::request_stop() {
    asio::post(impl_->main_ioc, [this] { impl_->main_ioc.stop(); });
}

void Server::run() {
    if (!impl_->bound) bind();
    for (auto& shard : impl_->shards) {
        asio::co_spawn(shard->ioc, accept_loop(*shard), asio::detached);
        asio::co_spawn(shard->ioc, flush_loop(*shard), asio::detached);
        asio::co_spawn(shard->ioc, watchdog_loop(*shard), asio::detached);
        impl_->threads.emplace_back([s = shard.get()] {
            std::string name = "mtapi-shard-" + std::to_string(s->index);
            pthread_setname_np(pthread_self(), name.c_str());
            s->ioc.run();
        });
    }

    asio::signal_set signals(impl_->main_ioc, SIGINT, SIGTERM);
    signals.async_wait([this](const boost::system::error_code& ec, int sig) {
        if (!ec) obs::info("shutdown requested", {{"signal", sig}});
        impl_->main_ioc.stop();
    });
    impl_->main_ioc.run();
    impl_->main_ioc.restart();

    // A second signal during the drain cuts it short.
    signals.async_wait([this](const boost::system::error_code& ec, int) {
        if (!ec) obs::warn("second signal: stopping without waiting for in-flight requests");
        impl_->main_ioc.stop();
    });
    impl_->drain();
    signals.cancel();
}

void Server::Impl::drain() {
    auto work = asio::make_work_guard(main_ioc);
    std::size_t drained = 0;
    const std::size_t total = shards.size();
    auto shard_done = [this, &drained, total] {
        asio::post(main_ioc, [this, &drained, total] {
            if (++drained == total) main_ioc.stop();
        });
    };
    for (auto& shard : shards) {
        asio::post(shard->ioc, [s = shard.get(), shard_done] {
            s->draining = true;
            boost::system::error_code ignored;
            if (s->acceptor) s->acceptor->close(ignored);
            s->on_drained = shard_done;
            s->close_idle_sessions();
            if (s->session_count == 0) shard_done();
        });
    }
    asio::steady_timer deadline(main_ioc, options.drain_timeout);
    bool timed_out = false;
    deadline.async_wait([this, &timed_out](const boost::system::error_code& ec) {
        if (ec) return;
        timed_out = true;
        main_ioc.stop();
    });
    main_ioc.run();
    deadline.cancel();
    if (timed_out) obs::warn("drain timeout: closing connections that are still busy");

    for (auto& shard : shards)
        shard->ioc.stop();
    for (auto& t : threads)
        if (t.joinable()) t.join();
    threads.clear();
    for (auto& shard : shards) {
        shard->on_drained = nullptr;
        shard->access_log.flush();
    }
    obs::info("stopped", {{"drained_shards", static_cast<std::uint64_t>(drained)}});
}

}  // namespace mtapi::http
