#include "util/time.hpp"

#include <cstdio>
#include <ctime>

namespace mtapi::util {

void append_rfc3339(std::string& out, std::chrono::system_clock::time_point tp) {
    using namespace std::chrono;
    auto us = duration_cast<microseconds>(tp.time_since_epoch()).count();
    std::time_t secs = static_cast<std::time_t>(us / 1000000);
    long frac = static_cast<long>(us % 1000000);
    if (frac < 0) {
        frac += 1000000;
        --secs;
    }
    std::tm tm{};
    gmtime_r(&secs, &tm);
    char buf[40];
    int n = std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
                          tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
    out.append(buf, static_cast<std::size_t>(n));
}

std::string rfc3339_now() {
    std::string out;
    append_rfc3339(out, std::chrono::system_clock::now());
    return out;
}

std::string_view http_date_now() {
    thread_local std::time_t cached_at = 0;
    thread_local char buf[64];
    thread_local std::size_t len = 0;
    std::time_t now = std::time(nullptr);
    if (now != cached_at) {
        cached_at = now;
        std::tm tm{};
        gmtime_r(&now, &tm);
        len = std::strftime(buf, sizeof(buf), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    }
    return {buf, len};
}

}  // namespace mtapi::util
