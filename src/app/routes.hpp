#pragma once
// Composition of the HTTP surface: which handler serves which route.

#include <memory>

#include "app/app.hpp"
#include "app/config.hpp"
#include "http/router.hpp"
#include "obs/metrics.hpp"

namespace mtapi::app {

// Registers every route of the API on a new router. /metrics renders `registry`.
std::shared_ptr<http::Router> build_router(App& app, std::shared_ptr<obs::MetricsRegistry> registry);

}  // namespace mtapi::app
