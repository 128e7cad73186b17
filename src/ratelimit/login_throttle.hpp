#pragma once
// Login throttling against password guessing, on the same limiter as requests (in production
// the shard's FailoverLimiter, so it keeps limiting from the in-process buckets while Redis is
// down).
//
// Two budgets, both token buckets:
// - per account, (tenant slug, lowercased email): 10 failed attempts, then one more every 90 s
//   (10 per 15 minutes). Stops guessing one account's password, from any number of addresses.
// - per client address (an IPv4 address, or the /64 of an IPv6 address, which one client usually
//   holds whole): 100 failed attempts, then one every 9 s (100 per 15 minutes). Stops one client
//   trying a few passwords against many accounts.
//
// Only failures count. begin() reserves one attempt from both budgets *before* the password is
// checked, so concurrent guesses cannot all pass a check-then-count race; succeeded() gives the
// reservation back. An attempt begin() refuses is answered 429 with Retry-After and its password
// is not checked at all (which also spares the hashing work). Backoff: once a budget is spent,
// attempts are spaced by its refill period (90 s per account, 9 s per address), and Retry-After
// says how long; every further failure spends the next token as soon as it refills, so a client
// that keeps guessing never gets faster than that pace, while the account's owner, whose
// successful logins are refunded, regains the full budget after 15 quiet minutes.
//
// Bucket ids: login:acct:<first 32 hex digits of SHA-256(lower(slug) NUL lower(email))> (no email
// address is stored in Redis, and the key length is bounded) and login:addr:<address>; in Redis
// rl:{login:…}.

#include <boost/asio/awaitable.hpp>
#include <string>
#include <string_view>

#include "ratelimit/limiter.hpp"

namespace mtapi::ratelimit {

struct LoginPolicy {
    Bucket account{10, 10.0 / 900.0};
    Bucket address{100, 100.0 / 900.0};
};

struct LoginVerdict {
    enum class Scope { none, account, address };
    bool allowed = true;
    long long retry_after_seconds = 0;  // ≥ 1 when refused
    Scope limited_by = Scope::none;
    bool fallback = false;  // decided in process because Redis was unusable
};

class LoginThrottle {
  public:
    explicit LoginThrottle(Limiter& limiter, LoginPolicy policy = {});

    // Before checking the password: reserves one attempt for the address and the account. Throws
    // what the limiter throws (Unavailable in fail-closed mode).
    boost::asio::awaitable<LoginVerdict> begin(std::string_view tenant_slug, std::string_view email,
                                               std::string_view client_address);
    // After a successful login: returns the reserved attempt to both budgets. Never throws.
    boost::asio::awaitable<void> succeeded(std::string_view tenant_slug, std::string_view email,
                                           std::string_view client_address);

    const LoginPolicy& policy() const { return policy_; }

    static std::string account_id(std::string_view tenant_slug, std::string_view email);
    static std::string address_id(std::string_view client_address);

  private:
    boost::asio::awaitable<LoginVerdict> run_begin(std::string account, std::string address);
    boost::asio::awaitable<void> run_succeeded(std::string account, std::string address);

    Limiter& limiter_;
    LoginPolicy policy_;
};

}  // namespace mtapi::ratelimit
