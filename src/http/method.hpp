#pragma once
// HTTP methods the router knows; everything else is `other` (answered 405 on known paths).

#include <cstddef>
#include <string_view>

namespace mtapi::http {

enum class Method : unsigned char { get, head, post, put, patch, del, options, other };
inline constexpr std::size_t kMethodCount = 8;

Method parse_method(std::string_view text);
std::string_view method_name(Method m);

}  // namespace mtapi::http
