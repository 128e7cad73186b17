#include "ratelimit/client_address.hpp"

#include <boost/asio/ip/address.hpp>
#include <charconv>
#include <optional>
#include <stdexcept>

#include "util/text.hpp"

namespace mtapi::ratelimit {
namespace {

namespace ip = boost::asio::ip;

// An address in canonical form: IPv4-mapped IPv6 becomes IPv4. "[v6]" is accepted too.
std::optional<ip::address> parse_address(std::string_view text) {
    if (text.size() > 2 && text.front() == '[' && text.back() == ']') text = text.substr(1, text.size() - 2);
    if (text.empty() || text.size() > 64) return std::nullopt;
    boost::system::error_code ec;
    ip::address a = ip::make_address(std::string(text), ec);  // a copy: NUL-terminated
    if (ec) return std::nullopt;
    if (a.is_v6() && a.to_v6().is_v4_mapped()) a = ip::make_address_v4(ip::v4_mapped, a.to_v6());
    return a;
}

// The 16 bytes an address is compared by: IPv4 as IPv4-mapped IPv6 (its bits are the last 32).
std::array<std::uint8_t, 16> bytes_of(const ip::address& a) {
    if (a.is_v6()) return a.to_v6().to_bytes();
    return ip::make_address_v6(ip::v4_mapped, a.to_v4()).to_bytes();
}

// Calls fn with each comma-separated entry, trimmed; empty entries included ("a," has two).
template <class Fn>
void for_each_entry(std::string_view list, Fn fn) {
    for (;;) {
        const auto comma = list.find(',');
        std::string_view entry = util::trim_blanks(list.substr(0, comma));
        fn(entry);
        if (comma == std::string_view::npos) break;
        list.remove_prefix(comma + 1);
    }
}

}  // namespace

TrustedProxies TrustedProxies::parse(std::string_view list) {
    TrustedProxies t;
    if (util::trim_blanks(list).empty()) return t;
    for_each_entry(list, [&](std::string_view entry) {
        std::string_view address = entry;
        std::optional<int> bits;
        if (const auto slash = entry.find('/'); slash != std::string_view::npos) {
            address = entry.substr(0, slash);
            const std::string_view p = entry.substr(slash + 1);
            int v = -1;
            auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), v);
            if (ec != std::errc() || end != p.data() + p.size() || p.empty()) v = -1;
            bits = v;
        }
        const auto a = parse_address(address);
        const int max_bits = a && a->is_v4() ? 32 : 128;
        if (!a || (bits && (*bits < 0 || *bits > max_bits)))
            throw std::invalid_argument("'" + std::string(entry.substr(0, 64)) +
                                        "' is neither an IP address nor a CIDR prefix (address/bits)");
        Net n;
        n.bytes = bytes_of(*a);
        n.prefix = (a->is_v4() ? 96 : 0) + bits.value_or(max_bits);
        t.nets_.push_back(n);
    });
    return t;
}

bool TrustedProxies::matches(const std::array<std::uint8_t, 16>& address) const {
    for (const Net& n : nets_) {
        int bits = n.prefix;
        std::size_t i = 0;
        bool same = true;
        for (; bits >= 8 && same; bits -= 8, ++i)
            same = address[i] == n.bytes[i];
        if (same && bits > 0) {
            const auto mask = static_cast<std::uint8_t>(0xFF << (8 - bits));
            same = (address[i] & mask) == (n.bytes[i] & mask);
        }
        if (same) return true;
    }
    return false;
}

bool TrustedProxies::contains(std::string_view address) const {
    const auto a = parse_address(util::trim_blanks(address));
    return a && matches(bytes_of(*a));
}

std::string TrustedProxies::client_address(std::string_view peer,
                                           const std::vector<std::string_view>& forwarded) const {
    const auto p = parse_address(peer);
    if (!p) return std::string(peer);
    ip::address hop = *p;  // the nearest hop so far: trusted while the walk goes on
    if (nets_.empty() || !matches(bytes_of(hop))) return hop.to_string();
    std::vector<std::string_view> entries;
    for (std::string_view field : forwarded)
        for_each_entry(field, [&](std::string_view e) { entries.push_back(e); });
    for (auto it = entries.rbegin(); it != entries.rend(); ++it) {
        const auto a = parse_address(*it);
        // Trusted proxies append valid addresses: anything else is not theirs, so the last
        // trusted hop is as far as the chain can be believed.
        if (!a) break;
        hop = *a;
        if (!matches(bytes_of(hop))) break;  // the client
    }
    return hop.to_string();
}

}  // namespace mtapi::ratelimit
