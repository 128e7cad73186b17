#include "http/problem.hpp"

#include <gtest/gtest.h>

#include <boost/json/parse.hpp>

using namespace mtapi::http;
namespace json = boost::json;

namespace {

json::object parse_body(const Response& r) {
    return json::parse(r.body).as_object();
}

}  // namespace

TEST(Problem, renders_rfc9457_members) {
    Response r = render_problem(Problem::not_found(), "/api/v1/vehicles/x", "req-1");
    EXPECT_EQ(r.status, 404);
    EXPECT_EQ(r.content_type, "application/problem+json; charset=utf-8");
    auto o = parse_body(r);
    EXPECT_EQ(o.at("type").as_string(), "https://mtapi.dev/problems/not-found");
    EXPECT_EQ(o.at("title").as_string(), "Not Found");
    EXPECT_EQ(o.at("status").as_int64(), 404);
    EXPECT_FALSE(o.at("detail").as_string().empty());
    EXPECT_EQ(o.at("instance").as_string(), "/api/v1/vehicles/x");
    EXPECT_EQ(o.at("request_id").as_string(), "req-1");
    EXPECT_FALSE(o.contains("errors"));
}

TEST(Problem, validation_problem_lists_field_errors) {
    Response r = render_problem(Problem::validation({{"plate", "is required"}, {"year", "must be an integer"}}),
                                "/api/v1/vehicles", "r");
    EXPECT_EQ(r.status, 422);
    auto o = parse_body(r);
    auto& errors = o.at("errors").as_array();
    ASSERT_EQ(errors.size(), 2u);
    EXPECT_EQ(errors[0].as_object().at("field").as_string(), "plate");
    EXPECT_EQ(errors[0].as_object().at("message").as_string(), "is required");
    EXPECT_EQ(errors[1].as_object().at("field").as_string(), "year");
}

TEST(Problem, method_not_allowed_carries_allow_header) {
    Response r = render_problem(Problem::method_not_allowed("GET, HEAD"), "/health", "r");
    EXPECT_EQ(r.status, 405);
    ASSERT_EQ(r.headers.size(), 1u);
    EXPECT_EQ(r.headers[0].name, "Allow");
    EXPECT_EQ(r.headers[0].value, "GET, HEAD");
}

TEST(Problem, escapes_hostile_text_into_valid_json) {
    std::string nasty = "a\"b\\c\n\x01\xff\xc3";
    Response r = render_problem(Problem::bad_request(nasty), std::string("/x\"\x7f"), "r");
    auto o = parse_body(r);  // throws if the JSON is invalid
    EXPECT_EQ(o.at("instance").as_string(), "/x\"\x7f");
    EXPECT_NE(std::string(o.at("detail").as_string()).find("a\"b\\c\n\x01"), std::string::npos);
}

TEST(Problem, internal_error_has_no_detail_beyond_generic_text) {
    Response r = render_problem(Problem::internal(), "/x", "r");
    auto o = parse_body(r);
    EXPECT_EQ(o.at("status").as_int64(), 500);
    EXPECT_EQ(o.at("detail").as_string(), "The server failed to handle the request.");
}

TEST(Problem, every_common_status_has_a_specific_type) {
    for (int status : {400, 401, 403, 404, 405, 409, 413, 414, 415, 422, 429, 431, 500, 503}) {
        Problem p = Problem::of_status(status);
        EXPECT_NE(p.type(), "https://mtapi.dev/problems/error") << status;
        EXPECT_NE(p.title(), "Unknown") << status;
    }
}

#include "http/request.hpp"

TEST(RequestContext, query_parameters_are_read_within_the_query_only) {
    std::string buffer = "limit=2 HTTP/1.1\r\nHost: x\r\n";
    RequestContext ctx;
    ctx.query = std::string_view(buffer.data(), 7);
    EXPECT_EQ(ctx.query_param("limit"), "2");
}

TEST(RequestContext, repeated_query_parameter_is_a_bad_request) {
    RequestContext ctx;
    ctx.query = "limit=2&limit=3";
    EXPECT_THROW(ctx.query_param("limit"), Problem);
}
