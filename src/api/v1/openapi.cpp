// GET /api/v1/openapi.json: the OpenAPI document of this API (see openapi.hpp). Public: no token.
//
// The document is fixed when the binary is built, so its entity tag is too: a client that sends
// the tag back in If-None-Match gets 304 without the body.

#include "api/v1/openapi.hpp"

#include <boost/asio/awaitable.hpp>

#include "api/v1/routes.hpp"

namespace mtapi::api::v1 {
namespace {

namespace asio = boost::asio;
using http::RequestContext;
using http::Response;

// Clients may keep a copy but revalidate it: a new build serves a new document under a new tag.
constexpr std::string_view kCacheControl = "no-cache";

asio::awaitable<Response> serve(RequestContext& ctx) {
    const std::string etag(openapi_etag());
    if (if_none_match_hits(ctx.header("If-None-Match"), etag)) {
        Response r{304, {}, {}, {}};
        r.header("ETag", etag);
        r.header("Cache-Control", std::string(kCacheControl));
        co_return r;
    }
    Response r = Response::json(200, std::string(openapi_document()));
    r.header("ETag", etag);
    r.header("Cache-Control", std::string(kCacheControl));
    co_return r;
}

bool is_ows(char c) {
    return c == ' ' || c == '\t';
}

}  // namespace

bool if_none_match_hits(std::string_view field, std::string_view etag) {
    // If-None-Match = "*" / #entity-tag;  entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE
    // Weak comparison: the opaque tags (quotes included) are equal, whatever the W/ prefixes.
    while (!field.empty() && is_ows(field.back()))
        field.remove_suffix(1);
    std::size_t i = 0;
    auto skip_separators = [&] {
        while (i < field.size() && (is_ows(field[i]) || field[i] == ','))
            ++i;
    };
    skip_separators();
    if (field.substr(i) == "*") return true;
    while (i < field.size()) {
        if (field.substr(i, 2) == "W/") i += 2;
        if (i >= field.size() || field[i] != '"') return false;  // malformed: no match
        std::size_t close = field.find('"', i + 1);
        if (close == std::string_view::npos) return false;
        if (field.substr(i, close - i + 1) == etag) return true;
        i = close + 1;
        while (i < field.size() && is_ows(field[i]))
            ++i;
        if (i < field.size() && field[i] != ',') return false;
        skip_separators();
    }
    return false;
}

void add_openapi_routes(http::Router& router, app::App&) {
    router.add(http::Method::get, "/api/v1/openapi.json", serve);
}

}  // namespace mtapi::api::v1
