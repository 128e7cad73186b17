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

struct Response {
    int status = 200;
    std::string content_type;  // empty: no Content-Type header (e.g. 204)
    std::string body;
    std::vector<Header> headers;

    static constexpr std::string_view kJson = "application/json; charset=utf-8";
    static constexpr std::string_view kProblemJson = "application/problem+json; charset=utf-8";

    static Response json(int status, std::string body) {
        return Response{status, std::string(kJson), std::move(body), {}};
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
