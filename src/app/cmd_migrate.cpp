// `mtapi migrate`: the platform schema, then every tenant schema, to head (SPEC §5).

#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <cstdio>
#include <exception>
#include <optional>
#include <string>

#include "app/commands.hpp"
#include "migrate/progress.hpp"
#include "migrate/runner.hpp"

namespace mtapi::app {
namespace {

migrate::RunOptions run_options(const Config& config, migrate::ProgressPrinter& printer) {
    migrate::RunOptions options;
    options.database_url = config.database_url;
    options.concurrency = config.migrate_concurrency;
    options.on_started = [&printer](const migrate::Report& r) { printer.started(r); };
    options.on_tenant = [&printer](const migrate::TenantRef& t, const migrate::TenantOutcome& o,
                                   const migrate::Report& r) { printer.tenant_done(t, o, r); };
    return options;
}

// One line, whatever went wrong (never a stack or a multi-line server message).
std::string one_line(const std::string& text) {
    std::string out;
    for (char c : text) {
        bool space = c == '\n' || c == '\r' || c == '\t' || c == ' ';
        if (space && (out.empty() || out.back() == ' ')) continue;
        out.push_back(space ? ' ' : c);
    }
    while (!out.empty() && out.back() == ' ')
        out.pop_back();
    return out;
}

}  // namespace

int cmd_migrate(const Config& config) {
    migrate::ProgressPrinter printer(stderr, ::isatty(STDERR_FILENO) == 1);
    boost::asio::io_context ioc;
    std::optional<migrate::Report> report;
    std::exception_ptr failure;
    boost::asio::co_spawn(ioc, migrate::run_all(ioc, run_options(config, printer)),
                          [&](std::exception_ptr e, migrate::Report r) {
                              if (e)
                                  failure = e;
                              else
                                  report = std::move(r);
                          });
    try {
        ioc.run();
        if (failure) std::rethrow_exception(failure);
    } catch (const std::exception& e) {
        printer.clear();
        std::fprintf(stderr, "mtapi: migrate: %s\n", one_line(e.what()).c_str());
        return kExitFailure;
    }
    printer.finish(*report, stdout);
    return report->tenants_failed == 0 ? kExitOk : kExitFailure;
}

}  // namespace mtapi::app
