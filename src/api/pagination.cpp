#include "api/pagination.hpp"

#include <boost/url/encode.hpp>
#include <boost/url/parse_query.hpp>
#include <boost/url/rfc/unreserved_chars.hpp>
#include <charconv>

#include "http/problem.hpp"
#include "obs/log.hpp"

namespace mtapi::api {
namespace {

std::string encode_param(std::string_view v) {
    const std::string text(v);
    return boost::urls::encode(text, boost::urls::unreserved_chars);
}

}  // namespace

PageRequest parse_page(const http::RequestContext& ctx, const util::CursorCodec& codec, std::string scope,
                       std::string list, const std::vector<std::string_view>& filters,
                       std::vector<std::optional<std::string>>& filter_values) {
    PageRequest req;
    req.scope = std::move(scope);
    req.list = std::move(list);
    filter_values.assign(filters.size(), std::nullopt);

    if (!ctx.query.empty()) {
        const std::string text(ctx.query);  // NUL-terminated copy: see RequestContext::query_param
        auto parsed = boost::urls::parse_query(text);
        if (!parsed) throw http::Problem::bad_request("The query string is malformed.");
        for (auto p : *parsed) {
            std::string key = p.key.decode();
            bool known = key == "limit" || key == "cursor";
            for (auto f : filters)
                known = known || key == f;
            if (!known) throw http::Problem::bad_request("Unknown query parameter '" + key + "'.");
        }
    }
    if (auto limit = ctx.query_param("limit")) {
        int n = 0;
        auto [p, ec] = std::from_chars(limit->data(), limit->data() + limit->size(), n);
        if (ec != std::errc() || p != limit->data() + limit->size() || n < 1 || n > 100)
            throw http::Problem::bad_request("Query parameter 'limit' must be an integer from 1 to 100.");
        req.limit = n;
    }
    for (std::size_t i = 0; i < filters.size(); ++i) {
        filter_values[i] = ctx.query_param(filters[i]);
        if (filter_values[i]) {
            if (!req.filter.empty()) req.filter.push_back('&');
            req.filter.append(filters[i]);
            req.filter.push_back('=');
            req.filter.append(*filter_values[i]);
        }
    }
    if (auto cursor = ctx.query_param("cursor")) {
        req.after = codec.decode(*cursor, req.scope, req.list, req.filter);
        if (!req.after) throw http::Problem::bad_request("Query parameter 'cursor' is not valid for this list.");
    }
    return req;
}

Page render_page(const http::RequestContext& ctx, const util::CursorCodec& codec, const PageRequest& req,
                 const std::vector<std::string>& items, const std::optional<util::CursorPosition>& next_after,
                 const std::vector<std::pair<std::string_view, std::optional<std::string>>>& filters) {
    Page page;
    std::size_t size = 40;
    for (const auto& i : items)
        size += i.size() + 1;
    page.body.reserve(size + 200);
    page.body.append("{\"data\":[");
    for (std::size_t i = 0; i < items.size(); ++i) {
        if (i > 0) page.body.push_back(',');
        page.body.append(items[i]);
    }
    page.body.append("],\"next_cursor\":");
    if (!next_after) {
        page.body.append("null}");
        return page;
    }
    std::string cursor = codec.encode(req.scope, req.list, req.filter, *next_after);
    obs::append_json_string(page.body, cursor);
    page.body.push_back('}');
    std::string url(ctx.path);
    url.append("?limit=").append(std::to_string(req.limit));
    for (const auto& [name, value] : filters)
        if (value) url.append("&").append(name).append("=").append(encode_param(*value));
    url.append("&cursor=").append(encode_param(cursor));
    page.link = "<" + url + ">; rel=\"next\"";
    return page;
}

}  // namespace mtapi::api
