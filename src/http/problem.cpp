#include "http/problem.hpp"

#include "obs/log.hpp"

namespace mtapi::http {
namespace {

struct StatusInfo {
    int status;
    std::string_view slug;
    std::string_view detail;
};

constexpr StatusInfo kStatuses[] = {
    {400, "bad-request", "The request is malformed."},
    {401, "unauthorized", "Authentication is required."},
    {403, "forbidden", "You are not allowed to do this."},
    {404, "not-found", "No resource exists at this path."},
    {405, "method-not-allowed", "This method is not allowed on this resource."},
    {408, "request-timeout", "The request was not received in time."},
    {409, "conflict", "The request conflicts with the current state of the resource."},
    {413, "content-too-large", "The request body is larger than the server accepts."},
    {414, "uri-too-long", "The request line is longer than the server accepts."},
    {415, "unsupported-media-type", "The request body must be application/json."},
    {422, "validation-failed", "The request body did not pass validation."},
    {429, "rate-limited", "Too many requests; retry later."},
    {431, "request-header-fields-too-large", "The request header fields are larger than the server accepts."},
    {500, "internal-error", "The server failed to handle the request."},
    {503, "service-unavailable", "A dependency is unavailable; retry later."},
};

const StatusInfo* find_status(int status) {
    for (const auto& s : kStatuses)
        if (s.status == status) return &s;
    return nullptr;
}

}  // namespace

Problem::Problem(int status, std::string_view slug, std::string title, std::string detail)
    : status_(status), type_(kProblemTypeBase), title_(std::move(title)), detail_(std::move(detail)) {
    type_.append(slug);
}

Problem Problem::of_status(int status, std::string detail) {
    const StatusInfo* info = find_status(status);
    std::string title(reason_phrase(status));
    if (info == nullptr) return Problem(status, "error", std::move(title), std::move(detail));
    if (detail.empty()) detail = std::string(info->detail);
    return Problem(status, info->slug, std::move(title), std::move(detail));
}

Problem Problem::method_not_allowed(std::string allow) {
    Problem p = of_status(405);
    p.with_header("Allow", std::move(allow));
    return p;
}

Problem Problem::validation(std::vector<FieldError> errors) {
    Problem p = of_status(422);
    p.errors_ = std::move(errors);
    return p;
}

Problem Problem::internal() {
    return of_status(500);
}

Response render_problem(const Problem& problem, std::string_view instance, std::string_view request_id) {
    std::string body;
    body.reserve(256);
    body.append("{\"type\":");
    obs::append_json_string(body, problem.type());
    body.append(",\"title\":");
    obs::append_json_string(body, problem.title());
    body.append(",\"status\":");
    body.append(std::to_string(problem.status()));
    body.append(",\"detail\":");
    obs::append_json_string(body, problem.detail());
    body.append(",\"instance\":");
    obs::append_json_string(body, instance);
    body.append(",\"request_id\":");
    obs::append_json_string(body, request_id);
    if (!problem.errors().empty()) {
        body.append(",\"errors\":[");
        bool first = true;
        for (const auto& e : problem.errors()) {
            if (!first) body.push_back(',');
            first = false;
            body.append("{\"field\":");
            obs::append_json_string(body, e.field);
            body.append(",\"message\":");
            obs::append_json_string(body, e.message);
            body.push_back('}');
        }
        body.push_back(']');
    }
    body.push_back('}');
    Response r{problem.status(), ContentType::constant(Response::kProblemJson), std::move(body), problem.headers()};
    return r;
}

}  // namespace mtapi::http
