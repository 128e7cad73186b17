#include "app/config.hpp"

#include <charconv>
#include <cstdlib>
#include <functional>
#include <thread>

#include "app/app.hpp"
#include "ratelimit/client_address.hpp"
#include "redis/client.hpp"

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
        {"MTAPI_DATABASE_URL", "database-url", "",
         "PostgreSQL URL of the login role (required), e.g. postgresql://mtapi@127.0.0.1:5432/mtapi"},
        {"MTAPI_DB_POOL_SIZE", "db-pool-size", "8", "PostgreSQL connections per worker thread, 1-100"},
        {"MTAPI_DB_TIMEOUT", "db-timeout", "5s", "deadline for one database operation (acquire, query)"},
        {"MTAPI_MIGRATE_CONCURRENCY", "migrate-concurrency", "4",
         "tenant schemas migrated at once by mtapi migrate, 1-64"},
        {"MTAPI_JWT_SECRET", "jwt-secret", "",
         "HS256 signing secret, at least 32 bytes (required unless MTAPI_JWT_KEYS names a signing key)"},
        {"MTAPI_JWT_KID", "jwt-kid", "default", "kid of MTAPI_JWT_SECRET"},
        {"MTAPI_JWT_KEYS", "jwt-keys", "", "more keys for rotation / EdDSA: kid:alg:state:source,... (see README)"},
        {"MTAPI_JWT_ISSUER", "jwt-issuer", "mtapi", "iss of issued tokens, required on verified ones"},
        {"MTAPI_JWT_AUDIENCE", "jwt-audience", "mtapi", "aud of issued tokens, required on verified ones"},
        {"MTAPI_JWT_TTL", "jwt-ttl", "15m", "lifetime of access tokens"},
        {"MTAPI_CURSOR_SECRET", "cursor-secret", "",
         "key of pagination cursors (≥ 32 bytes); default: derived from the signing key"},
        {"MTAPI_REDIS_URL", "redis-url", "",
         "Redis for rate limits shared by every instance, redis://[[user]:password@]host[:port][/db]; "
         "unset: in-process limits"},
        {"MTAPI_RATE_LIMIT_BACKEND", "rate-limit-backend", "",
         "redis, memory or off (benchmarks only); default: redis when MTAPI_REDIS_URL is set, else memory"},
        {"MTAPI_RATE_LIMIT_FAIL", "rate-limit-fail", "open",
         "Redis unreachable: open (in-process limits, /ready degraded) or closed (503)"},
        {"MTAPI_REDIS_TIMEOUT", "redis-timeout", "200ms", "deadline of one rate limit decision in Redis"},
        {"MTAPI_RATE_LIMIT_RESERVE", "rate-limit-reserve", "64",
         "most tokens a worker thread takes from Redis ahead for a busy tenant (0: one script run per request)"},
        {"MTAPI_RATE_LIMIT_FREE", "rate-limit-free", "600:10",
         "plan free: bucket capacity:refill per second (requests)"},
        {"MTAPI_RATE_LIMIT_STANDARD", "rate-limit-standard", "5000:500", "plan standard: capacity:refill per second"},
        {"MTAPI_RATE_LIMIT_ENTERPRISE", "rate-limit-enterprise", "20000:2000",
         "plan enterprise: capacity:refill per second"},
        {"MTAPI_LOGIN_ACCOUNT_ATTEMPTS", "login-account-attempts", "10",
         "failed logins per (tenant, email) per login window before 429"},
        {"MTAPI_LOGIN_ADDRESS_ATTEMPTS", "login-address-attempts", "300",
         "failed logins per client address (IPv6: per /64) per login window before 429"},
        {"MTAPI_LOGIN_WINDOW", "login-window", "15m",
         "time in which a spent login budget refills completely (evenly, attempt by attempt)"},
        {"MTAPI_TRUSTED_PROXIES", "trusted-proxies", "",
         "reverse proxies (addresses, CIDR prefixes, comma-separated) whose X-Forwarded-For names the client "
         "address for login throttling; unset: the TCP peer is the client"},
        {"MTAPI_HASH_THREADS", "hash-threads", "",
         "threads hashing passwords (argon2id), 1-64; default: half the cores, at least 1"},
        {"MTAPI_HASH_QUEUE", "hash-queue", "64", "password hashes that may wait for a thread; beyond → 503"},
        {"MTAPI_ARGON2_T", "argon2-t", "2", "argon2id passes (t), 2-10"},
        {"MTAPI_ARGON2_M", "argon2-m", "19MiB", "argon2id memory (m), 19MiB-1GiB"},
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

ratelimit::Bucket parse_bucket(std::string_view name, std::string_view text) {
    static constexpr std::string_view kExpected =
        "capacity:refill_per_sec, e.g. 600:10 (capacity 1-1000000000, refill 0-1000000000)";
    auto colon = text.find(':');
    if (colon == std::string_view::npos) invalid(name, text, kExpected);
    std::uint64_t capacity = 0;
    if (!to_uint(text.substr(0, colon), capacity) || capacity < 1 ||
        capacity > static_cast<std::uint64_t>(ratelimit::kMaxCapacity))
        invalid(name, text, kExpected);
    auto rate_text = text.substr(colon + 1);
    double rate = -1;
    auto [p, ec] =
        std::from_chars(rate_text.data(), rate_text.data() + rate_text.size(), rate, std::chars_format::fixed);
    if (rate_text.empty() || ec != std::errc() || p != rate_text.data() + rate_text.size() || !(rate >= 0) ||
        rate > ratelimit::kMaxRefillPerSec)
        invalid(name, text, kExpected);
    return {static_cast<long long>(capacity), rate};
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
        if (s.env == "MTAPI_HASH_THREADS") {
            unsigned n = std::thread::hardware_concurrency() / 2;
            return std::to_string(n == 0 ? 1 : n);
        }
        return std::string(s.fallback);
    };
    using Setter = std::function<void(Config&, std::string_view, const std::string&)>;
    static const std::map<std::string_view, Setter> kSetters = {
        {"MTAPI_LISTEN", [](Config& c, auto n, auto& v) { parse_listen(n, v, c.listen_host, c.listen_port); }},
        {"MTAPI_THREADS",
         [](Config& c, auto n, auto& v) { c.threads = static_cast<unsigned>(parse_uint(n, v, 1, 256)); }},
        {"MTAPI_MAX_HEADER_BYTES", [](Config& c, auto n, auto& v) { c.max_header_bytes = parse_size(n, v); }},
        {"MTAPI_MAX_BODY_BYTES", [](Config& c, auto n, auto& v) { c.max_body_bytes = parse_size(n, v); }},
        {"MTAPI_READ_TIMEOUT", [](Config& c, auto n, auto& v) { c.read_timeout = parse_duration(n, v); }},
        {"MTAPI_IDLE_TIMEOUT", [](Config& c, auto n, auto& v) { c.idle_timeout = parse_duration(n, v); }},
        {"MTAPI_DRAIN_TIMEOUT", [](Config& c, auto n, auto& v) { c.drain_timeout = parse_duration(n, v); }},
        {"MTAPI_LOG_LEVEL",
         [](Config& c, auto n, auto& v) {
             if (!obs::parse_level(v, c.log_level)) invalid(n, v, "debug, info, warn or error");
         }},
        {"MTAPI_ACCESS_LOG", [](Config& c, auto n, auto& v) { c.access_log = parse_bool(n, v); }},
        {"MTAPI_DATABASE_URL", [](Config& c, auto, auto& v) { c.database_url = v; }},
        {"MTAPI_DB_POOL_SIZE", [](Config& c, auto n, auto& v) { c.db_pool_size = parse_uint(n, v, 1, 100); }},
        {"MTAPI_DB_TIMEOUT", [](Config& c, auto n, auto& v) { c.db_timeout = parse_duration(n, v); }},
        {"MTAPI_MIGRATE_CONCURRENCY",
         [](Config& c, auto n, auto& v) { c.migrate_concurrency = static_cast<unsigned>(parse_uint(n, v, 1, 64)); }},
        {"MTAPI_HASH_THREADS",
         [](Config& c, auto n, auto& v) { c.hash_threads = static_cast<unsigned>(parse_uint(n, v, 1, 64)); }},
        {"MTAPI_HASH_QUEUE", [](Config& c, auto n, auto& v) { c.hash_queue = parse_uint(n, v, 1, 100000); }},
        {"MTAPI_ARGON2_T", [](Config& c, auto n, auto& v) { c.argon2_t = parse_uint(n, v, 2, 10); }},
        {"MTAPI_ARGON2_M",
         [](Config& c, auto n, auto& v) {
             c.argon2_m = parse_size(n, v);
             if (c.argon2_m < 19u * 1024u * 1024u || c.argon2_m > 1024u * 1024u * 1024u)
                 invalid(n, v, "a size from 19MiB to 1024MiB");
         }},
        {"MTAPI_TEST_ENDPOINTS", [](Config& c, auto n, auto& v) { c.test_endpoints = parse_bool(n, v); }},
        {"MTAPI_REDIS_URL",
         [](Config& c, auto n, auto& v) {
             if (!v.empty()) {
                 try {
                     redis::parse_url(v);
                 } catch (const std::invalid_argument& e) {
                     invalid(n, "(hidden)", std::string("a redis:// URL (") + e.what() + ")");
                 }
             }
             c.redis_url = v;
         }},
        {"MTAPI_RATE_LIMIT_BACKEND",
         [](Config& c, auto n, auto& v) {
             using B = Config::RateLimitBackend;
             if (v.empty())
                 c.rate_limit_backend = c.redis_url.empty() ? B::memory : B::redis;
             else if (v == "redis")
                 c.rate_limit_backend = B::redis;
             else if (v == "memory")
                 c.rate_limit_backend = B::memory;
             else if (v == "off")
                 c.rate_limit_backend = B::off;
             else
                 invalid(n, v, "redis, memory or off");
             if (c.rate_limit_backend == B::redis && c.redis_url.empty())
                 invalid(n, v, "memory or off while MTAPI_REDIS_URL is unset");
         }},
        {"MTAPI_RATE_LIMIT_FAIL",
         [](Config& c, auto n, auto& v) {
             if (v == "open")
                 c.rate_limit_fail_closed = false;
             else if (v == "closed")
                 c.rate_limit_fail_closed = true;
             else
                 invalid(n, v, "open or closed");
         }},
        {"MTAPI_REDIS_TIMEOUT", [](Config& c, auto n, auto& v) { c.redis_timeout = parse_duration(n, v); }},
        {"MTAPI_RATE_LIMIT_RESERVE",
         [](Config& c, auto n, auto& v) { c.rate_limit_reserve = static_cast<long long>(parse_uint(n, v, 0, 1000)); }},
        {"MTAPI_RATE_LIMIT_FREE", [](Config& c, auto n, auto& v) { c.plan_free = parse_bucket(n, v); }},
        {"MTAPI_RATE_LIMIT_STANDARD", [](Config& c, auto n, auto& v) { c.plan_standard = parse_bucket(n, v); }},
        {"MTAPI_RATE_LIMIT_ENTERPRISE", [](Config& c, auto n, auto& v) { c.plan_enterprise = parse_bucket(n, v); }},
        {"MTAPI_LOGIN_ACCOUNT_ATTEMPTS",
         [](Config& c, auto n, auto& v) {
             c.login_account_attempts = static_cast<long long>(parse_uint(n, v, 1, 1'000'000'000));
         }},
        {"MTAPI_LOGIN_ADDRESS_ATTEMPTS",
         [](Config& c, auto n, auto& v) {
             c.login_address_attempts = static_cast<long long>(parse_uint(n, v, 1, 1'000'000'000));
         }},
        {"MTAPI_LOGIN_WINDOW",
         [](Config& c, auto n, auto& v) {
             c.login_window = std::chrono::duration_cast<std::chrono::seconds>(parse_duration(n, v));
             if (c.login_window.count() < 1 || c.login_window.count() > 24 * 3600)
                 invalid(n, v, "a duration from 1s to 24h");
         }},
        {"MTAPI_TRUSTED_PROXIES",
         [](Config& c, auto n, auto& v) {
             try {
                 ratelimit::TrustedProxies::parse(v);
             } catch (const std::invalid_argument& e) {
                 invalid(n, v, "IP addresses or CIDR prefixes, comma-separated: " + std::string(e.what()));
             }
             c.trusted_proxies = v;
         }},
        {"MTAPI_JWT_SECRET", [](Config& c, auto, auto& v) { c.jwt_secret = v; }},
        {"MTAPI_JWT_KID", [](Config& c, auto, auto& v) { c.jwt_kid = v; }},
        {"MTAPI_JWT_KEYS", [](Config& c, auto, auto& v) { c.jwt_keys = v; }},
        {"MTAPI_JWT_ISSUER",
         [](Config& c, auto n, auto& v) {
             if (v.empty()) invalid(n, v, "a non-empty string");
             c.jwt_issuer = v;
         }},
        {"MTAPI_JWT_AUDIENCE",
         [](Config& c, auto n, auto& v) {
             if (v.empty()) invalid(n, v, "a non-empty string");
             c.jwt_audience = v;
         }},
        {"MTAPI_JWT_TTL",
         [](Config& c, auto n, auto& v) {
             c.jwt_ttl = std::chrono::duration_cast<std::chrono::seconds>(parse_duration(n, v));
             if (c.jwt_ttl.count() < 60 || c.jwt_ttl.count() > 24 * 3600) invalid(n, v, "a duration from 1m to 24h");
         }},
        {"MTAPI_CURSOR_SECRET",
         [](Config& c, auto n, auto& v) {
             if (!v.empty() && v.size() < 32) invalid(n, "(hidden)", "at least 32 bytes");
             c.cursor_secret = v;
         }},
    };
    Config c;
    for (const auto& s : settings()) {
        auto it = kSetters.find(s.env);
        if (it == kSetters.end()) throw std::logic_error("setting without a parser: " + std::string(s.env));
        it->second(c, s.env, get(s));
    }
    if (c.max_header_bytes < 1024)
        invalid("MTAPI_MAX_HEADER_BYTES", std::to_string(c.max_header_bytes), "at least 1KiB");
    return c;
}

pg::PoolOptions pool_options(const Config& config) {
    pg::PoolOptions o;
    o.connect.url = config.database_url;
    o.size = config.db_pool_size;
    o.acquire_timeout = config.db_timeout;
    return o;
}

auth::HashParams hash_params(const Config& config) {
    return {config.argon2_t, config.argon2_m};
}

void require_database(const Config& config) {
    if (config.database_url.empty())
        throw ConfigError("MTAPI_DATABASE_URL is not set: expected the PostgreSQL URL of the login role");
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
