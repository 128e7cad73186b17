#include "http/request.hpp"

#include <boost/url/parse_query.hpp>
#include <stdexcept>

#include "http/problem.hpp"

namespace mtapi::http {

bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        char x = a[i], y = b[i];
        if (x >= 'A' && x <= 'Z') x = static_cast<char>(x + 32);
        if (y >= 'A' && y <= 'Z') y = static_cast<char>(y + 32);
        if (x != y) return false;
    }
    return true;
}

std::string_view RequestContext::header(std::string_view name) const {
    for (const auto& [k, v] : headers)
        if (iequals(k, name)) return v;
    return {};
}

bool RequestContext::has_header(std::string_view name) const {
    for (const auto& h : headers)
        if (iequals(h.first, name)) return true;
    return false;
}

const std::string& RequestContext::param(std::string_view name) const {
    for (const auto& p : params)
        if (p.name == name) return p.value;
    throw std::out_of_range("route has no such parameter");
}

std::optional<std::string> RequestContext::query_param(std::string_view name) const {
    if (query.empty()) return std::nullopt;
    // Boost.URL 1.81 reads past the end of a view that is not NUL-terminated (a request buffer):
    // parse a terminated copy.
    const std::string text(query);
    auto parsed = boost::urls::parse_query(text);
    if (!parsed) throw Problem::bad_request("The query string is malformed.");
    std::optional<std::string> found;
    for (auto param : *parsed) {
        if (param.key.decoded_size() != name.size()) continue;
        std::string key;
        param.key.decode({}, boost::urls::string_token::assign_to(key));
        if (key != name) continue;
        if (found) throw Problem::bad_request("Query parameter '" + std::string(name) + "' is given more than once.");
        std::string value;
        if (param.has_value) param.value.decode({}, boost::urls::string_token::assign_to(value));
        found = std::move(value);
    }
    return found;
}

}  // namespace mtapi::http
