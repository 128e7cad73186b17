// The OpenAPI document (openapi/openapi.json, embedded in the binary) against the router: every
// route the server registers is documented, and every documented operation is served. Also the
// GET /api/v1/openapi.json handler itself (ETag, 304).

#include "api/v1/openapi.hpp"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json/parse.hpp>
#include <set>
#include <string>
#include <vector>

#include "app/routes.hpp"

using namespace mtapi;
namespace json = boost::json;

namespace {

// "GET /api/v1/vehicles/{id}": one operation, as the router and the document both spell it.
using OperationSet = std::set<std::string>;

std::shared_ptr<http::Router> real_router(app::App& app) {
    // The handlers are registered, never invoked (except the document's, which needs nothing),
    // so an App without pools, keys or catalog is enough.
    return app::build_router(app, std::make_shared<obs::MetricsRegistry>());
}

OperationSet router_operations(const http::Router& router) {
    OperationSet out;
    for (const auto& r : router.routes()) {
        if (r.pattern.starts_with("/__test/")) continue;  // only with MTAPI_TEST_ENDPOINTS
        out.insert(std::string(http::method_name(r.method)) + " " + r.pattern);
    }
    return out;
}

json::object document() {
    return json::parse(api::v1::openapi_document()).as_object();
}

const char* const kOperationKeys[] = {"get", "put", "post", "delete", "options", "head", "patch", "trace"};

std::string upper(std::string_view s) {
    std::string out(s);
    for (char& c : out)
        c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return out;
}

OperationSet document_operations(const json::object& doc) {
    OperationSet out;
    for (const auto& [path, item] : doc.at("paths").as_object())
        for (const char* key : kOperationKeys)
            if (item.as_object().contains(key)) out.insert(upper(key) + " " + std::string(path));
    return out;
}

std::string list(const OperationSet& ops) {
    std::string out;
    for (const auto& op : ops)
        out += "\n  " + op;
    return out;
}

http::Response get_document(const http::Router& router, std::string_view if_none_match = {}) {
    auto m = router.match(http::Method::get, "/api/v1/openapi.json");
    EXPECT_NE(m.handler, nullptr);
    if (m.handler == nullptr) return {};
    http::RequestContext ctx;
    ctx.method = http::Method::get;
    ctx.path = ctx.target = "/api/v1/openapi.json";
    if (!if_none_match.empty()) ctx.headers.emplace_back("If-None-Match", if_none_match);
    boost::asio::io_context io;
    auto done = boost::asio::co_spawn(io, (*m.handler)(ctx), boost::asio::use_future);
    io.run();
    return done.get();
}

std::string header(const http::Response& r, std::string_view name) {
    for (const auto& h : r.headers)
        if (http::iequals(h.name, name)) return h.value;
    return {};
}

}  // namespace

TEST(OpenApi, document_is_openapi_3_1_of_this_version) {
    auto doc = document();
    EXPECT_EQ(doc.at("openapi").as_string(), "3.1.0");
    EXPECT_EQ(doc.at("info").as_object().at("version").as_string(), MTAPI_VERSION);
}

TEST(OpenApi, every_route_is_documented_and_every_operation_is_routed) {
    app::App app;
    auto router = real_router(app);
    OperationSet routed = router_operations(*router);
    OperationSet documented = document_operations(document());
    ASSERT_FALSE(routed.empty());

    OperationSet undocumented, unrouted;
    for (const auto& op : routed)
        if (!documented.contains(op)) undocumented.insert(op);
    for (const auto& op : documented)
        if (!routed.contains(op)) unrouted.insert(op);
    EXPECT_TRUE(undocumented.empty()) << "routes missing from openapi/openapi.json:" << list(undocumented);
    EXPECT_TRUE(unrouted.empty()) << "operations in openapi/openapi.json that no route serves:" << list(unrouted);
}

TEST(OpenApi, exactly_the_public_operations_need_no_token) {
    const OperationSet kPublic = {"GET /health",
                                  "GET /ready",
                                  "GET /metrics",
                                  "GET /api/v1/openapi.json",
                                  "POST /api/v1/auth/login",
                                  "POST /api/v1/admin/auth/login"};
    auto doc = document();
    for (const auto& [path, item] : doc.at("paths").as_object()) {
        for (const char* key : kOperationKeys) {
            const auto* op = item.as_object().if_contains(key);
            if (op == nullptr) continue;
            std::string name = upper(key) + " " + std::string(path);
            const auto* security = op->as_object().if_contains("security");
            ASSERT_NE(security, nullptr) << name << " declares no security requirement";
            EXPECT_EQ(security->as_array().empty(), kPublic.contains(name)) << name;
        }
    }
}

TEST(OpenApi, served_with_etag_and_content_type) {
    app::App app;
    auto router = real_router(app);
    http::Response r = get_document(*router);
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.content_type, "application/json; charset=utf-8");
    EXPECT_EQ(r.body, api::v1::openapi_document());
    std::string etag = header(r, "ETag");
    EXPECT_EQ(etag, api::v1::openapi_etag());
    ASSERT_EQ(etag.size(), 34u);  // "<32 hex digits>"
    EXPECT_EQ(etag.front(), '"');
    EXPECT_EQ(etag.back(), '"');
    EXPECT_EQ(header(r, "Cache-Control"), "no-cache");
}

TEST(OpenApi, current_etag_answers_304_without_body) {
    app::App app;
    auto router = real_router(app);
    std::string etag(api::v1::openapi_etag());
    for (const std::string& field :
         std::vector<std::string>{etag, "W/" + etag, "\"other\", " + etag, "*", " " + etag + " "}) {
        http::Response r = get_document(*router, field);
        EXPECT_EQ(r.status, 304) << field;
        EXPECT_TRUE(r.body.empty()) << field;
        EXPECT_EQ(header(r, "ETag"), etag) << field;
    }
    for (const std::string& field : std::vector<std::string>{"\"other\"", etag.substr(1, 32), "W/\"x\", \"y\""}) {
        http::Response r = get_document(*router, field);
        EXPECT_EQ(r.status, 200) << field;
    }
}

TEST(OpenApi, if_none_match_parsing) {
    using api::v1::if_none_match_hits;
    const std::string_view tag = "\"abc\"";
    EXPECT_TRUE(if_none_match_hits("\"abc\"", tag));
    EXPECT_TRUE(if_none_match_hits("W/\"abc\"", tag));
    EXPECT_TRUE(if_none_match_hits("\"x\",W/\"abc\"", tag));
    EXPECT_TRUE(if_none_match_hits("\"x\" ,\t \"abc\"", tag));
    EXPECT_TRUE(if_none_match_hits(" * ", tag));
    EXPECT_FALSE(if_none_match_hits("", tag));
    EXPECT_FALSE(if_none_match_hits("abc", tag));
    EXPECT_FALSE(if_none_match_hits("\"abcd\"", tag));
    EXPECT_FALSE(if_none_match_hits("\"ab", tag));
    EXPECT_FALSE(if_none_match_hits("\"x\" \"abc\"", tag));  // not a list: malformed
    EXPECT_FALSE(if_none_match_hits("*, \"x\"", tag));
}
