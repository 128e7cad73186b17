#pragma once
// Request bodies: parsing (415/400) and field validation (422) with one error per field.

#include <boost/json/object.hpp>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "http/problem.hpp"
#include "http/request.hpp"

namespace mtapi::api {

// The body as a JSON object. 415 unless Content-Type is application/json (parameters such as
// charset=utf-8 allowed); 400 for a missing body, invalid UTF-8, malformed JSON, nesting deeper
// than 32 levels, or a value that is not an object.
boost::json::object parse_json_object(const http::RequestContext& ctx);

// A field that may be absent, explicitly null, or set (PATCH semantics).
template <class T>
struct Optional {
    bool present = false;    // the key was in the body
    bool invalid = false;    // present but rejected (an error was recorded)
    std::optional<T> value;  // empty when null, absent or invalid
    bool is_null() const { return present && !invalid && !value; }
};

// Rules for a string field: length in characters (UTF-8 code points), or a set of values.
struct Text {
    std::size_t min = 0;
    std::size_t max = 10'000;
    std::vector<std::string_view> one_of = {};
    // With min >= 1, a value of white space only is refused ("must not be blank") unless this is
    // set (passwords: spaces are characters like any other there).
    bool blank_ok = false;
};

// Reads fields of one object, collecting every problem; finish() adds unknown fields and throws a
// 422 Problem listing them all.
class BodyFields {
  public:
    explicit BodyFields(const boost::json::object& obj) : obj_(obj) {}

    // Required: absent or null is an error. The returned value is empty only when an error was
    // recorded.
    std::optional<std::string> required_string(std::string_view key, Text rule = {});
    Optional<std::string> string(std::string_view key, Text rule = {});
    std::optional<std::int64_t> required_integer(std::string_view key, std::int64_t min, std::int64_t max);
    Optional<std::int64_t> integer(std::string_view key, std::int64_t min, std::int64_t max);
    // Decimal number kept as its JSON text (exact), with bounds checked on its value.
    Optional<std::string> number(std::string_view key, double min, double max);
    // RFC 3339 timestamp with an explicit offset ("Z" or ±hh:mm); kept as given.
    Optional<std::string> timestamp(std::string_view key);
    // Canonical UUID.
    std::optional<std::string> required_uuid(std::string_view key);
    Optional<std::string> uuid(std::string_view key);
    // A nested object or null (returned for further reading).
    Optional<boost::json::object> object(std::string_view key);

    void error(std::string field, std::string message) { errors_.push_back({std::move(field), std::move(message)}); }
    bool has_errors() const { return !errors_.empty(); }

    // Unknown keys become errors; throws Problem 422 when anything was recorded.
    void finish();

  private:
    const boost::json::value* lookup(std::string_view key);

    const boost::json::object& obj_;
    std::vector<std::string> known_;
    std::vector<http::FieldError> errors_;
};

bool is_rfc3339(std::string_view s);
std::size_t utf8_length(std::string_view s);

}  // namespace mtapi::api
