// Which address login throttling counts by (ratelimit/client_address.hpp): the TCP peer, or behind
// trusted proxies the right-most X-Forwarded-For entry that is not one of them.

#include "ratelimit/client_address.hpp"

#include <gtest/gtest.h>

#include <stdexcept>

namespace mtapi::ratelimit {
namespace {

using Fields = std::vector<std::string_view>;

TEST(TrustedProxies, parses_addresses_and_prefixes_and_refuses_anything_else) {
    EXPECT_TRUE(TrustedProxies::parse("").empty());
    EXPECT_TRUE(TrustedProxies::parse("  ").empty());
    TrustedProxies t = TrustedProxies::parse("10.0.0.0/8, 192.0.2.7 ,fd00::/8,[2001:db8::1]");
    EXPECT_FALSE(t.empty());
    EXPECT_TRUE(t.contains("10.200.3.4"));
    EXPECT_FALSE(t.contains("11.0.0.1"));
    EXPECT_TRUE(t.contains("192.0.2.7"));
    EXPECT_FALSE(t.contains("192.0.2.8"));
    EXPECT_TRUE(t.contains("fd12:3456::1"));
    EXPECT_FALSE(t.contains("fe80::1"));
    EXPECT_TRUE(t.contains("2001:db8::1"));
    EXPECT_TRUE(t.contains("::ffff:10.1.2.3")) << "an IPv4-mapped peer matches IPv4 entries";
    EXPECT_FALSE(t.contains("not an address"));
    // Prefix lengths that are not whole bytes.
    TrustedProxies odd = TrustedProxies::parse("172.16.0.0/12");
    EXPECT_TRUE(odd.contains("172.31.255.255"));
    EXPECT_FALSE(odd.contains("172.32.0.0"));
    EXPECT_FALSE(odd.contains("172.15.255.255"));
    for (const char* bad : {"10.0.0.0/33", "10.0.0.0/-1", "10.0.0.0/", "10.0.0.0/8x", "fd00::/129", "example.com",
                            "10.0.0.1,", "10.0.0.256", ",", "1.2.3.4/8/8"})
        EXPECT_THROW(TrustedProxies::parse(bad), std::invalid_argument) << bad;
}

TEST(TrustedProxies, without_trusted_proxies_the_peer_is_the_client_whatever_the_header_says) {
    TrustedProxies none;
    EXPECT_EQ(none.client_address("198.51.100.9", Fields{"203.0.113.1"}), "198.51.100.9");
    EXPECT_EQ(none.client_address("::ffff:198.51.100.9", {}), "198.51.100.9");
    TrustedProxies lb = TrustedProxies::parse("10.0.0.0/8");
    EXPECT_EQ(lb.client_address("198.51.100.9", Fields{"203.0.113.1"}), "198.51.100.9")
        << "a peer that is not a trusted proxy cannot name another client";
    EXPECT_EQ(lb.client_address("unix-socket", Fields{"203.0.113.1"}), "unix-socket");
}

TEST(TrustedProxies, behind_trusted_proxies_the_rightmost_untrusted_entry_is_the_client) {
    TrustedProxies lb = TrustedProxies::parse("10.0.0.0/8");
    EXPECT_EQ(lb.client_address("10.0.0.1", Fields{"203.0.113.1"}), "203.0.113.1");
    // The client's own entries (left of what the proxies appended) are not believed.
    EXPECT_EQ(lb.client_address("10.0.0.1", Fields{"1.1.1.1, 203.0.113.1, 10.0.0.2"}), "203.0.113.1");
    // Several fields are one list, in order.
    EXPECT_EQ(lb.client_address("10.0.0.1", Fields{"1.1.1.1", "203.0.113.1,10.0.0.3", " 10.0.0.2 "}), "203.0.113.1");
    EXPECT_EQ(lb.client_address("10.0.0.1", Fields{"2001:db8::7"}), "2001:db8::7");
    EXPECT_EQ(lb.client_address("10.0.0.1", Fields{"[2001:db8::7]"}), "2001:db8::7");
    // Only trusted hops: the left-most of them is as far as the chain goes.
    EXPECT_EQ(lb.client_address("10.0.0.1", Fields{"10.9.9.9, 10.0.0.2"}), "10.9.9.9");
    // No header: the proxy itself (an internal caller).
    EXPECT_EQ(lb.client_address("10.0.0.1", {}), "10.0.0.1");
    // Something a trusted proxy would not append ends the walk at the last trusted hop.
    EXPECT_EQ(lb.client_address("10.0.0.1", Fields{"203.0.113.1, garbage, 10.0.0.2"}), "10.0.0.2");
    EXPECT_EQ(lb.client_address("10.0.0.1", Fields{"203.0.113.1:4711"}), "10.0.0.1");
}

}  // namespace
}  // namespace mtapi::ratelimit
