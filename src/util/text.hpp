#pragma once
// Small text helpers shared by the parsers of settings and header values.

#include <string_view>

namespace mtapi::util {

// `s` without leading and trailing spaces and tabs (HTTP's optional white space, OWS).
constexpr std::string_view trim_blanks(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
        s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
        s.remove_suffix(1);
    return s;
}

}  // namespace mtapi::util
