#include "app/config.hpp"

#include <charconv>
#include <cstdlib>
#include <thread>

namespace mtapi::app {
namespace {

[[noreturn]] void invalid(std::string_view name, std::string_view text, std::string_view expected) {
    throw ConfigError("invalid " + std::string(name) + "='" + std::string(text) + "': expected " +
                      std::string(expected));
}

bool to_uint(std::string_view text, std::uint64_t& out) {
    if (text.empty()) return false;
    auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
    return ec == std::errc() && p == text.data() + text.size();
}

std::string default_threads() {
    unsigned n = std::thread::hardware_concurrency();
    return std::to_string(n == 0 ? 1 : n);
}

}  // namespace

const std::vector<SettingSpec>& settings() {
    static const std::vector<SettingSpec> kSettings = {
        {"MTAPI_LISTEN", "listen", "127.0.0.1:8000",
         "address and port to serve on (host:port, [v6]:port; port 0 picks one)"},
        {"MTAPI_THREADS", "threads", "", "worker threads (shards), 1-256; default: number of cores"},
        {"MTAPI_MAX_HEADER_BYTES", "max-header-bytes", "16KiB", "limit on request line + header fields (431 beyond)"},
        {"MTAPI_MAX_BODY_BYTES", "max-body-bytes", "1MiB", "limit on a request body (413 beyond)"},
        {"MTAPI_READ_TIMEOUT", "read-timeout", "10s", "time allowed to receive one whole request"},
        {"MTAPI_IDLE_TIMEOUT", "idle-timeout", "60s", "keep-alive connection idle time before it is closed"},
        {"MTAPI_DRAIN_TIMEOUT", "drain-timeout", "15s", "on SIGTERM, time in-flight requests get to finish"},
        {"MTAPI_LOG_LEVEL", "log-level", "info", "debug, info, warn or error"},
        {"MTAPI_ACCESS_LOG", "access-log", "on", "one JSON line per request (on/off)"},
        {"MTAPI_TEST_ENDPOINTS", "test-endpoints", "off",
         "serve /__test/* endpoints used by the test suites (never in production)"},
    };
    return kSettings;
}

std::chrono::milliseconds parse_duration(std::string_view name, std::string_view text) {
    std::size_t digits = 0;
    while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9')
        ++digits;
    std::uint64_t n = 0;
    if (!to_uint(text.substr(0, digits), n)) invalid(name, text, "a duration such as 500ms, 10s, 2m or 1h");
    auto unit = text.substr(digits);
    std::uint64_t ms = 0;
    if (unit == "ms")
        ms = n;
    else if (unit == "s" || unit.empty())
        ms = n * 1000;
    else if (unit == "m")
        ms = n * 60'000;
    else if (unit == "h")
        ms = n * 3'600'000;
    else
        invalid(name, text, "a duration such as 500ms, 10s, 2m or 1h");
    if (n > 1'000'000'000 || ms == 0) invalid(name, text, "a positive duration such as 500ms, 10s, 2m or 1h");
    return std::chrono::milliseconds(ms);
}

std::size_t parse_size(std::string_view name, std::string_view text) {
    std::size_t digits = 0;
    while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9')
        ++digits;
    std::uint64_t n = 0;
    if (!to_uint(text.substr(0, digits), n)) invalid(name, text, "a size such as 65536, 64KiB or 1MiB");
    auto unit = text.substr(digits);
    std::uint64_t mult = 1;
    if (unit.empty() || unit == "B")
        mult = 1;
    else if (unit == "KiB" || unit == "K" || unit == "k")
        mult = 1024;
    else if (unit == "MiB" || unit == "M")
        mult = 1024 * 1024;
    else
        invalid(name, text, "a size such as 65536, 64KiB or 1MiB");
    if (n == 0 || n > (1ull << 32) / mult) invalid(name, text, "a positive size up to 4GiB");
    return static_cast<std::size_t>(n * mult);
}

bool parse_bool(std::string_view name, std::string_view text) {
    if (text == "1" || text == "true" || text == "on" || text == "yes") return true;
    if (text == "0" || text == "false" || text == "off" || text == "no") return false;
    invalid(name, text, "on or off");
}

std::uint64_t parse_uint(std::string_view name, std::string_view text, std::uint64_t min, std::uint64_t max) {
    std::uint64_t n = 0;
    if (!to_uint(text, n) || n < min || n > max)
        invalid(name, text, "an integer from " + std::to_string(min) + " to " + std::to_string(max));
    return n;
}

void parse_listen(std::string_view name, std::string_view text, std::string& host, std::uint16_t& port) {
    std::string_view h;
    std::string_view p;
    if (!text.empty() && text.front() == '[') {
        auto close = text.find(']');
        if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':')
            invalid(name, text, "host:port or [ipv6]:port");
        h = text.substr(1, close - 1);
        p = text.substr(close + 2);
    } else {
        auto colon = text.rfind(':');
        if (colon == std::string_view::npos) invalid(name, text, "host:port or [ipv6]:port");
        h = text.substr(0, colon);
        p = text.substr(colon + 1);
        if (h.find(':') != std::string_view::npos) invalid(name, text, "host:port or [ipv6]:port");
    }
    std::uint64_t n = 0;
    if (h.empty() || !to_uint(p, n) || n > 65535) invalid(name, text, "host:port with a port from 0 to 65535");
    host.assign(h);
    port = static_cast<std::uint16_t>(n);
}

EnvLookup process_env() {
    return [](std::string_view name) -> std::optional<std::string> {
        const char* v = std::getenv(std::string(name).c_str());
        if (v == nullptr) return std::nullopt;
        return std::string(v);
    };
}

Config load_config(const EnvLookup& env, const std::map<std::string, std::string>& overrides) {
    auto get = [&](const SettingSpec& s) -> std::string {
        if (auto it = overrides.find(std::string(s.env)); it != overrides.end()) return it->second;
        if (auto v = env(s.env); v && !v->empty()) return *v;
        if (s.env == "MTAPI_THREADS") return default_threads();
        return std::string(s.fallback);
    };
    Config c;
    for (const auto& s : settings()) {
        const std::string value = get(s);
        const std::string_view n = s.env;
        if (n == "MTAPI_LISTEN")
            parse_listen(n, value, c.listen_host, c.listen_port);
        else if (n == "MTAPI_THREADS")
            c.threads = static_cast<unsigned>(parse_uint(n, value, 1, 256));
        else if (n == "MTAPI_MAX_HEADER_BYTES")
            c.max_header_bytes = parse_size(n, value);
        else if (n == "MTAPI_MAX_BODY_BYTES")
            c.max_body_bytes = parse_size(n, value);
        else if (n == "MTAPI_READ_TIMEOUT")
            c.read_timeout = parse_duration(n, value);
        else if (n == "MTAPI_IDLE_TIMEOUT")
            c.idle_timeout = parse_duration(n, value);
        else if (n == "MTAPI_DRAIN_TIMEOUT")
            c.drain_timeout = parse_duration(n, value);
        else if (n == "MTAPI_LOG_LEVEL") {
            if (!obs::parse_level(value, c.log_level)) invalid(n, value, "debug, info, warn or error");
        } else if (n == "MTAPI_ACCESS_LOG")
            c.access_log = parse_bool(n, value);
        else if (n == "MTAPI_TEST_ENDPOINTS")
            c.test_endpoints = parse_bool(n, value);
    }
    if (c.max_header_bytes < 1024)
        invalid("MTAPI_MAX_HEADER_BYTES", std::to_string(c.max_header_bytes), "at least 1KiB");
    return c;
}

http::ServerOptions Config::server_options() const {
    http::ServerOptions o;
    o.host = listen_host;
    o.port = listen_port;
    o.threads = threads;
    o.header_limit = max_header_bytes;
    o.body_limit = max_body_bytes;
    o.read_timeout = read_timeout;
    o.idle_timeout = idle_timeout;
    o.drain_timeout = drain_timeout;
    o.access_log = access_log;
    return o;
}

}  // namespace mtapi::app
