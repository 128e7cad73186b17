#pragma once
// The token bucket script (src/ratelimit/token_bucket.lua), embedded at build time by
// cmake/embed_lua.cmake together with its SHA-1, the name Redis knows it by in EVALSHA.

#include <string_view>

namespace mtapi::ratelimit {

std::string_view token_bucket_script();
std::string_view token_bucket_sha1();  // 40 lowercase hex digits

}  // namespace mtapi::ratelimit
