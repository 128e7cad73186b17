# Embeds the SQL migrations (sql/platform/NNNN_name.sql, sql/tenant/NNNN_name.sql) into the binary.
#
# Included from the root CMakeLists.txt, this file defines mtapi_embed_migrations(<target>), which
# adds a generated source file to <target>. At build time the same file runs in script mode
# (cmake -P) and writes that source: for each migration its version, file name, SHA-256 of the
# file's bytes (computed here with file(SHA256), so the binary carries the checksum it was built
# with) and its text as a string literal in which every byte is a \xHH escape. Because every
# byte is escaped, no file content can end the literal early, and each escape ends at the next
# backslash, so a following hex digit is never read as part of it.
#
# The file lists come from file(GLOB CONFIGURE_DEPENDS): adding or removing a migration
# re-runs CMake on the next build, and editing one regenerates the source.

if(NOT CMAKE_SCRIPT_MODE_FILE)
  set(MTAPI_EMBED_SCRIPT "${CMAKE_CURRENT_LIST_FILE}")

  function(mtapi_embed_migrations target)
    set(sql_dir "${PROJECT_SOURCE_DIR}/sql")
    file(GLOB platform_files CONFIGURE_DEPENDS "${sql_dir}/platform/*.sql")
    file(GLOB tenant_files CONFIGURE_DEPENDS "${sql_dir}/tenant/*.sql")
    list(SORT platform_files)
    list(SORT tenant_files)
    # The lists travel on the command line ('|'-separated), so a file added or removed changes the
    # command and the generator runs again.
    string(REPLACE ";" "|" platform_arg "${platform_files}")
    string(REPLACE ";" "|" tenant_arg "${tenant_files}")
    set(output "${CMAKE_CURRENT_BINARY_DIR}/generated/migrate/embedded_migrations.cpp")
    add_custom_command(
      OUTPUT "${output}"
      COMMAND "${CMAKE_COMMAND}" "-DMTAPI_EMBED_OUTPUT=${output}" "-DMTAPI_EMBED_PLATFORM=${platform_arg}"
              "-DMTAPI_EMBED_TENANT=${tenant_arg}" -P "${MTAPI_EMBED_SCRIPT}"
      DEPENDS ${platform_files} ${tenant_files} "${MTAPI_EMBED_SCRIPT}"
      COMMENT "Embedding SQL migrations"
      VERBATIM)
    target_sources(${target} PRIVATE "${output}")
  endfunction()
  return()
endif()

# ---- script mode: generate the source file ----

# Sets `out_var` to the C++ string literal lines holding the bytes of `file`, 32 bytes a line
# (adjacent literals concatenate).
function(mtapi_embed_literal file out_var)
  file(READ "${file}" hex HEX)
  string(REPEAT "[0-9a-f][0-9a-f]" 32 line_re)
  string(REGEX REPLACE "(${line_re})" "\\1\n" lined "${hex}")
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "\\\\x\\1" escaped "${lined}")
  string(REGEX REPLACE "([^\n]+)\n?" "        \"\\1\"\n" text "${escaped}")
  if(text STREQUAL "")
    set(text "        \"\"\n")
  endif()
  set(${out_var} "${text}" PARENT_SCOPE)
endfunction()

# Writes the data of one stream (`stream` is platform or tenant) into `out_var`: one
# std::string_view per file and the Migration table `k<Stream>`.
function(mtapi_embed_stream stream files out_var)
  string(REPLACE "|" ";" files "${files}")
  set(code "")
  set(rows "")
  foreach(file IN LISTS files)
    if(file STREQUAL "")
      continue()
    endif()
    get_filename_component(name "${file}" NAME)
    if(NOT name MATCHES "^([0-9][0-9][0-9][0-9])_[a-z0-9_]+\\.sql$")
      message(FATAL_ERROR "sql/${stream}/${name}: migration files are named NNNN_name.sql (lowercase, digits, _)")
    endif()
    string(REGEX REPLACE "^0*([0-9]+)_.*$" "\\1" version "${name}")
    if(version STREQUAL "")
      set(version 0)
    endif()
    file(SHA256 "${file}" checksum)
    file(SIZE "${file}" size)
    string(MAKE_C_IDENTIFIER "k_${stream}_${name}" ident)
    mtapi_embed_literal("${file}" literal)
    string(APPEND code "// sql/${stream}/${name}\nconstexpr std::string_view ${ident}{\n${literal}    , ${size}};\n\n")
    string(APPEND rows "    {${version}, \"${name}\", ${ident}, \"${checksum}\"},\n")
  endforeach()
  if(rows STREQUAL "")
    string(APPEND code "std::span<const Migration> ${stream}_table() { return {}; }\n\n")
  else()
    string(APPEND code "constexpr Migration k_${stream}_table[] = {\n${rows}};\n")
    string(APPEND code "std::span<const Migration> ${stream}_table() { return k_${stream}_table; }\n\n")
  endif()
  set(${out_var} "${code}" PARENT_SCOPE)
endfunction()

mtapi_embed_stream(platform "${MTAPI_EMBED_PLATFORM}" platform_code)
mtapi_embed_stream(tenant "${MTAPI_EMBED_TENANT}" tenant_code)

set(source "// Generated at build time by cmake/embed.cmake from sql/platform/*.sql and sql/tenant/*.sql.
// Do not edit: edit the SQL files (or rather add new ones) instead.

#include <span>
#include <string_view>

#include \"migrate/migrations.hpp\"

namespace mtapi::migrate::detail {
namespace {

${platform_code}${tenant_code}}  // namespace

std::span<const Migration> embedded_platform_migrations() { return platform_table(); }
std::span<const Migration> embedded_tenant_migrations() { return tenant_table(); }

}  // namespace mtapi::migrate::detail
")

# Rewrite only on change, so an unrelated re-run does not trigger a recompile.
set(previous "")
if(EXISTS "${MTAPI_EMBED_OUTPUT}")
  file(READ "${MTAPI_EMBED_OUTPUT}" previous)
endif()
if(NOT previous STREQUAL source)
  file(WRITE "${MTAPI_EMBED_OUTPUT}" "${source}")
endif()
