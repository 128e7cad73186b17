#pragma once
// Typed, validated settings. Each setting has an MTAPI_* environment variable and a command-line
// flag; the flag wins. An invalid value raises ConfigError with one line that names the setting.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "http/server.hpp"
#include "obs/log.hpp"
#include "ratelimit/limiter.hpp"

namespace mtapi::app {

struct ConfigError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

struct SettingSpec {
    std::string_view env;       // MTAPI_LISTEN
    std::string_view flag;      // listen  (→ --listen)
    std::string_view fallback;  // default as text; empty: unset
    std::string_view help;
};

// Every setting mtapi reads, in the order the README documents them.
const std::vector<SettingSpec>& settings();

struct Config {
    std::string listen_host = "127.0.0.1";
    std::uint16_t listen_port = 8000;
    unsigned threads = 1;
    std::size_t max_header_bytes = 16 * 1024;
    std::size_t max_body_bytes = 1024 * 1024;
    std::chrono::milliseconds read_timeout{10'000};
    std::chrono::milliseconds idle_timeout{60'000};
    std::chrono::milliseconds drain_timeout{15'000};
    obs::Level log_level = obs::Level::info;
    bool access_log = true;
    bool test_endpoints = false;

    std::string database_url;  // required by serve, migrate and tenant commands
    std::size_t db_pool_size = 8;
    std::chrono::milliseconds db_timeout{5'000};
    unsigned migrate_concurrency = 4;

    // Tokens (the keyring itself is read by auth::Keyring from these three).
    std::string jwt_secret;
    std::string jwt_kid = "default";
    std::string jwt_keys;
    std::string jwt_issuer = "mtapi";
    std::string jwt_audience = "mtapi";
    std::chrono::seconds jwt_ttl{15 * 60};
    std::string cursor_secret;  // empty: derived from the signing secret

    // Rate limiting (SPEC §4). The backend is Redis when a URL is set, else in-process.
    enum class RateLimitBackend { redis, memory, off };
    std::string redis_url;
    RateLimitBackend rate_limit_backend = RateLimitBackend::memory;
    bool rate_limit_fail_closed = false;
    std::chrono::milliseconds redis_timeout{200};
    long long rate_limit_reserve = 64;  // tokens a shard may take from Redis ahead for one busy bucket
    ratelimit::Bucket plan_free{600, 10};
    ratelimit::Bucket plan_standard{5000, 500};
    ratelimit::Bucket plan_enterprise{20000, 2000};
    long long login_account_attempts = 10;   // failed logins per (tenant, email) per login window
    long long login_address_attempts = 300;  // failed logins per client address per login window
    std::chrono::seconds login_window{15 * 60};
    std::string trusted_proxies;  // MTAPI_TRUSTED_PROXIES: validated addresses/CIDRs, comma-separated

    unsigned hash_threads = 2;
    std::size_t hash_queue = 64;
    unsigned long long argon2_t = 2;
    std::size_t argon2_m = 19u * 1024u * 1024u;

    http::ServerOptions server_options() const;
};

using EnvLookup = std::function<std::optional<std::string>(std::string_view name)>;

// Reads every setting: `overrides` (keyed by env name, from the command line) first, then the
// environment, then the default.
Config load_config(const EnvLookup& env, const std::map<std::string, std::string>& overrides = {});

// Throws ConfigError when MTAPI_DATABASE_URL is empty.
void require_database(const Config& config);

EnvLookup process_env();

// Value parsers, exposed for tests. Each throws ConfigError naming `name`.
std::chrono::milliseconds parse_duration(std::string_view name, std::string_view text);  // 10s, 500ms, 2m, 1h
std::size_t parse_size(std::string_view name, std::string_view text);                    // 1048576, 16KiB, 1MiB
bool parse_bool(std::string_view name, std::string_view text);  // true/false, on/off, 1/0, yes/no
std::uint64_t parse_uint(std::string_view name, std::string_view text, std::uint64_t min, std::uint64_t max);
// "capacity:refill_per_sec", e.g. 600:10 or 100:0.5.
ratelimit::Bucket parse_bucket(std::string_view name, std::string_view text);
void parse_listen(std::string_view name, std::string_view text, std::string& host, std::uint16_t& port);

}  // namespace mtapi::app
