#pragma once
// Wall-clock formatting: RFC 3339 timestamps for JSON and logs, IMF-fixdate for the HTTP Date header.

#include <chrono>
#include <string>
#include <string_view>

namespace mtapi::util {

// "2026-11-27T04:05:06.123456Z" (microseconds, UTC).
std::string rfc3339_now();
void append_rfc3339(std::string& out, std::chrono::system_clock::time_point tp);

// "Fri, 27 Nov 2026 04:05:06 GMT". Cached per thread and refreshed once a second.
std::string_view http_date_now();

}  // namespace mtapi::util
