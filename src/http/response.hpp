#pragma once
// What a handler returns: status, body and extra headers. The session adds framing headers
// (Content-Length, Date, X-Request-Id, Connection) when it serialises the response.

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mtapi::http {

struct Header {
    std::string name;
    std::string value;
};

// A Content-Type value: either a view of a constant with static storage duration (the usual
// types, no allocation per response) or an owned string.
class ContentType {
  public:
    ContentType() = default;
    ContentType(std::string value) : owned_(std::move(value)) {}  // NOLINT: implicit, as a string
    static ContentType constant(std::string_view value) {
        ContentType c;
        c.constant_ = value;
        return c;
    }
    std::string_view view() const { return constant_.empty() ? std::string_view(owned_) : constant_; }
    operator std::string_view() const { return view(); }  // NOLINT: implicit, as a string
    bool empty() const { return view().empty(); }
    friend bool operator==(const ContentType& a, std::string_view b) { return a.view() == b; }

  private:
    std::string_view constant_;
    std::string owned_;
};

struct Response {
    int status = 200;
    ContentType content_type;  // empty: no Content-Type header (e.g. 204)
    std::string body;
    std::vector<Header> headers;

    static constexpr std::string_view kJson = "application/json; charset=utf-8";
    static constexpr std::string_view kProblemJson = "application/problem+json; charset=utf-8";

    static Response json(int status, std::string body) {
        Response r;
        r.status = status;
        r.content_type = ContentType::constant(kJson);
        r.body = std::move(body);
        return r;
    }
    static Response text(int status, std::string_view content_type, std::string body) {
        return Response{status, std::string(content_type), std::move(body), {}};
    }
    static Response no_content() { return Response{204, {}, {}, {}}; }

    Response& header(std::string name, std::string value) {
        headers.push_back({std::move(name), std::move(value)});
        return *this;
    }
};

// Standard reason phrase for a status code ("Not Found"); "Unknown" for codes it does not know.
std::string_view reason_phrase(int status);

}  // namespace mtapi::http
