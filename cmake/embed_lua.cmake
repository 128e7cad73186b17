# Embeds the rate limiter's Lua script (src/ratelimit/token_bucket.lua) into the binary.
#
# Included from the root CMakeLists.txt, this file defines mtapi_embed_lua(<target>), which adds a
# generated source file to <target>. At build time the same file runs in script mode (cmake -P)
# and writes that source: the script's bytes as a string literal in which every byte is a \xHH
# escape (so no content can end the literal early), and the SHA-1 of those bytes, which is the
# name Redis gives the script in EVALSHA. Editing the .lua file regenerates the source.

if(NOT CMAKE_SCRIPT_MODE_FILE)
  set(MTAPI_EMBED_LUA_SCRIPT "${CMAKE_CURRENT_LIST_FILE}")

  function(mtapi_embed_lua target)
    set(input "${PROJECT_SOURCE_DIR}/src/ratelimit/token_bucket.lua")
    set(output "${CMAKE_CURRENT_BINARY_DIR}/generated/ratelimit/token_bucket_script.cpp")
    add_custom_command(
      OUTPUT "${output}"
      COMMAND "${CMAKE_COMMAND}" "-DMTAPI_LUA_INPUT=${input}" "-DMTAPI_LUA_OUTPUT=${output}"
              -P "${MTAPI_EMBED_LUA_SCRIPT}"
      DEPENDS "${input}" "${MTAPI_EMBED_LUA_SCRIPT}"
      COMMENT "Embedding the rate limiter's Lua script"
      VERBATIM)
    target_sources(${target} PRIVATE "${output}")
  endfunction()
  return()
endif()

# ---- script mode: generate the source file ----

file(READ "${MTAPI_LUA_INPUT}" hex HEX)
file(SIZE "${MTAPI_LUA_INPUT}" size)
file(SHA1 "${MTAPI_LUA_INPUT}" sha1)
string(REPEAT "[0-9a-f][0-9a-f]" 32 line_re)
string(REGEX REPLACE "(${line_re})" "\\1\n" lined "${hex}")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "\\\\x\\1" escaped "${lined}")
string(REGEX REPLACE "([^\n]+)\n?" "    \"\\1\"\n" literal "${escaped}")
if(literal STREQUAL "")
  set(literal "    \"\"\n")
endif()

set(source "// Generated at build time by cmake/embed_lua.cmake from src/ratelimit/token_bucket.lua.
// Do not edit: edit the .lua file instead.

#include <string_view>

#include \"ratelimit/script.hpp\"

namespace mtapi::ratelimit {
namespace {

constexpr std::string_view kScript{
${literal}    , ${size}};

}  // namespace

std::string_view token_bucket_script() { return kScript; }
std::string_view token_bucket_sha1() { return \"${sha1}\"; }

}  // namespace mtapi::ratelimit
")

# Rewrite only on change, so an unrelated re-run does not trigger a recompile.
set(previous "")
if(EXISTS "${MTAPI_LUA_OUTPUT}")
  file(READ "${MTAPI_LUA_OUTPUT}" previous)
endif()
if(NOT previous STREQUAL source)
  file(WRITE "${MTAPI_LUA_OUTPUT}" "${source}")
endif()
