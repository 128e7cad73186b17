// Access tokens against the real server (SPEC §2): RFC 8725's attacks on JWS each answer 401 with
// `WWW-Authenticate: Bearer …error="invalid_token"`, keys rotate without logging anybody out, the
// roles keep to their routes, and GET /api/v1/me shows the caller.
//
// Every attack is a token crafted here by hand (OpenSSL, base64url) that differs from a token the
// server accepts in the one respect under test; the accepted originals are checked first.

#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <string>
#include <tuple>
#include <vector>

#include "identity_support.hpp"
#include "util/uuid.hpp"

namespace mtapi::idtest {
namespace {

namespace json = boost::json;

std::int64_t now_seconds() {
    return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

// A token for `claims` that the shared server accepts: HS256 with its secret and kid.
std::string good_hs(IdentityEnv& env, const json::object& claims) {
    return hs256_token(env.hs_secret(), header_json("HS256", IdentityEnv::kHsKid), json::serialize(claims));
}

Response me(std::uint16_t port, const std::string& token) {
    return get(port, "/api/v1/me", token);
}

// True when any object inside `v` has a member called `key`.
bool has_key_anywhere(const json::value& v, std::string_view key) {
    if (v.is_object()) {
        for (const auto& [k, child] : v.as_object())
            if (k == key || has_key_anywhere(child, key)) return true;
    } else if (v.is_array()) {
        for (const auto& child : v.as_array())
            if (has_key_anywhere(child, key)) return true;
    }
    return false;
}

class Tokens : public IdentityTest {};

// The originals the attacks below are made from: tokens crafted here are accepted when they are
// right, so a 401 further down is due to the one thing that was changed.
TEST_F(Tokens, hand_crafted_tokens_are_accepted_when_correct) {
    auto& e = env();
    TenantInfo a = e.create_tenant("idt-ok");
    json::object claims = claims_for(a.admin_id, a.id, "admin");

    Response hs = me(e.port(), good_hs(e, claims));
    EXPECT_EQ(hs.status, 200) << describe(hs);

    Response ed =
        me(e.port(), eddsa_token(e.ed_key(), header_json("EdDSA", IdentityEnv::kEdKid), json::serialize(claims)));
    EXPECT_EQ(ed.status, 200) << "EdDSA with the verify-only Ed25519 key: " << describe(ed);

    // Expired 10 s ago: within the 30 s of allowed clock skew.
    json::object recent = claims;
    recent["iat"] = now_seconds() - 600;
    recent["exp"] = now_seconds() - 10;
    Response skew = me(e.port(), good_hs(e, recent));
    EXPECT_EQ(skew.status, 200) << "a token expired 10 s ago is within the skew: " << describe(skew);

    // The scheme name is case-insensitive (RFC 7235).
    Response lower =
        test::http_request(e.port(), "GET", "/api/v1/me", {{"Authorization", "bearer " + good_hs(e, claims)}});
    EXPECT_EQ(lower.status, 200) << describe(lower);
}

TEST_F(Tokens, rfc8725_attacks_answer_401_invalid_token) {
    auto& e = env();
    TenantInfo a = e.create_tenant("idt-attack");
    const json::object claims = claims_for(a.admin_id, a.id, "admin");
    const std::string claims_text = json::serialize(claims);
    const std::string good = good_hs(e, claims);
    ASSERT_EQ(me(e.port(), good).status, 200) << "the unmodified token must be accepted";

    struct Case {
        std::string name;
        std::string token;
    };
    std::vector<Case> cases;

    // alg "none" in several spellings, with an empty signature and with a valid HMAC.
    for (const char* alg : {"none", "None", "NONE", "nOnE"}) {
        const std::string with_kid = header_json(alg, IdentityEnv::kHsKid);
        cases.push_back({std::string("alg ") + alg + ", empty signature", signing_input(with_kid, claims_text) + "."});
        cases.push_back({std::string("alg ") + alg + ", no kid, empty signature",
                         signing_input(header_json(alg, std::nullopt), claims_text) + "."});
        cases.push_back(
            {std::string("alg ") + alg + ", HMAC signature", hs256_token(e.hs_secret(), with_kid, claims_text)});
    }
    cases.push_back(
        {"alg none without a signature segment", signing_input(header_json("none", IdentityEnv::kHsKid), claims_text)});
    // Other spellings of HS256 itself must not match the pinned algorithm either.
    cases.push_back(
        {"alg hs256 (lower case)", hs256_token(e.hs_secret(), header_json("hs256", IdentityEnv::kHsKid), claims_text)});

    cases.push_back(
        {"HS256 signed with a wrong secret", hs256_token("a-wrong-secret-of-more-than-32-bytes-" + random_hex(8),
                                                         header_json("HS256", IdentityEnv::kHsKid), claims_text)});
    // Algorithm confusion: an Ed25519 signature under the HS256 key's kid, and an HMAC under the
    // Ed25519 key's kid (keyed with the public key's PEM, the classic attack, and with the secret).
    cases.push_back({"EdDSA token with the HS256 kid",
                     eddsa_token(e.ed_key(), header_json("EdDSA", IdentityEnv::kHsKid), claims_text)});
    cases.push_back({"HS256 token with the EdDSA kid, HMAC keyed by the public PEM",
                     hs256_token(e.ed_key().public_pem(), header_json("HS256", IdentityEnv::kEdKid), claims_text)});
    cases.push_back({"HS256 token with the EdDSA kid, HMAC keyed by the HS secret",
                     hs256_token(e.hs_secret(), header_json("HS256", IdentityEnv::kEdKid), claims_text)});
    cases.push_back({"EdDSA-signed token claiming alg HS256 under the EdDSA kid",
                     eddsa_token(e.ed_key(), header_json("HS256", IdentityEnv::kEdKid), claims_text)});

    cases.push_back({"unknown kid", hs256_token(e.hs_secret(), header_json("HS256", "no-such-kid"), claims_text)});
    cases.push_back({"missing kid", hs256_token(e.hs_secret(), header_json("HS256", std::nullopt), claims_text)});

    auto with = [&](const char* key, json::value value) {
        json::object c = claims;
        c[key] = std::move(value);
        return good_hs(e, c);
    };
    {
        json::object c = claims;
        c["iat"] = now_seconds() - 700;
        c["exp"] = now_seconds() - 45;
        cases.push_back({"expired 45 s ago (beyond the 30 s skew)", good_hs(e, c)});
    }
    {
        json::object c = claims;
        c.erase("exp");
        cases.push_back({"missing exp", good_hs(e, c)});
    }
    cases.push_back({"exp as a string", with("exp", json::value(std::to_string(now_seconds() + 600)))});
    cases.push_back({"exp as a float", with("exp", json::value(static_cast<double>(now_seconds() + 600) + 0.5))});
    cases.push_back({"wrong iss", with("iss", json::value("not-mtapi"))});
    cases.push_back({"wrong aud", with("aud", json::value("not-mtapi"))});
    cases.push_back({"aud as an array", with("aud", json::value(json::array{"mtapi"}))});
    cases.push_back({"iat 10 min in the future", with("iat", json::value(now_seconds() + 600))});
    cases.push_back({"nbf 10 min in the future", with("nbf", json::value(now_seconds() + 600))});
    cases.push_back({"sub not a UUID", with("sub", json::value("admin"))});
    cases.push_back({"unknown role", with("role", json::value("owner"))});
    cases.push_back({"tenant role without tenant_id", [&] {
                         json::object c = claims;
                         c.erase("tenant_id");
                         return good_hs(e, c);
                     }()});

    // Not canonical base64url, although the bytes are the same for a lenient decoder.
    cases.push_back({"padding after the signature", good + "="});
    {
        // 32 signature bytes take 43 characters, whose last one carries 2 unused bits.
        std::string t = good;
        static constexpr std::string_view kAlphabet =
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        auto pos = kAlphabet.find(t.back());
        t.back() = kAlphabet[pos ^ 1];
        cases.push_back({"unused bits set in the signature's last character", t});
    }
    {
        std::string t = good;
        t[t.find('.') + 2] = '+';
        cases.push_back({"'+' (standard base64) in the claims", t});
    }
    {
        std::string t = good;
        t[t.rfind('.') + 3] = '*';
        cases.push_back({"a character outside base64url in the signature", t});
    }
    cases.push_back({"an empty segment", ".." + good.substr(good.rfind('.') + 1)});
    cases.push_back({"extra segment (empty)", good + "."});
    cases.push_back({"extra segment", good + "." + b64url("extra")});
    cases.push_back({"five segments (JWE shape)", good + "." + b64url("x") + "." + b64url("y")});
    cases.push_back({"two segments", good.substr(0, good.rfind('.'))});
    {
        // Correctly signed, but 10 KiB long: refused by the length cap before decoding.
        json::object c = claims;
        c["pad"] = std::string(10 * 1024, 'a');
        std::string big = good_hs(e, c);
        ASSERT_GE(big.size(), 10u * 1024);
        cases.push_back({"10 KiB token", big});
    }

    for (const auto& c : cases) {
        SCOPED_TRACE(c.name);
        Response r = me(e.port(), c.token);
        EXPECT_TRUE(is_invalid_token(r)) << c.name;
    }
}

TEST_F(Tokens, missing_or_non_bearer_authorization_is_401_with_a_bearer_challenge) {
    auto& e = env();
    for (const auto& headers : std::vector<Headers>{{},
                                                    {{"Authorization", "Bearer"}},
                                                    {{"Authorization", "Bearer "}},
                                                    {{"Authorization", "Basic YWRtaW46YWRtaW4="}}}) {
        Response r = test::http_request(e.port(), "GET", "/api/v1/me", headers);
        EXPECT_TRUE(is_problem(r, 401)) << (headers.empty() ? "no Authorization" : headers[0].second);
        EXPECT_EQ(r.header("WWW-Authenticate").rfind("Bearer", 0), 0u)
            << "WWW-Authenticate: '" << r.header("WWW-Authenticate") << "'";
    }
}

// RFC 6750 §2.3 query tokens would end up in logs and referrers: mtapi never reads them.
TEST_F(Tokens, a_token_in_the_query_string_is_ignored) {
    auto& e = env();
    TenantInfo a = e.create_tenant("idt-query");
    const std::string token = good_hs(e, claims_for(a.admin_id, a.id, "admin"));
    ASSERT_EQ(me(e.port(), token).status, 200);

    Response r = get(e.port(), "/api/v1/me?access_token=" + token);
    EXPECT_TRUE(is_problem(r, 401)) << describe(r);
    EXPECT_EQ(r.header("WWW-Authenticate").rfind("Bearer", 0), 0u) << r.header("WWW-Authenticate");
}

// The tenant in a token must hold the token's subject: a correctly signed token naming tenant B
// with a user of tenant A gets nothing from either.
TEST_F(Tokens, a_signed_token_pairing_tenant_b_with_a_user_of_tenant_a_is_401) {
    auto& e = env();
    TenantInfo a = e.create_tenant("idt-xa");
    TenantInfo b = e.create_tenant("idt-xb");
    ASSERT_EQ(me(e.port(), good_hs(e, claims_for(a.admin_id, a.id, "admin"))).status, 200);
    ASSERT_EQ(me(e.port(), good_hs(e, claims_for(b.admin_id, b.id, "admin"))).status, 200);

    const std::string mixed = good_hs(e, claims_for(a.admin_id, b.id, "admin"));
    EXPECT_TRUE(is_invalid_token(me(e.port(), mixed)));
    Response list = get(e.port(), "/api/v1/vehicles", mixed);
    EXPECT_TRUE(is_invalid_token(list));
    Response write = send_json(e.port(), "POST", "/api/v1/vehicles", R"({"plate":"X-1"})", mixed);
    EXPECT_TRUE(is_invalid_token(write));
    EXPECT_EQ(e.sql_value("SELECT count(*) FROM " + b.schema + ".vehicles"), "0");

    // A random subject in a real tenant is just as unknown.
    const std::string stranger = good_hs(e, claims_for(util::to_string(util::uuid_v7()), a.id, "admin"));
    EXPECT_TRUE(is_invalid_token(me(e.port(), stranger)));
}

// Rotation: k1 signs; then k2 signs while k1 only verifies (k1's tokens keep working, new ones
// carry k2); then k1 is gone and its tokens are refused.
TEST_F(Tokens, keys_rotate_old_tokens_verify_while_their_key_is_verify_only) {
    auto& e = env();
    TenantInfo t = e.create_tenant("idt-rot");
    const std::string s1 = random_hex(32);
    const std::string s2 = random_hex(32);
    auto start = [&](Env keys) {
        Env env = {{"MTAPI_JWT_KEYS", ""}, {"MTAPI_CURSOR_SECRET", "rotation-test-cursor-secret-" + random_hex(8)}};
        env.insert(env.end(), keys.begin(), keys.end());
        auto server = std::make_unique<ServerProcess>(env);
        auto started = server->start(20s);
        EXPECT_TRUE(started) << server->output_tail();
        return server;
    };
    auto kid_of = [](const std::string& token) {
        auto h = test::parse_json_object(token_header(token));
        return h ? str(*h, "kid") : std::string();
    };

    std::string t1;
    {
        auto one = start({{"MTAPI_JWT_KID", "k1"}, {"MTAPI_JWT_SECRET", s1}});
        ASSERT_NE(one->port(), 0);
        t1 = token_of(tenant_login(one->port(), t.slug, t.admin_email, t.admin_password));
        EXPECT_EQ(kid_of(t1), "k1") << token_header(t1);
        EXPECT_EQ(me(one->port(), t1).status, 200);
    }
    std::string t2;
    {
        auto two = start({{"MTAPI_JWT_KID", "k2"},
                          {"MTAPI_JWT_SECRET", s2},
                          {"MTAPI_JWT_KEYS", "k1:HS256:verify_only:env:MTAPI_TEST_OLD_SECRET"},
                          {"MTAPI_TEST_OLD_SECRET", s1}});
        ASSERT_NE(two->port(), 0);
        Response old_token = me(two->port(), t1);
        EXPECT_EQ(old_token.status, 200) << "k1 is verify-only: its tokens still verify: " << describe(old_token);
        t2 = token_of(tenant_login(two->port(), t.slug, t.admin_email, t.admin_password));
        EXPECT_EQ(kid_of(t2), "k2") << token_header(t2);
        EXPECT_EQ(me(two->port(), t2).status, 200);
    }
    {
        auto three = start({{"MTAPI_JWT_KID", "k2"}, {"MTAPI_JWT_SECRET", s2}});
        ASSERT_NE(three->port(), 0);
        EXPECT_TRUE(is_invalid_token(me(three->port(), t1))) << "k1 was removed";
        EXPECT_EQ(me(three->port(), t2).status, 200);
    }
}

class Roles : public IdentityTest {};

TEST_F(Roles, a_viewer_reads_but_cannot_write) {
    auto& e = env();
    TenantInfo t = e.create_tenant("idt-view");
    const std::string admin = token_of(tenant_login(e.port(), t.slug, t.admin_email, t.admin_password));
    UserInfo viewer = e.add_user(t, admin, "viewer");

    Response created = send_json(e.port(), "POST", "/api/v1/vehicles", R"({"plate":"ADM-1"})", admin);
    ASSERT_EQ(created.status, 201) << describe(created);
    const std::string id = str(*json_of(created), "id");

    Response list = get(e.port(), "/api/v1/vehicles", viewer.token);
    EXPECT_EQ(list.status, 200) << describe(list);
    EXPECT_NE(list.body.find(id), std::string::npos) << list.body;
    EXPECT_EQ(get(e.port(), "/api/v1/vehicles/" + id, viewer.token).status, 200);

    EXPECT_TRUE(
        is_problem(send_json(e.port(), "POST", "/api/v1/vehicles", R"({"plate":"VIEW-1"})", viewer.token), 403));
    EXPECT_TRUE(
        is_problem(send_json(e.port(), "PATCH", "/api/v1/vehicles/" + id, R"({"odometer_km":5})", viewer.token), 403));
    EXPECT_TRUE(is_problem(del(e.port(), "/api/v1/vehicles/" + id, viewer.token), 403));
    EXPECT_EQ(e.sql_value("SELECT string_agg(plate || ':' || odometer_km, ',') FROM " + t.schema + ".vehicles"),
              "ADM-1:0");
}

TEST_F(Roles, a_dispatcher_writes_vehicles_but_cannot_manage_users) {
    auto& e = env();
    TenantInfo t = e.create_tenant("idt-disp");
    const std::string admin = token_of(tenant_login(e.port(), t.slug, t.admin_email, t.admin_password));

    // The admin manages users through the API (the route must exist: a 404 here is a failure).
    Response made = send_json(e.port(), "POST", "/api/v1/users",
                              R"({"email":"dispatch@)" + t.slug +
                                  R"(.test","name":"Dispatch","role":"dispatcher",)"
                                  R"("password":"dispatcher-password-1"})",
                              admin);
    ASSERT_EQ(made.status, 201) << "POST /api/v1/users as the tenant admin: " << describe(made);
    const std::string dispatcher_id = str(*json_of(made), "id");
    EXPECT_EQ(made.body.find("password"), std::string::npos) << "password is write-only: " << made.body;
    const std::string dispatcher =
        token_of(tenant_login(e.port(), t.slug, "dispatch@" + t.slug + ".test", "dispatcher-password-1"));

    Response vehicle = send_json(e.port(), "POST", "/api/v1/vehicles", R"({"plate":"DSP-1"})", dispatcher);
    EXPECT_EQ(vehicle.status, 201) << describe(vehicle);
    Response users = get(e.port(), "/api/v1/users", dispatcher);
    EXPECT_EQ(users.status, 200) << "dispatchers read users: " << describe(users);

    Response add = send_json(e.port(), "POST", "/api/v1/users",
                             R"({"email":"sneaky@)" + t.slug +
                                 R"(.test","name":"Sneaky","role":"admin",)"
                                 R"("password":"sneaky-password-12"})",
                             dispatcher);
    EXPECT_TRUE(is_problem(add, 403)) << "POST /api/v1/users as a dispatcher";
    EXPECT_TRUE(is_problem(
        send_json(e.port(), "PATCH", "/api/v1/users/" + dispatcher_id, R"({"role":"admin"})", dispatcher), 403));
    EXPECT_TRUE(is_problem(del(e.port(), "/api/v1/users/" + t.admin_id, dispatcher), 403));
    EXPECT_EQ(e.sql_value("SELECT string_agg(role, ',' ORDER BY role) FROM " + t.schema + ".users"),
              "admin,dispatcher");
}

TEST_F(Roles, tenant_tokens_are_403_on_admin_routes) {
    auto& e = env();
    TenantInfo t = e.create_tenant("idt-tadm");
    const std::string admin = token_of(tenant_login(e.port(), t.slug, t.admin_email, t.admin_password));
    const std::string body =
        R"({"slug":")" + IdentityEnv::unique_slug("idt-nope") + R"(","name":"Nope","admin_email":"a@nope.test"})";
    EXPECT_TRUE(is_problem(get(e.port(), "/api/v1/admin/tenants", admin), 403));
    EXPECT_TRUE(is_problem(get(e.port(), "/api/v1/admin/tenants/" + t.slug, admin), 403));
    EXPECT_TRUE(is_problem(send_json(e.port(), "POST", "/api/v1/admin/tenants", body, admin), 403));
    EXPECT_TRUE(is_problem(
        send_json(e.port(), "PATCH", "/api/v1/admin/tenants/" + t.id, R"({"plan":"enterprise"})", admin), 403));
    EXPECT_TRUE(is_problem(del(e.port(), "/api/v1/admin/tenants/" + t.id, admin), 403));
    EXPECT_TRUE(is_problem(get(e.port(), "/api/v1/admin/migrations", admin), 403));
    EXPECT_EQ(e.sql_value("SELECT plan FROM platform.tenants WHERE id = " + lit(t.id)), "standard");
}

TEST_F(Roles, platform_tokens_are_403_on_tenant_routes) {
    auto& e = env();
    ASSERT_EQ(get(e.port(), "/api/v1/admin/tenants?limit=1", e.admin_token()).status, 200);
    EXPECT_TRUE(is_problem(get(e.port(), "/api/v1/me", e.admin_token()), 403));
    EXPECT_TRUE(is_problem(get(e.port(), "/api/v1/vehicles", e.admin_token()), 403));
    EXPECT_TRUE(
        is_problem(send_json(e.port(), "POST", "/api/v1/vehicles", R"({"plate":"PLT-1"})", e.admin_token()), 403));
}

class Me : public IdentityTest {};

TEST_F(Me, shows_the_callers_user_and_tenant_without_secrets) {
    auto& e = env();
    TenantInfo t = e.create_tenant("idt-me");
    const std::string admin = token_of(tenant_login(e.port(), t.slug, t.admin_email, t.admin_password));
    UserInfo viewer = e.add_user(t, admin, "viewer");

    for (const auto& [token, id, email, role] :
         std::vector<std::tuple<std::string, std::string, std::string, std::string>>{
             {admin, t.admin_id, t.admin_email, "admin"}, {viewer.token, viewer.id, viewer.email, "viewer"}}) {
        SCOPED_TRACE(role);
        Response r = me(e.port(), token);
        ASSERT_EQ(r.status, 200) << describe(r);
        EXPECT_EQ(r.header("Content-Type").rfind("application/json", 0), 0u) << r.header("Content-Type");
        auto body = json_of(r);
        ASSERT_TRUE(body) << r.body;
        const json::value* user = body->if_contains("user");
        const json::value* tenant = body->if_contains("tenant");
        ASSERT_TRUE(user != nullptr && user->is_object()) << r.body;
        ASSERT_TRUE(tenant != nullptr && tenant->is_object()) << r.body;
        EXPECT_EQ(str(user->as_object(), "id"), id);
        EXPECT_EQ(str(user->as_object(), "email"), email);
        EXPECT_EQ(str(user->as_object(), "role"), role);
        EXPECT_FALSE(str(user->as_object(), "name").empty()) << r.body;
        EXPECT_EQ(str(tenant->as_object(), "id"), t.id);
        EXPECT_EQ(str(tenant->as_object(), "slug"), t.slug);
        EXPECT_EQ(str(tenant->as_object(), "status"), "active");
        EXPECT_FALSE(has_key_anywhere(json::value(*body), "password_hash")) << r.body;
        EXPECT_FALSE(has_key_anywhere(json::value(*body), "password")) << r.body;
        EXPECT_EQ(r.body.find("$argon2"), std::string::npos) << r.body;
    }
}

}  // namespace
}  // namespace mtapi::idtest
