#include "ratelimit/login_throttle.hpp"

#include <openssl/evp.h>

#include <algorithm>
#include <boost/asio/ip/address.hpp>
#include <cctype>
#include <stdexcept>

namespace mtapi::ratelimit {
namespace {

std::string lower(std::string_view s) {
    std::string out(s);
    std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
    return out;
}

std::string sha256_hex(std::string_view data, std::size_t hex_digits) {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (EVP_Digest(data.data(), data.size(), digest, &len, EVP_sha256(), nullptr) != 1)
        throw std::runtime_error("SHA-256 failed");
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out;
    out.reserve(hex_digits);
    for (unsigned int i = 0; i < len && out.size() < hex_digits; ++i) {
        out.push_back(kHex[digest[i] >> 4]);
        out.push_back(kHex[digest[i] & 0xf]);
    }
    return out;
}

}  // namespace

LoginThrottle::LoginThrottle(Limiter& limiter, LoginPolicy policy) : limiter_(limiter), policy_(policy) {}

std::string LoginThrottle::account_id(std::string_view tenant_slug, std::string_view email) {
    std::string material = lower(tenant_slug);
    material.push_back('\0');
    material.append(lower(email));
    return "login:acct:" + sha256_hex(material, 32);
}

std::string LoginThrottle::address_id(std::string_view client_address) {
    boost::system::error_code ec;
    auto addr = boost::asio::ip::make_address(std::string(client_address), ec);
    if (ec) {
        // Not an address (a test double, a unix socket peer): use the text, bounded.
        return "login:addr:" + std::string(client_address.substr(0, 64));
    }
    if (addr.is_v6() && addr.to_v6().is_v4_mapped())
        addr = boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, addr.to_v6());
    if (addr.is_v6()) {
        // One client typically holds a whole /64: limit the prefix, not each of its addresses.
        auto bytes = addr.to_v6().to_bytes();
        std::fill(bytes.begin() + 8, bytes.end(), 0);
        return "login:addr:" + boost::asio::ip::address_v6(bytes).to_string() + "/64";
    }
    return "login:addr:" + addr.to_string();
}

boost::asio::awaitable<LoginVerdict> LoginThrottle::begin(std::string_view tenant_slug, std::string_view email,
                                                          std::string_view client_address) {
    return run_begin(account_id(tenant_slug, email), address_id(client_address));
}

boost::asio::awaitable<LoginVerdict> LoginThrottle::run_begin(std::string account, std::string address) {
    LoginVerdict v;
    // The address first: a client spraying many accounts is stopped before it touches them.
    Decision by_address = co_await limiter_.take(address, policy_.address);
    v.fallback = by_address.fallback;
    if (!by_address.allowed) {
        v.allowed = false;
        v.limited_by = LoginVerdict::Scope::address;
        v.retry_after_seconds = std::max(1LL, by_address.retry_after_seconds);
        co_return v;
    }
    Decision by_account = co_await limiter_.take(account, policy_.account);
    v.fallback = v.fallback || by_account.fallback;
    if (!by_account.allowed) {
        // No password is checked, so this attempt costs the address nothing.
        co_await limiter_.refund(address, policy_.address);
        v.allowed = false;
        v.limited_by = LoginVerdict::Scope::account;
        v.retry_after_seconds = std::max(1LL, by_account.retry_after_seconds);
        co_return v;
    }
    co_return v;
}

boost::asio::awaitable<void> LoginThrottle::succeeded(std::string_view tenant_slug, std::string_view email,
                                                      std::string_view client_address) {
    return run_succeeded(account_id(tenant_slug, email), address_id(client_address));
}

boost::asio::awaitable<void> LoginThrottle::run_succeeded(std::string account, std::string address) {
    try {
        co_await limiter_.refund(account, policy_.account);
        co_await limiter_.refund(address, policy_.address);
    } catch (const std::exception&) {
        // A lost refund only makes the budget one attempt smaller for a while.
    }
}

}  // namespace mtapi::ratelimit
