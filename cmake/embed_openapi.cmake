# Embeds the OpenAPI document (openapi/openapi.json) into the binary.
#
# openapi/openapi.json is the single source of truth of the API's description: it is reviewed
# like code, linted by `redocly lint` (the ctest test OpenApi.redocly_lint) and served as it is at
# GET /api/v1/openapi.json (src/api/v1/openapi.cpp).
#
# Included from the root CMakeLists.txt, this file defines mtapi_embed_openapi(<target>), which
# adds a generated source file to <target>. At build time the same file runs in script mode
# (cmake -P) and writes that source: the document's bytes as a string literal in which every byte
# is a \xHH escape (as cmake/embed.cmake does for the SQL migrations), and its entity tag, the
# first 128 bits of the SHA-256 of those bytes. Editing the document regenerates the source on
# the next build. A document CMake cannot read as JSON, or whose `openapi` is not 3.1.x, fails the
# build (CMake's JSON reader is lenient: tests/unit/openapi_test.cpp parses it strictly).

if(NOT CMAKE_SCRIPT_MODE_FILE)
  set(MTAPI_EMBED_OPENAPI_SCRIPT "${CMAKE_CURRENT_LIST_FILE}")

  function(mtapi_embed_openapi target)
    set(input "${PROJECT_SOURCE_DIR}/openapi/openapi.json")
    set(output "${CMAKE_CURRENT_BINARY_DIR}/generated/api/openapi_document.cpp")
    add_custom_command(
      OUTPUT "${output}"
      COMMAND "${CMAKE_COMMAND}" "-DMTAPI_OPENAPI_INPUT=${input}" "-DMTAPI_OPENAPI_OUTPUT=${output}" -P
              "${MTAPI_EMBED_OPENAPI_SCRIPT}"
      DEPENDS "${input}" "${MTAPI_EMBED_OPENAPI_SCRIPT}"
      COMMENT "Embedding openapi/openapi.json"
      VERBATIM)
    target_sources(${target} PRIVATE "${output}")
  endfunction()
  return()
endif()

# ---- script mode: generate the source file ----

file(READ "${MTAPI_OPENAPI_INPUT}" text)
string(JSON version ERROR_VARIABLE json_error GET "${text}" openapi)
if(json_error)
  message(FATAL_ERROR "openapi/openapi.json: not a JSON document with an `openapi` member: ${json_error}")
endif()
if(NOT version MATCHES "^3\\.1\\.[0-9]+$")
  message(FATAL_ERROR "openapi/openapi.json: `openapi` is \"${version}\"; mtapi publishes OpenAPI 3.1")
endif()

file(SIZE "${MTAPI_OPENAPI_INPUT}" size)
file(SHA256 "${MTAPI_OPENAPI_INPUT}" checksum)
string(SUBSTRING "${checksum}" 0 32 etag)

# The bytes as C++ string literal lines, 32 bytes a line (adjacent literals concatenate).
file(READ "${MTAPI_OPENAPI_INPUT}" hex HEX)
string(REPEAT "[0-9a-f][0-9a-f]" 32 line_re)
string(REGEX REPLACE "(${line_re})" "\\1\n" lined "${hex}")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "\\\\x\\1" escaped "${lined}")
string(REGEX REPLACE "([^\n]+)\n?" "    \"\\1\"\n" literal "${escaped}")

set(source "// Generated at build time by cmake/embed_openapi.cmake from openapi/openapi.json.
// Do not edit: edit openapi/openapi.json instead.

#include <string_view>

#include \"api/v1/openapi.hpp\"

namespace mtapi::api::v1 {
namespace {

constexpr std::string_view kDocument{
${literal}    , ${size}};

}  // namespace

std::string_view openapi_document() { return kDocument; }
std::string_view openapi_etag() { return \"\\\"${etag}\\\"\"; }

}  // namespace mtapi::api::v1
")

# Rewrite only on change, so an unrelated re-run does not trigger a recompile.
set(previous "")
if(EXISTS "${MTAPI_OPENAPI_OUTPUT}")
  file(READ "${MTAPI_OPENAPI_OUTPUT}" previous)
endif()
if(NOT previous STREQUAL source)
  file(WRITE "${MTAPI_OPENAPI_OUTPUT}" "${source}")
endif()
