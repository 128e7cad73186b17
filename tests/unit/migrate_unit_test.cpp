// The embedded migration streams and the pure parts of the runner (no database).

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "migrate/migrations.hpp"
#include "migrate/progress.hpp"
#include "migrate/runner.hpp"

using namespace mtapi::migrate;

namespace {

constexpr std::string_view kSum = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

std::string validation_error(std::vector<Migration> list) {
    try {
        validate_stream("tenant", list);
    } catch (const MigrationError& e) {
        return e.what();
    }
    return {};
}

}  // namespace

TEST(MigrationStreams, embedded_streams_are_numbered_one_to_n) {
    for (Stream s : {platform_migrations(), tenant_migrations()}) {
        ASSERT_FALSE(s.empty());
        for (std::size_t i = 0; i < s.size(); ++i) {
            EXPECT_EQ(s[i].version, static_cast<int>(i + 1));
            EXPECT_TRUE(s[i].name.ends_with(".sql")) << s[i].name;
            EXPECT_FALSE(s[i].sql.empty()) << s[i].name;
        }
    }
    EXPECT_EQ(tenant_head(), static_cast<int>(tenant_migrations().size()));
    EXPECT_EQ(platform_migrations()[0].name, "0001_platform.sql");
    EXPECT_EQ(tenant_migrations()[0].name, "0001_fleet.sql");
}

TEST(MigrationStreams, embedded_checksums_are_sha256_of_the_embedded_text) {
    for (Stream s : {platform_migrations(), tenant_migrations()})
        for (const Migration& m : s)
            EXPECT_EQ(m.checksum, sha256_hex(m.sql)) << m.name;
}

TEST(MigrationStreams, checksums_are_stable_and_change_with_any_byte) {
    EXPECT_EQ(sha256_hex("abc"), kSum);
    EXPECT_EQ(sha256_hex("abc"), sha256_hex("abc"));
    EXPECT_NE(sha256_hex("abc"), sha256_hex("abc "));
    EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(MigrationStreams, embedding_keeps_every_byte) {
    // The files are embedded byte for byte (escapes, quotes and non-ASCII included).
    std::string_view fleet = tenant_migrations()[0].sql;
    EXPECT_TRUE(fleet.starts_with("-- Fleet tables"));
    EXPECT_NE(fleet.find("§3"), std::string_view::npos);
    EXPECT_TRUE(fleet.ends_with(";\n"));
    EXPECT_NE(platform_migrations()[0].sql.find("'^[a-z][a-z0-9-]{2,39}$'"), std::string_view::npos);
}

TEST(MigrationStreams, tenant_files_name_no_schema) {
    for (const Migration& m : tenant_migrations()) {
        for (std::string_view schema : {"platform.", "public.", "tenant_", "pg_temp", "SET ROLE", "set_config"})
            EXPECT_EQ(m.sql.find(schema), std::string_view::npos) << m.name << " mentions " << schema;
    }
}

TEST(MigrationStreams, validation_accepts_dense_sorted_versions) {
    EXPECT_EQ(validation_error({}), "");
    EXPECT_EQ(validation_error({{1, "0001_a.sql", "x", kSum}, {2, "0002_b.sql", "y", kSum}}), "");
}

TEST(MigrationStreams, validation_rejects_gaps_duplicates_and_disorder) {
    EXPECT_NE(validation_error({{1, "0001_a.sql", "x", kSum}, {3, "0003_c.sql", "y", kSum}}).find("expected 2"),
              std::string::npos);
    EXPECT_NE(validation_error({{1, "0001_a.sql", "x", kSum}, {1, "0001_b.sql", "y", kSum}}).find("0001_b.sql"),
              std::string::npos);
    EXPECT_NE(validation_error({{2, "0002_b.sql", "x", kSum}, {1, "0001_a.sql", "y", kSum}}), "");
    EXPECT_NE(validation_error({{0, "0000_a.sql", "x", kSum}}), "");
}

TEST(MigrationStreams, validation_rejects_names_that_disagree_with_versions) {
    EXPECT_NE(validation_error({{1, "0002_a.sql", "x", kSum}}).find("NNNN_name.sql"), std::string::npos);
    EXPECT_NE(validation_error({{1, "1_a.sql", "x", kSum}}), "");
    EXPECT_NE(validation_error({{1, "a.sql", "x", kSum}}), "");
}

TEST(MigrationStreams, validation_rejects_missing_checksums) {
    EXPECT_NE(validation_error({{1, "0001_a.sql", "x", ""}}).find("checksum"), std::string::npos);
    EXPECT_NE(validation_error({{1, "0001_a.sql", "x", "ABC"}}), "");
}

TEST(MigrationLocks, tenant_keys_are_deterministic_and_distinct) {
    const std::string a = "0190a6f2-7c1e-7a4b-8c3d-1234567890ab";
    const std::string b = "0190a6f2-7c1e-7a4b-8c3d-1234567890ac";
    EXPECT_EQ(tenant_lock_key(a), tenant_lock_key(a));
    EXPECT_NE(tenant_lock_key(a), tenant_lock_key(b));
    EXPECT_NE(tenant_lock_key(a), kPlatformLockKey);
    EXPECT_THROW(tenant_lock_key("not-a-uuid"), MigrationError);
}

TEST(MigrationProgress, bar_shows_done_total_and_failures) {
    EXPECT_EQ(progress_bar(0, 10, 0, 10), "[..........] 0/10 tenants");
    EXPECT_EQ(progress_bar(5, 10, 0, 10), "[#####.....] 5/10 tenants");
    EXPECT_EQ(progress_bar(120, 1000, 3, 10), "[#.........] 120/1000 tenants (3 failed)");
    EXPECT_EQ(progress_bar(10, 10, 0, 10), "[##########] 10/10 tenants");
    EXPECT_EQ(progress_bar(0, 0, 0, 4), "[####] 0/0 tenants");
}

TEST(MigrationProgress, summary_names_versions_and_counters) {
    Report r;
    r.platform_version = 1;
    r.tenant_head = 2;
    r.tenants_total = 10;
    r.tenants_migrated = 7;
    r.tenants_at_head = 2;
    r.tenants_failed = 1;
    r.elapsed = std::chrono::milliseconds(1234);
    EXPECT_EQ(summary_line(r),
              "mtapi: migrate: platform at version 1, tenant head 2; tenants: 10 total, 7 migrated, 2 already at "
              "head, 1 failed (1.2 s)");
    TenantRef t{"0190a6f2-7c1e-7a4b-8c3d-1234567890ab", "acme", "tenant_x", "tenant_x", 1};
    EXPECT_EQ(failure_line(t, "boom"),
              "mtapi: migrate: tenant acme (0190a6f2-7c1e-7a4b-8c3d-1234567890ab) failed: boom");
}
