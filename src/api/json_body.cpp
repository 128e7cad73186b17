#include "api/json_body.hpp"

#include <algorithm>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <charconv>
#include <cmath>

#include "util/uuid.hpp"

namespace mtapi::api {
namespace json = boost::json;
using http::Problem;

namespace {

bool is_json_content_type(std::string_view ct) {
    auto semi = ct.find(';');
    std::string_view type = ct.substr(0, semi);
    while (!type.empty() && type.back() == ' ')
        type.remove_suffix(1);
    return http::iequals(type, "application/json");
}

// A bound as people write it: 0, 0.5, 100000 (not 0E0 or 1E5).
std::string decimal(double d) {
    char buf[512];
    auto r = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::fixed);
    return r.ec == std::errc() ? std::string(buf, r.ptr) : json::serialize(json::value(d));
}

bool digits(std::string_view s, std::size_t pos, std::size_t n) {
    if (pos + n > s.size()) return false;
    for (std::size_t i = pos; i < pos + n; ++i)
        if (s[i] < '0' || s[i] > '9') return false;
    return true;
}

}  // namespace

std::size_t utf8_length(std::string_view s) {
    return static_cast<std::size_t>(std::count_if(s.begin(), s.end(), [](char c) { return (c & 0xc0) != 0x80; }));
}

bool is_rfc3339(std::string_view s) {
    // YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)
    if (!digits(s, 0, 4) || s.size() < 20 || s[4] != '-' || !digits(s, 5, 2) || s[7] != '-' || !digits(s, 8, 2))
        return false;
    if (s[10] != 'T' && s[10] != 't') return false;
    if (!digits(s, 11, 2) || s[13] != ':' || !digits(s, 14, 2) || s[16] != ':' || !digits(s, 17, 2)) return false;
    std::size_t i = 19;
    if (i < s.size() && s[i] == '.') {
        std::size_t start = ++i;
        while (i < s.size() && s[i] >= '0' && s[i] <= '9')
            ++i;
        if (i == start || i - start > 9) return false;
    }
    auto rest = s.substr(i);
    bool zone_ok = rest == "Z" || rest == "z" ||
                   (rest.size() == 6 && (rest[0] == '+' || rest[0] == '-') && digits(rest, 1, 2) && rest[3] == ':' &&
                    digits(rest, 4, 2));
    if (!zone_ok) return false;
    // PostgreSQL accepts offsets up to ±15:59.
    if (rest.size() == 6 &&
        ((rest[1] - '0') * 10 + (rest[2] - '0') > 15 || (rest[4] - '0') * 10 + (rest[5] - '0') > 59))
        return false;
    auto num = [&](std::size_t pos) { return (s[pos] - '0') * 10 + (s[pos + 1] - '0'); };
    int month = num(5), day = num(8), hour = num(11), minute = num(14), second = num(17);
    return month >= 1 && month <= 12 && day >= 1 && day <= 31 && hour <= 23 && minute <= 59 && second <= 60;
}

json::object parse_json_object(const http::RequestContext& ctx) {
    if (!is_json_content_type(ctx.header("Content-Type")))
        throw Problem::of_status(415, "The request body must be application/json.");
    if (ctx.body.empty()) throw Problem::bad_request("The request body is missing.");
    json::parse_options opts;
    opts.max_depth = 32;
    std::error_code ec;
    json::value v = json::parse(ctx.body, ec, {}, opts);
    if (ec) throw Problem::bad_request("The request body is not valid JSON.");
    if (!v.is_object()) throw Problem::bad_request("The request body must be a JSON object.");
    return std::move(v.as_object());
}

const json::value* BodyFields::lookup(std::string_view key) {
    known_.emplace_back(key);
    return obj_.if_contains(key);
}

std::optional<std::string> BodyFields::required_string(std::string_view key, Text rule) {
    auto f = string(key, std::move(rule));
    if (!f.present)
        error(std::string(key), "is required");
    else if (f.is_null())
        error(std::string(key), "must not be null");
    return f.value;
}

Optional<std::string> BodyFields::string(std::string_view key, Text rule) {
    Optional<std::string> out;
    const json::value* v = lookup(key);
    if (v == nullptr) return out;
    out.present = true;
    if (v->is_null()) return out;
    if (!v->is_string()) {
        error(std::string(key), "must be a string");
        out.invalid = true;
        return out;
    }
    std::string_view text = v->as_string();
    if (text.find('\0') != std::string_view::npos) {
        error(std::string(key), "must not contain NUL characters");
        out.invalid = true;
        return out;
    }
    std::size_t n = utf8_length(text);
    if (!rule.one_of.empty()) {
        if (std::find(rule.one_of.begin(), rule.one_of.end(), text) == rule.one_of.end()) {
            std::string msg = "must be one of ";
            for (std::size_t i = 0; i < rule.one_of.size(); ++i)
                msg += (i ? ", " : "") + std::string(rule.one_of[i]);
            error(std::string(key), msg);
            out.invalid = true;
            return out;
        }
    } else if (n < rule.min || n > rule.max) {
        error(std::string(key), rule.min == rule.max ? "must be exactly " + std::to_string(rule.min) + " characters"
                                                     : "must be " + std::to_string(rule.min) + " to " +
                                                           std::to_string(rule.max) + " characters");
        out.invalid = true;
        return out;
    } else if (rule.min >= 1 && !rule.blank_ok && text.find_first_not_of(" \t\n\r\f\v") == std::string_view::npos) {
        error(std::string(key), "must not be blank");
        out.invalid = true;
        return out;
    }
    out.value = std::string(text);
    return out;
}

std::optional<std::int64_t> BodyFields::required_integer(std::string_view key, std::int64_t min, std::int64_t max) {
    auto f = integer(key, min, max);
    if (!f.present)
        error(std::string(key), "is required");
    else if (f.is_null())
        error(std::string(key), "must not be null");
    return f.value;
}

Optional<std::int64_t> BodyFields::integer(std::string_view key, std::int64_t min, std::int64_t max) {
    Optional<std::int64_t> out;
    const json::value* v = lookup(key);
    if (v == nullptr) return out;
    out.present = true;
    if (v->is_null()) return out;
    std::int64_t n = 0;
    if (v->is_int64())
        n = v->as_int64();
    else if (v->is_uint64() && v->as_uint64() <= static_cast<std::uint64_t>(INT64_MAX))
        n = static_cast<std::int64_t>(v->as_uint64());
    else if (v->is_double() && std::isfinite(v->as_double()) && std::floor(v->as_double()) == v->as_double() &&
             std::fabs(v->as_double()) < 9e15)
        n = static_cast<std::int64_t>(v->as_double());
    else {
        error(std::string(key), "must be an integer");
        out.invalid = true;
        return out;
    }
    if (n < min || n > max) {
        error(std::string(key), "must be between " + std::to_string(min) + " and " + std::to_string(max));
        out.invalid = true;
        return out;
    }
    out.value = n;
    return out;
}

Optional<std::string> BodyFields::number(std::string_view key, double min, double max) {
    Optional<std::string> out;
    const json::value* v = lookup(key);
    if (v == nullptr) return out;
    out.present = true;
    if (v->is_null()) return out;
    if (!v->is_number()) {
        error(std::string(key), "must be a number");
        out.invalid = true;
        return out;
    }
    double d = v->to_number<double>();
    if (!std::isfinite(d) || d < min || d > max) {
        error(std::string(key), "must be between " + decimal(min) + " and " + decimal(max));
        out.invalid = true;
        return out;
    }
    out.value = json::serialize(*v);
    return out;
}

Optional<std::string> BodyFields::timestamp(std::string_view key) {
    Optional<std::string> out;
    const json::value* v = lookup(key);
    if (v == nullptr) return out;
    out.present = true;
    if (v->is_null()) return out;
    if (!v->is_string() || !is_rfc3339(v->as_string())) {
        error(std::string(key), "must be an RFC 3339 timestamp such as 2026-01-31T08:00:00Z");
        out.invalid = true;
        return out;
    }
    out.value = std::string(v->as_string());
    return out;
}

std::optional<std::string> BodyFields::required_uuid(std::string_view key) {
    auto f = uuid(key);
    if (!f.present)
        error(std::string(key), "is required");
    else if (f.is_null())
        error(std::string(key), "must not be null");
    return f.value;
}

Optional<std::string> BodyFields::uuid(std::string_view key) {
    Optional<std::string> out;
    const json::value* v = lookup(key);
    if (v == nullptr) return out;
    out.present = true;
    if (v->is_null()) return out;
    if (!v->is_string() || !util::parse_uuid(v->as_string())) {
        error(std::string(key), "must be a UUID");
        out.invalid = true;
        return out;
    }
    out.value = util::to_string(*util::parse_uuid(v->as_string()));  // canonical lowercase
    return out;
}

Optional<json::object> BodyFields::object(std::string_view key) {
    Optional<json::object> out;
    const json::value* v = lookup(key);
    if (v == nullptr) return out;
    out.present = true;
    if (v->is_null()) return out;
    if (!v->is_object()) {
        error(std::string(key), "must be an object or null");
        out.invalid = true;
        return out;
    }
    out.value = v->as_object();
    return out;
}

void BodyFields::finish() {
    for (const auto& kv : obj_) {
        std::string_view k = kv.key();
        if (std::find(known_.begin(), known_.end(), k) == known_.end()) error(std::string(k), "is not a known field");
    }
    if (!errors_.empty()) throw Problem::validation(std::move(errors_));
}

}  // namespace mtapi::api
