#include <gtest/gtest.h>

#include <set>

#include "obs/log.hpp"
#include "util/uuid.hpp"

using namespace mtapi;

TEST(Uuid, v7_has_version_and_variant_bits) {
    auto id = util::uuid_v7();
    EXPECT_EQ(id[6] >> 4, 7);
    EXPECT_EQ(id[8] >> 6, 2);
}

TEST(Uuid, v7_ids_from_one_thread_are_strictly_increasing) {
    auto prev = util::uuid_v7();
    for (int i = 0; i < 20000; ++i) {
        auto next = util::uuid_v7();
        ASSERT_LT(prev, next);
        prev = next;
    }
}

TEST(Uuid, round_trips_through_text) {
    auto id = util::uuid_v7();
    auto text = util::to_string(id);
    EXPECT_EQ(text.size(), 36u);
    auto parsed = util::parse_uuid(text);
    ASSERT_TRUE(parsed.has_value());
    EXPECT_EQ(*parsed, id);
    EXPECT_EQ(util::to_hex(id).size(), 32u);
}

TEST(Uuid, formats_the_canonical_lowercase_form) {
    util::Uuid id{};
    for (std::size_t i = 0; i < id.size(); ++i)
        id[i] = static_cast<std::uint8_t>(0x10 * i + (15 - i));
    const std::string expected = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
    EXPECT_EQ(util::to_string(id), expected);
    char text[util::kUuidTextLength + 1];
    text[util::kUuidTextLength] = '#';
    util::format_uuid(id, text);
    EXPECT_EQ(std::string_view(text, util::kUuidTextLength), expected);
    EXPECT_EQ(text[util::kUuidTextLength], '#');  // nothing written past the end
    std::string appended = "id=";
    util::append_uuid(appended, id);
    EXPECT_EQ(appended, "id=" + expected);
}

TEST(Uuid, rejects_non_canonical_text) {
    EXPECT_FALSE(util::parse_uuid(""));
    EXPECT_FALSE(util::parse_uuid("not-a-uuid"));
    EXPECT_FALSE(util::parse_uuid("0190a6f27c1e7a4b8c3d1234567890ab"));
    EXPECT_FALSE(util::parse_uuid("0190a6f2-7c1e-7a4b-8c3d-1234567890ag"));
    EXPECT_FALSE(util::parse_uuid("{0190a6f2-7c1e-7a4b-8c3d-1234567890a}"));
    EXPECT_TRUE(util::parse_uuid("0190A6F2-7C1E-7A4B-8C3D-1234567890AB"));
}

TEST(JsonString, escapes_controls_and_replaces_invalid_utf8) {
    std::string out;
    obs::append_json_string(out, std::string("a\"\\\n\x01\xff\xe2\x82\xac", 9));
    EXPECT_EQ(out, "\"a\\\"\\\\\\n\\u0001\\ufffd\xe2\x82\xac\"");
}

#include "tenancy/tenant_tx.hpp"

TEST(TenantTx, refuses_statements_that_could_rebind_the_session) {
    using mtapi::tenancy::rebinds_session;
    for (const char* sql :
         {"SET ROLE tenant_x", "set   role tenant_x", "SET LOCAL ROLE tenant_x", "RESET ROLE",
          "SET SESSION ROLE tenant_x", "SELECT set_config('role', 'tenant_x', true)",
          "SELECT SET_CONFIG('search_path', 'tenant_x', true)", "SET search_path TO tenant_x",
          "SET SESSION AUTHORIZATION postgres", "RESET ALL", "DISCARD ALL", "CREATE TABLE pg_temp.vehicles (id uuid)",
          "COMMIT", "BEGIN", "DO $$BEGIN PERFORM 1; END$$", "/* x */ SET ROLE tenant_x", "-- x\nSET ROLE tenant_x",
          "SELECT 1 FROM users WHERE set_config('role', 'tenant_x', true) IS NOT NULL"})
        EXPECT_TRUE(rebinds_session(sql)) << sql;
    for (const char* sql :
         {"SELECT id, role FROM users WHERE id = $1", "UPDATE users SET role = $2 WHERE id = $1",
          "WITH x AS (SELECT 1) SELECT * FROM x", "DELETE FROM trips WHERE id = $1",
          "SELECT current_setting('search_path')", "SELECT * FROM vehicles WHERE status = $1 ORDER BY created_at DESC"})
        EXPECT_FALSE(rebinds_session(sql)) << sql;
}
