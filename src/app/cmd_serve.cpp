#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <iostream>

#include "app/app.hpp"
#include "app/commands.hpp"
#include "app/rate_limiting.hpp"
#include "app/routes.hpp"
#include "http/server.hpp"
#include "obs/log.hpp"
#include "obs/metrics.hpp"

namespace mtapi::app {
namespace {

void add_pool_metrics(obs::MetricsRegistry& registry, App& app) {
    registry.add([&app](std::string& out) {
        // Pool counters are read from another thread without locks; they are plain integers
        // updated by their shard, so a scrape may see a slightly stale value, never a torn one
        // on the platforms mtapi targets.
        std::size_t total = 0, idle = 0, waiting = 0;
        std::uint64_t failures = 0, hits = 0, misses = 0;
        for (const auto& p : app.pools) {
            auto s = p->stats();
            total += s.total;
            idle += s.idle;
            waiting += s.waiting;
            failures += s.connect_failures;
            hits += s.affinity_hits;
            misses += s.affinity_misses;
        }
        obs::append_family(out, "mtapi_db_connections", "gauge", "PostgreSQL connections by state.");
        obs::append_sample(out, "mtapi_db_connections", R"({state="open"})", total);
        obs::append_sample(out, "mtapi_db_connections", R"({state="idle"})", idle);
        obs::append_metric(out, "mtapi_db_waiters", "gauge", "Requests waiting for a PostgreSQL connection.", waiting);
        obs::append_metric(out, "mtapi_db_connect_failures_total", "counter", "Failed PostgreSQL connection attempts.",
                           failures);
        obs::append_family(out, "mtapi_db_affinity_total", "counter",
                           "Idle connections chosen for a tenant transaction: one that last served the same tenant "
                           "(hit) or another (miss).");
        obs::append_sample(out, "mtapi_db_affinity_total", R"({result="hit"})", hits);
        obs::append_sample(out, "mtapi_db_affinity_total", R"({result="miss"})", misses);
    });
}

}  // namespace

int cmd_serve(const Config& config) {
    App app;
    app.config = config;
    try {
        app.keyring = load_keyring(config);
    } catch (const std::exception& e) {
        std::cerr << "mtapi: " << e.what() << "\n";
        return kExitConfig;
    }
    app.cursors = std::make_unique<util::CursorCodec>(cursor_key(config, *app.keyring));
    app.catalog = std::make_shared<tenancy::Catalog>();
    app.hasher = std::make_unique<auth::PasswordHasher>(config.hash_threads, config.hash_queue, hash_params(config));

    auto registry = std::make_shared<obs::MetricsRegistry>();
    auto router = build_router(app, registry);
    std::vector<obs::RouteLabel> labels;
    for (const auto& r : router->routes())
        labels.push_back({std::string(http::method_name(r.method)), r.pattern});
    auto http_metrics = std::make_shared<obs::HttpMetrics>(std::move(labels), config.threads);
    registry->add([http_metrics](std::string& out) { http_metrics->render(out); });

    http::Server server(config.server_options(), router, http_metrics);
    try {
        server.bind();
    } catch (const std::exception& e) {
        std::cerr << "mtapi: " << e.what() << "\n";
        return kExitFailure;
    }
    // Declared after the server: pools go before the io_contexts they are bound to.
    for (unsigned i = 0; i < server.shards(); ++i) {
        app.pools.push_back(std::make_unique<pg::Pool>(server.shard_context(i), pool_options(config)));
        app.contexts.push_back(&server.shard_context(i));
    }
    add_pool_metrics(*registry, app);
    app.rate_limits = std::make_shared<RateLimiting>(config, app.contexts);
    registry->add([limits = std::weak_ptr<RateLimiting>(app.rate_limits)](std::string& out) {
        if (auto l = limits.lock()) l->render_metrics(out);
    });

    auto stop_refresher = std::make_shared<std::atomic<bool>>(false);
    boost::asio::co_spawn(
        server.shard_context(0),
        app.catalog->run_refresher(server.shard_context(0), pool_options(config).connect, stop_refresher),
        boost::asio::detached);

    std::string url = "http://";
    bool v6 = config.listen_host.find(':') != std::string::npos;
    url += v6 ? "[" + config.listen_host + "]" : config.listen_host;
    url += ":" + std::to_string(server.port());
    std::string_view limiter = !app.rate_limits->enabled() ? "off" : app.rate_limits->uses_redis() ? "redis" : "memory";
    obs::info("listening",
              {{"url", url}, {"threads", config.threads}, {"version", MTAPI_VERSION}, {"rate_limit_backend", limiter}});
    server.run();
    stop_refresher->store(true);
    // Before the io_contexts go (with the server): the Redis clients and limiters hold timers and
    // sockets bound to them.
    app.rate_limits->close();
    app.rate_limits.reset();
    app.pools.clear();
    return kExitOk;
}

}  // namespace mtapi::app
