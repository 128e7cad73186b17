// mtapi: the command-line entry point.

#include <CLI/CLI.hpp>
#include <iostream>
#include <map>

#include "app/config.hpp"
#include "app/routes.hpp"
#include "http/server.hpp"
#include "obs/log.hpp"
#include "obs/metrics.hpp"

namespace {

constexpr int kExitConfig = 2;

int serve(const mtapi::app::Config& config) {
    using namespace mtapi;
    obs::set_level(config.log_level);
    auto registry = std::make_shared<obs::MetricsRegistry>();
    auto router = app::build_router(config, registry);
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
        return 1;
    }
    std::string url = "http://";
    bool v6 = config.listen_host.find(':') != std::string::npos;
    url += v6 ? "[" + config.listen_host + "]" : config.listen_host;
    url += ":" + std::to_string(server.port());
    obs::info("listening", {{"url", url}, {"threads", config.threads}, {"version", MTAPI_VERSION}});
    server.run();
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App cli{"mtapi — multi-tenant REST API server"};
    cli.require_subcommand(1);
    cli.set_version_flag("--version", std::string("mtapi ") + MTAPI_VERSION);

    auto* serve_cmd = cli.add_subcommand("serve", "serve the HTTP API");
    std::map<std::string, std::string> values;
    std::vector<std::pair<std::string, CLI::Option*>> options;
    for (const auto& s : mtapi::app::settings()) {
        std::string help = std::string(s.help) + " [env " + std::string(s.env) + "]";
        if (!s.fallback.empty()) help += " (default " + std::string(s.fallback) + ")";
        auto* opt = serve_cmd->add_option("--" + std::string(s.flag), values[std::string(s.env)], help);
        options.emplace_back(std::string(s.env), opt);
    }
    cli.add_subcommand("version", "print the version");

    try {
        cli.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return cli.exit(e);
    } catch (const CLI::CallForVersion& e) {
        return cli.exit(e);
    } catch (const CLI::ParseError& e) {
        std::cerr << "mtapi: " << e.what() << " (see mtapi --help)\n";
        return kExitConfig;
    }

    if (cli.got_subcommand("version")) {
        std::cout << "mtapi " << MTAPI_VERSION << "\n";
        return 0;
    }

    std::map<std::string, std::string> overrides;
    for (const auto& [env, opt] : options)
        if (opt->count() > 0) overrides[env] = values[env];
    mtapi::app::Config config;
    try {
        config = mtapi::app::load_config(mtapi::app::process_env(), overrides);
    } catch (const mtapi::app::ConfigError& e) {
        std::cerr << "mtapi: " << e.what() << "\n";
        return kExitConfig;
    }
    return serve(config);
}
