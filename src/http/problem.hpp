#pragma once
// RFC 9457 problem details. Request-level failures throw a Problem where they are detected; the
// session turns it into application/problem+json in one place (render_problem).

#include <exception>
#include <string>
#include <string_view>
#include <vector>

#include "http/response.hpp"

namespace mtapi::http {

struct FieldError {
    std::string field;
    std::string message;
};

class Problem : public std::exception {
  public:
    // `slug` names the problem type: the `type` member becomes kProblemTypeBase + slug.
    Problem(int status, std::string_view slug, std::string title, std::string detail = {});

    // A problem with the standard slug and title of `status` (e.g. 404 → not-found, "Not Found").
    static Problem of_status(int status, std::string detail = {});
    static Problem bad_request(std::string detail) { return of_status(400, std::move(detail)); }
    static Problem not_found(std::string detail = "No resource exists at this path.") {
        return of_status(404, std::move(detail));
    }
    static Problem method_not_allowed(std::string allow);
    static Problem validation(std::vector<FieldError> errors);
    static Problem internal();

    int status() const { return status_; }
    const std::string& type() const { return type_; }
    const std::string& title() const { return title_; }
    const std::string& detail() const { return detail_; }
    const std::vector<FieldError>& errors() const { return errors_; }
    const std::vector<Header>& headers() const { return headers_; }

    Problem& with_error(std::string field, std::string message) {
        errors_.push_back({std::move(field), std::move(message)});
        return *this;
    }
    Problem& with_header(std::string name, std::string value) {
        headers_.push_back({std::move(name), std::move(value)});
        return *this;
    }

    const char* what() const noexcept override { return title_.c_str(); }

  private:
    int status_;
    std::string type_;
    std::string title_;
    std::string detail_;
    std::vector<FieldError> errors_;
    std::vector<Header> headers_;
};

inline constexpr std::string_view kProblemTypeBase = "https://mtapi.dev/problems/";

// The problem as a response: problem+json body with type, title, status, detail, instance
// (the request path) and request_id, plus `errors` when there are field errors.
Response render_problem(const Problem& problem, std::string_view instance, std::string_view request_id);

}  // namespace mtapi::http
