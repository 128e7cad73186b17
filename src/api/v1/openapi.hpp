#pragma once
// The OpenAPI 3.1 document of the whole API: openapi/openapi.json, embedded at build time by
// cmake/embed_openapi.cmake and served at GET /api/v1/openapi.json.

#include <string_view>

namespace mtapi::api::v1 {

// The document's bytes, exactly as in openapi/openapi.json.
std::string_view openapi_document();
// Its strong entity tag, quotes included ("<32 hex digits of its SHA-256>"), fixed at build time.
std::string_view openapi_etag();

// True when an If-None-Match field value names `etag` (weak comparison, RFC 9110 §13.1.2) or is
// "*": the client's copy is current. `etag` is a strong tag, quotes included.
bool if_none_match_hits(std::string_view field, std::string_view etag);

}  // namespace mtapi::api::v1
