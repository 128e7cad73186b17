#include "app/config.hpp"

#include <gtest/gtest.h>

using namespace mtapi::app;
using namespace std::chrono_literals;

namespace {

EnvLookup env_of(std::map<std::string, std::string> vars) {
    return [vars = std::move(vars)](std::string_view name) -> std::optional<std::string> {
        auto it = vars.find(std::string(name));
        if (it == vars.end()) return std::nullopt;
        return it->second;
    };
}

std::string error_of(std::map<std::string, std::string> vars) {
    try {
        load_config(env_of(std::move(vars)));
    } catch (const ConfigError& e) {
        return e.what();
    }
    return "";
}

}  // namespace

TEST(Config, defaults_match_the_documentation) {
    Config c = load_config(env_of({}));
    EXPECT_EQ(c.listen_host, "127.0.0.1");
    EXPECT_EQ(c.listen_port, 8000);
    EXPECT_GE(c.threads, 1u);
    EXPECT_EQ(c.max_header_bytes, 16u * 1024);
    EXPECT_EQ(c.max_body_bytes, 1024u * 1024);
    EXPECT_EQ(c.read_timeout, 10s);
    EXPECT_EQ(c.idle_timeout, 60s);
    EXPECT_EQ(c.drain_timeout, 15s);
    EXPECT_TRUE(c.access_log);
    EXPECT_FALSE(c.test_endpoints);
}

TEST(Config, reads_environment) {
    Config c = load_config(env_of({{"MTAPI_LISTEN", "0.0.0.0:9000"},
                                   {"MTAPI_THREADS", "3"},
                                   {"MTAPI_MAX_BODY_BYTES", "64KiB"},
                                   {"MTAPI_READ_TIMEOUT", "500ms"},
                                   {"MTAPI_IDLE_TIMEOUT", "2m"},
                                   {"MTAPI_ACCESS_LOG", "off"},
                                   {"MTAPI_LOG_LEVEL", "warn"}}));
    EXPECT_EQ(c.listen_host, "0.0.0.0");
    EXPECT_EQ(c.listen_port, 9000);
    EXPECT_EQ(c.threads, 3u);
    EXPECT_EQ(c.max_body_bytes, 64u * 1024);
    EXPECT_EQ(c.read_timeout, 500ms);
    EXPECT_EQ(c.idle_timeout, 120s);
    EXPECT_FALSE(c.access_log);
    EXPECT_EQ(c.log_level, mtapi::obs::Level::warn);
}

TEST(Config, command_line_overrides_environment) {
    Config c =
        load_config(env_of({{"MTAPI_LISTEN", "0.0.0.0:9000"}, {"MTAPI_THREADS", "3"}}), {{"MTAPI_THREADS", "5"}});
    EXPECT_EQ(c.threads, 5u);
    EXPECT_EQ(c.listen_port, 9000);
}

TEST(Config, accepts_ipv6_listen_address) {
    Config c = load_config(env_of({{"MTAPI_LISTEN", "[::1]:0"}}));
    EXPECT_EQ(c.listen_host, "::1");
    EXPECT_EQ(c.listen_port, 0);
}

TEST(Config, invalid_values_name_the_setting_and_the_expectation) {
    EXPECT_EQ(error_of({{"MTAPI_THREADS", "abc"}}), "invalid MTAPI_THREADS='abc': expected an integer from 1 to 256");
    EXPECT_EQ(error_of({{"MTAPI_THREADS", "0"}}), "invalid MTAPI_THREADS='0': expected an integer from 1 to 256");
    EXPECT_NE(error_of({{"MTAPI_LISTEN", "8000"}}).find("MTAPI_LISTEN"), std::string::npos);
    EXPECT_NE(error_of({{"MTAPI_LISTEN", "host:99999"}}).find("MTAPI_LISTEN"), std::string::npos);
    EXPECT_NE(error_of({{"MTAPI_LISTEN", "::1:80"}}).find("MTAPI_LISTEN"), std::string::npos);
    EXPECT_NE(error_of({{"MTAPI_READ_TIMEOUT", "10 parsecs"}}).find("MTAPI_READ_TIMEOUT"), std::string::npos);
    EXPECT_NE(error_of({{"MTAPI_READ_TIMEOUT", "0s"}}).find("MTAPI_READ_TIMEOUT"), std::string::npos);
    EXPECT_NE(error_of({{"MTAPI_MAX_BODY_BYTES", "-1"}}).find("MTAPI_MAX_BODY_BYTES"), std::string::npos);
    EXPECT_NE(error_of({{"MTAPI_MAX_BODY_BYTES", "1GB"}}).find("MTAPI_MAX_BODY_BYTES"), std::string::npos);
    EXPECT_NE(error_of({{"MTAPI_ACCESS_LOG", "maybe"}}).find("MTAPI_ACCESS_LOG"), std::string::npos);
    EXPECT_NE(error_of({{"MTAPI_LOG_LEVEL", "loud"}}).find("MTAPI_LOG_LEVEL"), std::string::npos);
    EXPECT_NE(error_of({{"MTAPI_MAX_HEADER_BYTES", "100"}}).find("MTAPI_MAX_HEADER_BYTES"), std::string::npos);
}

TEST(Config, error_message_is_a_single_line) {
    std::string e = error_of({{"MTAPI_THREADS", "x\ny"}});
    ASSERT_FALSE(e.empty());
    // The value is echoed as given; the message itself adds no line breaks.
    EXPECT_EQ(std::count(e.begin(), e.end(), '\n'), 1);
}

TEST(Config, parses_durations_and_sizes) {
    EXPECT_EQ(parse_duration("X", "250ms"), 250ms);
    EXPECT_EQ(parse_duration("X", "3"), 3s);
    EXPECT_EQ(parse_duration("X", "1h"), 3600s);
    EXPECT_THROW(parse_duration("X", "ms"), ConfigError);
    EXPECT_THROW(parse_duration("X", "1.5s"), ConfigError);
    EXPECT_EQ(parse_size("X", "1MiB"), 1024u * 1024);
    EXPECT_EQ(parse_size("X", "100"), 100u);
    EXPECT_THROW(parse_size("X", ""), ConfigError);
    EXPECT_TRUE(parse_bool("X", "yes"));
    EXPECT_FALSE(parse_bool("X", "0"));
}

TEST(Config, reads_database_and_hashing_settings) {
    Config c = load_config(env_of({{"MTAPI_DATABASE_URL", "postgresql://u@h:5/d"},
                                   {"MTAPI_DB_POOL_SIZE", "3"},
                                   {"MTAPI_DB_TIMEOUT", "750ms"},
                                   {"MTAPI_MIGRATE_CONCURRENCY", "9"},
                                   {"MTAPI_HASH_THREADS", "4"},
                                   {"MTAPI_ARGON2_M", "64MiB"}}));
    EXPECT_EQ(c.database_url, "postgresql://u@h:5/d");
    EXPECT_EQ(c.db_pool_size, 3u);
    EXPECT_EQ(c.db_timeout, 750ms);
    EXPECT_EQ(c.migrate_concurrency, 9u);
    EXPECT_EQ(c.hash_threads, 4u);
    EXPECT_EQ(c.argon2_m, 64u * 1024 * 1024);
    EXPECT_NO_THROW(require_database(c));
}

TEST(Config, database_url_is_required_where_the_database_is_used) {
    Config c = load_config(env_of({}));
    EXPECT_THROW(require_database(c), ConfigError);
}

TEST(Config, argon2_memory_below_owasp_minimum_is_refused) {
    EXPECT_NE(error_of({{"MTAPI_ARGON2_M", "8MiB"}}).find("MTAPI_ARGON2_M"), std::string::npos);
    EXPECT_NE(error_of({{"MTAPI_ARGON2_T", "1"}}).find("MTAPI_ARGON2_T"), std::string::npos);
}

TEST(Config, rate_limit_backend_follows_the_redis_url) {
    using B = Config::RateLimitBackend;
    EXPECT_EQ(load_config(env_of({})).rate_limit_backend, B::memory);
    Config c = load_config(env_of({{"MTAPI_REDIS_URL", "redis://127.0.0.1:6379/2"}}));
    EXPECT_EQ(c.rate_limit_backend, B::redis);
    EXPECT_EQ(c.redis_url, "redis://127.0.0.1:6379/2");
    EXPECT_FALSE(c.rate_limit_fail_closed);
    EXPECT_EQ(load_config(env_of({{"MTAPI_REDIS_URL", "redis://h"}, {"MTAPI_RATE_LIMIT_BACKEND", "memory"}}))
                  .rate_limit_backend,
              B::memory);
    EXPECT_EQ(load_config(env_of({{"MTAPI_RATE_LIMIT_BACKEND", "off"}})).rate_limit_backend, B::off);
    EXPECT_TRUE(load_config(env_of({{"MTAPI_RATE_LIMIT_FAIL", "closed"}})).rate_limit_fail_closed);
}

TEST(Config, rate_limit_settings_are_validated) {
    EXPECT_NE(error_of({{"MTAPI_RATE_LIMIT_BACKEND", "redis"}}).find("MTAPI_REDIS_URL is unset"), std::string::npos);
    EXPECT_NE(error_of({{"MTAPI_RATE_LIMIT_BACKEND", "etcd"}}).find("MTAPI_RATE_LIMIT_BACKEND"), std::string::npos);
    EXPECT_NE(error_of({{"MTAPI_RATE_LIMIT_FAIL", "sometimes"}}).find("MTAPI_RATE_LIMIT_FAIL"), std::string::npos);
    EXPECT_NE(error_of({{"MTAPI_REDIS_URL", "http://h:1"}}).find("MTAPI_REDIS_URL"), std::string::npos);
    EXPECT_EQ(error_of({{"MTAPI_REDIS_URL", "redis://:s3cret@h:1/x"}}).find("s3cret"), std::string::npos)
        << "a Redis password must never be echoed";
    for (const char* bad : {"10", "0:1", "10:-1", "10:abc", "x:1", "10:1:2", "2000000000:1", "10:1e99"})
        EXPECT_NE(error_of({{"MTAPI_RATE_LIMIT_FREE", bad}}).find("MTAPI_RATE_LIMIT_FREE"), std::string::npos) << bad;
    EXPECT_NE(error_of({{"MTAPI_LOGIN_ACCOUNT_ATTEMPTS", "0"}}).find("MTAPI_LOGIN_ACCOUNT_ATTEMPTS"),
              std::string::npos);
    EXPECT_NE(error_of({{"MTAPI_TRUSTED_PROXIES", "10.0.0.0/8,proxy.local"}}).find("MTAPI_TRUSTED_PROXIES"),
              std::string::npos);
    EXPECT_EQ(load_config(env_of({{"MTAPI_TRUSTED_PROXIES", "10.0.0.0/8, ::1"}})).trusted_proxies, "10.0.0.0/8, ::1");
    for (const char* bad : {"-1", "1001", "many"})
        EXPECT_NE(error_of({{"MTAPI_RATE_LIMIT_RESERVE", bad}}).find("MTAPI_RATE_LIMIT_RESERVE"), std::string::npos)
            << bad;
}

TEST(Config, plan_buckets_and_login_budgets_are_read) {
    Config d = load_config(env_of({}));
    EXPECT_EQ(d.plan_free.capacity, 600);
    EXPECT_EQ(d.plan_free.refill_per_sec, 10);
    EXPECT_EQ(d.plan_standard.capacity, 5000);
    EXPECT_EQ(d.plan_enterprise.refill_per_sec, 2000);
    EXPECT_EQ(d.login_account_attempts, 10);
    EXPECT_EQ(d.login_address_attempts, 300);
    EXPECT_EQ(d.login_window, 15min);
    EXPECT_EQ(d.rate_limit_reserve, 64);
    EXPECT_EQ(load_config(env_of({{"MTAPI_RATE_LIMIT_RESERVE", "0"}})).rate_limit_reserve, 0);
    Config c = load_config(env_of({{"MTAPI_RATE_LIMIT_STANDARD", "12:0.5"},
                                   {"MTAPI_LOGIN_ACCOUNT_ATTEMPTS", "3"},
                                   {"MTAPI_LOGIN_WINDOW", "1m"}}));
    EXPECT_EQ(c.plan_standard.capacity, 12);
    EXPECT_EQ(c.plan_standard.refill_per_sec, 0.5);
    EXPECT_EQ(c.login_account_attempts, 3);
    EXPECT_EQ(c.login_window, 60s);
}
