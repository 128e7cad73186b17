#pragma once
// The request as a handler sees it: a Beast-free view that lives for one request.

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "http/method.hpp"
#include "http/response.hpp"

namespace mtapi::http {

using HeaderView = std::pair<std::string_view, std::string_view>;

struct PathParam {
    std::string_view name;
    std::string value;  // percent-decoded
};

struct RequestContext {
    Method method = Method::other;
    std::string_view method_text;
    std::string_view target;  // as received: path and query
    std::string_view path;    // target up to '?'
    std::string_view query;   // after '?', still encoded; empty when absent
    std::string_view body;
    std::string_view request_id;
    std::string_view route;  // matched path template, empty when no route matched
    std::string_view remote_address;
    unsigned shard = 0;
    std::chrono::steady_clock::time_point received_at;
    std::vector<HeaderView> headers;
    std::vector<PathParam> params;
    // Headers added to whatever response this request gets, a problem included (e.g. the
    // RateLimit-* fields, set before the handler's own work can fail).
    std::vector<Header> response_headers;

    // First header with this name (case-insensitive); empty when absent.
    std::string_view header(std::string_view name) const;
    bool has_header(std::string_view name) const;

    // Path parameter by template name; throws std::out_of_range for a name the route lacks.
    const std::string& param(std::string_view name) const;

    // Decoded query parameter; nullopt when absent. Throws Problem 400 for a malformed query string
    // or a parameter given more than once.
    std::optional<std::string> query_param(std::string_view name) const;
};

bool iequals(std::string_view a, std::string_view b);

}  // namespace mtapi::http
