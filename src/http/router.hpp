#pragma once
// Method + path-template routing. Templates are literal segments and `{name}` parameters, e.g.
// /api/v1/vehicles/{id}. Where two templates match, the one with literals further left wins.

#include <array>
#include <boost/asio/awaitable.hpp>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "http/method.hpp"
#include "http/request.hpp"
#include "http/response.hpp"

namespace mtapi::http {

using Handler = std::function<boost::asio::awaitable<Response>(RequestContext&)>;

struct RouteInfo {
    Method method;
    std::string pattern;
    Handler handler;
};

class Router {
  public:
    // Registers a handler; returns its route index (stable, dense from 0). Throws
    // std::invalid_argument for a malformed template or a duplicate (method, template).
    int add(Method method, std::string_view pattern, Handler handler);

    struct Match {
        int route = -1;                    // index of the matched route; -1 when none
        const Handler* handler = nullptr;  // null when no route matched
        std::string_view pattern;          // the template, also when only the method was wrong
        bool path_known = false;           // some template matched the path
        std::string allow;                 // for 405/OPTIONS: methods the path accepts
        std::vector<PathParam> params;
    };

    // `path` is the request path without the query string. HEAD falls back to GET.
    Match match(Method method, std::string_view path) const;

    const std::vector<RouteInfo>& routes() const { return routes_; }

  private:
    struct Segment {
        bool param;
        std::string text;  // literal text, or the parameter name
    };
    struct Template {
        std::string pattern;
        std::vector<Segment> segments;
        unsigned literal_mask = 0;  // bit i (from the left, MSB first) set when segment i is literal
        std::array<int, kMethodCount> route_by_method{};
    };

    std::vector<Template> templates_;
    std::vector<std::size_t> literal_templates_;  // indexes of the templates without parameters
    std::vector<RouteInfo> routes_;
};

}  // namespace mtapi::http
