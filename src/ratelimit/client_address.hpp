#pragma once
// The client address that login throttling counts failed attempts by (SPEC §4: "per client
// address").
//
// Directly on the network the TCP peer is the client. Behind reverse proxies or load balancers
// every request comes from a proxy, so MTAPI_TRUSTED_PROXIES names them (addresses and CIDR
// prefixes) and X-Forwarded-For is read from the right: each entry that is a trusted proxy is a
// hop to skip, the first one that is not is the client. Entries further left were written by
// the client itself and are never believed. Without trusted proxies, or when the peer is not one
// of them, X-Forwarded-For is ignored: otherwise a client could pick a fresh address for every
// attempt.

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mtapi::ratelimit {

class TrustedProxies {
  public:
    TrustedProxies() = default;

    // A comma-separated list of IPv4/IPv6 addresses and CIDR prefixes, e.g.
    // "10.0.0.0/8, 192.0.2.7, fd00::/8"; empty: none. Throws std::invalid_argument naming the first
    // entry that is neither.
    static TrustedProxies parse(std::string_view list);

    bool empty() const { return nets_.empty(); }
    // `address` (text) is a trusted proxy. IPv4-mapped IPv6 addresses match IPv4 entries.
    bool contains(std::string_view address) const;

    // The client behind `peer` (the TCP peer's address as text), given the X-Forwarded-For field
    // values in the order received (several fields count as one list). Addresses come back in
    // canonical text form; a peer that is not an address comes back unchanged.
    std::string client_address(std::string_view peer, const std::vector<std::string_view>& forwarded) const;

  private:
    struct Net {
        std::array<std::uint8_t, 16> bytes{};  // IPv4 as IPv4-mapped IPv6
        int prefix = 0;                        // bits of `bytes` that must match
    };
    bool matches(const std::array<std::uint8_t, 16>& address) const;

    std::vector<Net> nets_;
};

}  // namespace mtapi::ratelimit
