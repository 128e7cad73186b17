#include "http/router.hpp"

#include <boost/url/pct_string_view.hpp>
#include <stdexcept>

namespace mtapi::http {
namespace {

constexpr std::size_t kMaxSegments = 16;

// Splits "/a/b/c" into {"a","b","c"}. Returns false for paths that cannot match any template:
// not starting with '/', empty segments ("//", trailing '/'), or too many segments.
bool split_path(std::string_view path, std::vector<std::string_view>& out) {
    out.clear();
    if (path.empty() || path.front() != '/') return false;
    if (path == "/") return true;
    std::size_t pos = 1;
    while (pos <= path.size()) {
        std::size_t next = path.find('/', pos);
        if (next == std::string_view::npos) next = path.size();
        if (next == pos) return false;
        if (out.size() == kMaxSegments) return false;
        out.push_back(path.substr(pos, next - pos));
        pos = next + 1;
    }
    return true;
}

bool decode_segment(std::string_view raw, std::string& out) {
    if (raw.find('%') == std::string_view::npos) {
        out.assign(raw);
        return true;
    }
    const std::string text(raw);  // Boost.URL 1.81 needs a NUL-terminated string here
    auto pct = boost::urls::make_pct_string_view(text);
    if (!pct) return false;
    out.clear();
    pct->decode({}, boost::urls::string_token::assign_to(out));
    return true;
}

}  // namespace

int Router::add(Method method, std::string_view pattern, Handler handler) {
    if (method == Method::other || method == Method::head || method == Method::options)
        throw std::invalid_argument("routes are registered for GET, POST, PUT, PATCH or DELETE");
    std::vector<std::string_view> raw;
    if (!split_path(pattern, raw)) throw std::invalid_argument("malformed route template: " + std::string(pattern));

    Template* tpl = nullptr;
    for (auto& t : templates_)
        if (t.pattern == pattern) tpl = &t;
    if (tpl == nullptr) {
        Template t;
        t.pattern = std::string(pattern);
        t.route_by_method.fill(-1);
        for (std::size_t i = 0; i < raw.size(); ++i) {
            auto s = raw[i];
            bool param = s.size() >= 2 && s.front() == '{' && s.back() == '}';
            if (param) s = s.substr(1, s.size() - 2);
            if (s.empty() || s.find_first_of("{}") != std::string_view::npos)
                throw std::invalid_argument("malformed route template: " + std::string(pattern));
            t.segments.push_back({param, std::string(s)});
            if (!param) t.literal_mask |= 1u << (kMaxSegments - 1 - i);
        }
        bool literal = true;
        for (const auto& seg : t.segments)
            literal = literal && !seg.param;
        if (literal) literal_templates_.push_back(templates_.size());
        templates_.push_back(std::move(t));
        tpl = &templates_.back();
    }
    auto m = static_cast<std::size_t>(method);
    if (tpl->route_by_method[m] >= 0)
        throw std::invalid_argument("duplicate route: " + std::string(method_name(method)) + " " +
                                    std::string(pattern));
    int index = static_cast<int>(routes_.size());
    tpl->route_by_method[m] = index;
    routes_.push_back({method, std::string(pattern), std::move(handler)});
    return index;
}

Router::Match Router::match(Method method, std::string_view path) const {
    Match result;
    // Fast path: a path equal to a template without parameters matches that template (no other
    // template can have more literal segments), so no splitting is needed when it has a route
    // for the method. Otherwise the general search below also works out Allow.
    for (std::size_t i : literal_templates_) {
        const Template& t = templates_[i];
        if (t.pattern != path) continue;
        int idx = t.route_by_method[static_cast<std::size_t>(method)];
        if (idx < 0 && method == Method::head) idx = t.route_by_method[static_cast<std::size_t>(Method::get)];
        if (idx < 0) break;
        result.path_known = true;
        result.pattern = t.pattern;
        result.route = idx;
        result.handler = &routes_[static_cast<std::size_t>(idx)].handler;
        return result;
    }
    thread_local std::vector<std::string_view> segs;
    if (!split_path(path, segs)) return result;

    const Template* best = nullptr;
    for (const auto& t : templates_) {
        if (t.segments.size() != segs.size()) continue;
        bool ok = true;
        for (std::size_t i = 0; i < segs.size() && ok; ++i)
            if (!t.segments[i].param && t.segments[i].text != segs[i]) ok = false;
        if (ok && (best == nullptr || t.literal_mask > best->literal_mask)) best = &t;
    }
    if (best == nullptr) return result;

    result.path_known = true;
    result.pattern = best->pattern;
    int idx = best->route_by_method[static_cast<std::size_t>(method)];
    if (idx < 0 && method == Method::head) idx = best->route_by_method[static_cast<std::size_t>(Method::get)];
    if (idx < 0) {
        for (std::size_t m = 0; m < kMethodCount; ++m) {
            if (best->route_by_method[m] < 0) continue;
            if (!result.allow.empty()) result.allow.append(", ");
            result.allow.append(method_name(static_cast<Method>(m)));
            if (static_cast<Method>(m) == Method::get) result.allow.append(", HEAD");
        }
        return result;
    }
    for (std::size_t i = 0; i < segs.size(); ++i) {
        if (!best->segments[i].param) continue;
        PathParam p{best->segments[i].text, {}};
        if (!decode_segment(segs[i], p.value)) {  // undecodable id: nothing can live there
            result.path_known = false;
            result.pattern = {};
            return result;
        }
        result.params.push_back(std::move(p));
    }
    result.route = idx;
    result.handler = &routes_[static_cast<std::size_t>(idx)].handler;
    return result;
}

}  // namespace mtapi::http
