#include "http/router.hpp"

#include <gtest/gtest.h>

using namespace mtapi::http;

namespace {

boost::asio::awaitable<Response> ok(RequestContext&) {
    co_return Response::json(200, "{}");
}

Router make_router() {
    Router r;
    r.add(Method::get, "/health", ok);
    r.add(Method::get, "/api/v1/vehicles", ok);
    r.add(Method::post, "/api/v1/vehicles", ok);
    r.add(Method::get, "/api/v1/vehicles/{id}", ok);
    r.add(Method::patch, "/api/v1/vehicles/{id}", ok);
    r.add(Method::del, "/api/v1/vehicles/{id}", ok);
    r.add(Method::get, "/api/v1/admin/tenants/{id}", ok);
    r.add(Method::get, "/api/v1/users/{id}", ok);
    r.add(Method::get, "/api/v1/users/me", ok);
    return r;
}

}  // namespace

TEST(Router, matches_literal_route) {
    Router r = make_router();
    auto m = r.match(Method::get, "/health");
    ASSERT_NE(m.handler, nullptr);
    EXPECT_EQ(m.pattern, "/health");
    EXPECT_EQ(m.route, 0);
    EXPECT_TRUE(m.params.empty());
}

TEST(Router, extracts_path_parameters) {
    Router r = make_router();
    auto m = r.match(Method::patch, "/api/v1/vehicles/0190a6f2-7c1e-7a4b-8c3d-1234567890ab");
    ASSERT_NE(m.handler, nullptr);
    EXPECT_EQ(m.pattern, "/api/v1/vehicles/{id}");
    ASSERT_EQ(m.params.size(), 1u);
    EXPECT_EQ(m.params[0].name, "id");
    EXPECT_EQ(m.params[0].value, "0190a6f2-7c1e-7a4b-8c3d-1234567890ab");
    EXPECT_EQ(r.routes()[static_cast<std::size_t>(m.route)].method, Method::patch);
}

TEST(Router, percent_decodes_parameters) {
    Router r = make_router();
    auto m = r.match(Method::get, "/api/v1/admin/tenants/acme%2Dlogistics");
    ASSERT_NE(m.handler, nullptr);
    EXPECT_EQ(m.params[0].value, "acme-logistics");
}

TEST(Router, malformed_percent_encoding_matches_nothing) {
    Router r = make_router();
    auto m = r.match(Method::get, "/api/v1/vehicles/%zz");
    EXPECT_EQ(m.handler, nullptr);
    EXPECT_FALSE(m.path_known);
}

TEST(Router, literal_segment_beats_parameter) {
    Router r = make_router();
    auto me = r.match(Method::get, "/api/v1/users/me");
    ASSERT_NE(me.handler, nullptr);
    EXPECT_EQ(me.pattern, "/api/v1/users/me");
    auto other = r.match(Method::get, "/api/v1/users/abc");
    ASSERT_NE(other.handler, nullptr);
    EXPECT_EQ(other.pattern, "/api/v1/users/{id}");
}

TEST(Router, unknown_path_is_not_found) {
    Router r = make_router();
    for (const char* path : {"/nope", "/api/v1/vehicles/1/extra", "/api/v2/vehicles", "", "health", "/health/",
                             "/api//v1/vehicles", "/api/v1/Vehicles"}) {
        auto m = r.match(Method::get, path);
        EXPECT_EQ(m.handler, nullptr) << path;
        EXPECT_FALSE(m.path_known) << path;
    }
}

TEST(Router, wrong_method_reports_allowed_methods) {
    Router r = make_router();
    auto m = r.match(Method::put, "/api/v1/vehicles/x");
    EXPECT_EQ(m.handler, nullptr);
    EXPECT_TRUE(m.path_known);
    EXPECT_EQ(m.pattern, "/api/v1/vehicles/{id}");
    EXPECT_EQ(m.allow, "GET, HEAD, PATCH, DELETE");

    auto list = r.match(Method::del, "/api/v1/vehicles");
    EXPECT_TRUE(list.path_known);
    EXPECT_EQ(list.allow, "GET, HEAD, POST");
}

TEST(Router, head_falls_back_to_get) {
    Router r = make_router();
    auto m = r.match(Method::head, "/health");
    ASSERT_NE(m.handler, nullptr);
    EXPECT_EQ(r.routes()[static_cast<std::size_t>(m.route)].method, Method::get);
}

TEST(Router, literal_paths_match_exactly_and_per_method) {
    Router r = make_router();
    auto post = r.match(Method::post, "/api/v1/vehicles");
    ASSERT_NE(post.handler, nullptr);
    EXPECT_EQ(r.routes()[static_cast<std::size_t>(post.route)].method, Method::post);
    EXPECT_EQ(post.pattern, "/api/v1/vehicles");

    auto wrong = r.match(Method::post, "/health");
    EXPECT_EQ(wrong.handler, nullptr);
    EXPECT_TRUE(wrong.path_known);
    EXPECT_EQ(wrong.allow, "GET, HEAD");

    EXPECT_FALSE(r.match(Method::get, "/health/").path_known);
    EXPECT_FALSE(r.match(Method::get, "/healthz").path_known);
    EXPECT_FALSE(r.match(Method::get, "/Health").path_known);
}

TEST(Router, rejects_duplicate_and_malformed_templates) {
    Router r;
    r.add(Method::get, "/a/{id}", ok);
    EXPECT_THROW(r.add(Method::get, "/a/{id}", ok), std::invalid_argument);
    EXPECT_THROW(r.add(Method::get, "no-slash", ok), std::invalid_argument);
    EXPECT_THROW(r.add(Method::get, "/a//b", ok), std::invalid_argument);
    EXPECT_THROW(r.add(Method::get, "/a/{}", ok), std::invalid_argument);
    EXPECT_THROW(r.add(Method::get, "/a/{x", ok), std::invalid_argument);
    EXPECT_THROW(r.add(Method::head, "/b", ok), std::invalid_argument);
}

TEST(Router, decodes_only_its_own_segment) {
    Router r = make_router();
    // The path is not NUL-terminated in a request buffer: decoding must stop at the segment end.
    std::string buffer = "/api/v1/admin/tenants/a%2Db HTTP/1.1\r\n";
    std::string_view path(buffer.data(), buffer.find(' '));
    auto m = r.match(Method::get, path);
    ASSERT_NE(m.handler, nullptr);
    EXPECT_EQ(m.params[0].value, "a-b");
}
