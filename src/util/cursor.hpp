#pragma once
// Opaque, tamper-evident keyset cursors. A cursor carries a position (created_at, id) and is
// MACed (HMAC-SHA256, truncated to 128 bits) together with its scope (the tenant, or the
// platform), its list and its filters, none of which it carries itself: a cursor replayed
// against another tenant, list or filter fails verification exactly like a modified one.

#include <optional>
#include <string>
#include <string_view>

namespace mtapi::util {

struct CursorPosition {
    std::string created_at;  // RFC 3339 with microseconds, as the database rendered it
    std::string id;          // canonical UUID
};

class CursorCodec {
  public:
    explicit CursorCodec(std::string key);

    std::string encode(std::string_view scope, std::string_view list, std::string_view filter,
                       const CursorPosition& pos) const;
    // nullopt for anything that is not a cursor this codec issued for exactly this binding.
    std::optional<CursorPosition> decode(std::string_view token, std::string_view scope, std::string_view list,
                                         std::string_view filter) const;

  private:
    std::string mac(std::string_view scope, std::string_view list, std::string_view filter,
                    std::string_view payload) const;
    std::string key_;
};

}  // namespace mtapi::util
