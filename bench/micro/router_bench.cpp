// Micro-benchmarks of per-request work in the HTTP core: routing and problem rendering.

#include <benchmark/benchmark.h>

#include "http/problem.hpp"
#include "http/router.hpp"
#include "util/uuid.hpp"

using namespace mtapi::http;

namespace {

boost::asio::awaitable<Response> ok(RequestContext&) {
    co_return Response::json(200, "{}");
}

Router make_router() {
    Router r;
    r.add(Method::get, "/health", ok);
    for (const char* res : {"users", "vehicles", "drivers", "trips"}) {
        std::string base = std::string("/api/v1/") + res;
        r.add(Method::get, base, ok);
        r.add(Method::post, base, ok);
        r.add(Method::get, base + "/{id}", ok);
        r.add(Method::patch, base + "/{id}", ok);
        r.add(Method::del, base + "/{id}", ok);
    }
    return r;
}

void BM_RouteLiteral(benchmark::State& state) {
    Router r = make_router();
    for (auto _ : state)
        benchmark::DoNotOptimize(r.match(Method::get, "/health"));
}
BENCHMARK(BM_RouteLiteral);

void BM_RouteWithParameter(benchmark::State& state) {
    Router r = make_router();
    for (auto _ : state)
        benchmark::DoNotOptimize(r.match(Method::get, "/api/v1/trips/0190a6f2-7c1e-7a4b-8c3d-1234567890ab"));
}
BENCHMARK(BM_RouteWithParameter);

void BM_RenderProblem(benchmark::State& state) {
    for (auto _ : state)
        benchmark::DoNotOptimize(render_problem(Problem::not_found(), "/api/v1/trips/x", "req"));
}
BENCHMARK(BM_RenderProblem);

void BM_UuidV7(benchmark::State& state) {
    for (auto _ : state)
        benchmark::DoNotOptimize(mtapi::util::to_string(mtapi::util::uuid_v7()));
}
BENCHMARK(BM_UuidV7);

}  // namespace
