// JWS tokens, the keyring and base64url. Attack tokens are built here by hand and signed with
// OpenSSL directly, so each RFC 8725 case is checked against an independent implementation.

#include "auth/jws.hpp"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include <atomic>
#include <boost/json.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "auth/keyring.hpp"
#include "util/base64url.hpp"
#include "util/uuid.hpp"

using namespace mtapi;
using auth::Claims;
using auth::Keyring;
using auth::VerifyError;
using auth::VerifyOptions;
using namespace std::chrono_literals;

namespace {

const std::string kSecret = "0123456789abcdef0123456789abcdef";       // 32 bytes
const std::string kOtherSecret = "fedcba9876543210fedcba9876543210";  // 32 bytes
const std::chrono::sys_seconds kNow{std::chrono::seconds(1'700'000'000)};
const std::string kSub = "0190a6f2-7c1e-7a4b-8c3d-1234567890ab";
const std::string kTenant = "0190a6f2-7c1e-7a4b-8c3d-0000000000aa";

std::string b64(std::string_view s) {
    return util::base64url_encode(s);
}

// Ed25519 keys and PEM files.

auth::PkeyPtr generate_ed25519() {
    return auth::PkeyPtr(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"));
}

std::string private_pem(EVP_PKEY* key) {
    std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), &BIO_free);
    PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr);
    char* data = nullptr;
    const long len = BIO_get_mem_data(bio.get(), &data);
    return std::string(data, static_cast<std::size_t>(len));
}

std::string public_pem(EVP_PKEY* key) {
    std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), &BIO_free);
    PEM_write_bio_PUBKEY(bio.get(), key);
    char* data = nullptr;
    const long len = BIO_get_mem_data(bio.get(), &data);
    return std::string(data, static_cast<std::size_t>(len));
}

std::string raw_public_key(EVP_PKEY* key) {
    std::string out(32, '\0');
    std::size_t len = out.size();
    EVP_PKEY_get_raw_public_key(key, reinterpret_cast<unsigned char*>(out.data()), &len);
    out.resize(len);
    return out;
}

// Hand-made tokens.

std::string hmac_raw(std::string_view secret, std::string_view data) {
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
         reinterpret_cast<const unsigned char*>(data.data()), data.size(), out, &len);
    return std::string(reinterpret_cast<char*>(out), len);
}

std::string ed25519_raw(EVP_PKEY* key, std::string_view data) {
    std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
    std::string sig(64, '\0');
    std::size_t len = sig.size();
    EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, key);
    EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len,
                   reinterpret_cast<const unsigned char*>(data.data()), data.size());
    return sig;
}

std::string hs_token(std::string_view secret, std::string_view header, std::string_view payload) {
    const std::string input = b64(header) + "." + b64(payload);
    return input + "." + b64(hmac_raw(secret, input));
}

std::string ed_token(EVP_PKEY* key, std::string_view header, std::string_view payload) {
    const std::string input = b64(header) + "." + b64(payload);
    return input + "." + b64(ed25519_raw(key, input));
}

boost::json::object valid_claims_object() {
    const auto now = kNow.time_since_epoch().count();
    return {{"iss", "mtapi"},  {"aud", "mtapi"}, {"sub", kSub},      {"tenant_id", kTenant},
            {"role", "admin"}, {"iat", now},     {"exp", now + 900}, {"jti", "jti-0001"}};
}

std::string payload_with(const std::function<void(boost::json::object&)>& change) {
    auto claims = valid_claims_object();
    change(claims);
    return boost::json::serialize(claims);
}

const std::string kValidPayload = boost::json::serialize(valid_claims_object());
const std::string kHsHeader = R"({"alg":"HS256","typ":"JWT","kid":"k1"})";

Claims valid_claims() {
    Claims c;
    c.iss = "mtapi";
    c.aud = "mtapi";
    c.sub = *util::parse_uuid(kSub);
    c.tenant_id = util::parse_uuid(kTenant);
    c.role = "admin";
    c.iat = kNow;
    c.exp = kNow + auth::kAccessTokenTtl;
    c.jti = auth::new_jti();
    return c;
}

VerifyOptions options_at(std::chrono::system_clock::time_point now) {
    VerifyOptions o;
    o.issuer = "mtapi";
    o.audience = "mtapi";
    o.now = now;
    return o;
}

VerifyOptions options() {
    return options_at(kNow);
}

std::shared_ptr<const Keyring> hs_keyring(const std::string& kid = "k1", const std::string& secret = kSecret) {
    std::vector<auth::Key> keys;
    keys.push_back(auth::Key::hs256(kid, auth::KeyState::signing, secret));
    return std::make_shared<const Keyring>(std::move(keys));
}

Keyring::EnvLookup env_of(std::map<std::string, std::string> vars) {
    return [vars = std::move(vars)](std::string_view name) -> std::optional<std::string> {
        auto it = vars.find(std::string(name));
        if (it == vars.end()) return std::nullopt;
        return it->second;
    };
}

std::string keyring_error(const std::function<void()>& load) {
    try {
        load();
    } catch (const auth::KeyringError& e) {
        return e.what();
    }
    return "(no error)";
}

// Verifies with the fixed clock and returns the error, or "ok".
std::string outcome(const Keyring& keyring, std::string_view token, const VerifyOptions& o = options()) {
    auto result = auth::verify(keyring, token, o);
    return result ? "ok" : std::string(auth::to_string(result.error()));
}

class TempDir {
  public:
    TempDir() {
        path_ = std::filesystem::temp_directory_path() / ("mtapi_jws_" + util::to_hex(util::uuid_v7()));
        std::filesystem::create_directories(path_);
    }
    ~TempDir() { std::filesystem::remove_all(path_); }
    std::string write(const std::string& name, const std::string& content) const {
        const auto file = path_ / name;
        std::ofstream(file, std::ios::binary) << content;
        return file.string();
    }

  private:
    std::filesystem::path path_;
};

// A keyring with an HS256 key "hs" (signing) and an Ed25519 key "ed" (verify-only).
struct MixedKeyring {
    auth::PkeyPtr ed = generate_ed25519();
    std::shared_ptr<const Keyring> keyring;

    MixedKeyring() {
        auth::PkeyPtr copy(EVP_PKEY_dup(ed.get()));
        std::vector<auth::Key> keys;
        keys.push_back(auth::Key::hs256("hs", auth::KeyState::signing, kSecret));
        keys.push_back(auth::Key::ed25519("ed", auth::KeyState::verify_only, std::move(copy)));
        keyring = std::make_shared<const Keyring>(std::move(keys));
    }
};

}  // namespace

// Base64url.

TEST(Base64Url, encodes_rfc4648_vectors_without_padding) {
    EXPECT_EQ(b64(""), "");
    EXPECT_EQ(b64("f"), "Zg");
    EXPECT_EQ(b64("fo"), "Zm8");
    EXPECT_EQ(b64("foo"), "Zm9v");
    EXPECT_EQ(b64("foob"), "Zm9vYg");
    EXPECT_EQ(b64("\xfb\xff\xbf"), "-_-_");
}

TEST(Base64Url, round_trips_every_length) {
    std::string bytes;
    for (int n = 0; n < 70; ++n) {
        auto decoded = util::base64url_decode(b64(bytes));
        ASSERT_TRUE(decoded) << n;
        EXPECT_EQ(*decoded, bytes);
        EXPECT_EQ(b64(bytes).size(), util::base64url_encoded_size(bytes.size()));
        bytes.push_back(static_cast<char>(n * 37 + 11));
    }
}

TEST(Base64Url, rejects_padding) {
    EXPECT_FALSE(util::base64url_decode("Zg=="));
    EXPECT_FALSE(util::base64url_decode("Zm8="));
    EXPECT_FALSE(util::base64url_decode("Zm9v===="));
}

TEST(Base64Url, rejects_characters_outside_the_url_alphabet) {
    EXPECT_TRUE(util::base64url_decode("-_-_"));
    EXPECT_FALSE(util::base64url_decode("+/+/"));
    EXPECT_FALSE(util::base64url_decode("Zm9v Yg"));
    EXPECT_FALSE(util::base64url_decode(std::string_view("Zm\0v", 4)));
    EXPECT_FALSE(util::base64url_decode("Zm9v\n"));
}

TEST(Base64Url, rejects_impossible_lengths) {
    EXPECT_FALSE(util::base64url_decode("Z"));
    EXPECT_FALSE(util::base64url_decode("Zm9vY"));
}

TEST(Base64Url, rejects_non_canonical_trailing_bits) {
    EXPECT_TRUE(util::base64url_decode("Zg"));
    EXPECT_FALSE(util::base64url_decode("Zh"));  // same byte with a stray low bit
    EXPECT_TRUE(util::base64url_decode("Zm8"));
    EXPECT_FALSE(util::base64url_decode("Zm9"));
}

// Keyring loading.

TEST(Keyring, loads_the_hs256_secret_from_the_environment_with_the_default_kid) {
    auto keyring = Keyring::from_env(env_of({{"MTAPI_JWT_SECRET", kSecret}}));
    EXPECT_EQ(keyring->signing_key().kid(), "default");
    EXPECT_EQ(keyring->signing_key().algorithm(), auth::Algorithm::hs256);
    EXPECT_EQ(keyring->keys().size(), 1u);
}

TEST(Keyring, takes_the_kid_from_mtapi_jwt_kid) {
    auto keyring = Keyring::from_env(env_of({{"MTAPI_JWT_SECRET", kSecret}, {"MTAPI_JWT_KID", "2026-01"}}));
    EXPECT_EQ(keyring->signing_key().kid(), "2026-01");
    EXPECT_NE(keyring->find("2026-01"), nullptr);
    EXPECT_EQ(keyring->find("default"), nullptr);
}

TEST(Keyring, rejects_a_short_secret_naming_the_key) {
    auto message = keyring_error([] { Keyring::from_env(env_of({{"MTAPI_JWT_SECRET", std::string(31, 'x')}})); });
    EXPECT_NE(message.find("'default'"), std::string::npos) << message;
    EXPECT_NE(message.find("at least 32 bytes (got 31)"), std::string::npos) << message;

    message = keyring_error([] { Keyring::from_spec("short:HS256:verify_only:env:S", env_of({{"S", "too short"}})); });
    EXPECT_NE(message.find("'short'"), std::string::npos) << message;
}

TEST(Keyring, rejects_two_signing_keys_naming_both) {
    auto message = keyring_error([] {
        Keyring::from_env(env_of({{"MTAPI_JWT_SECRET", kSecret},
                                  {"MTAPI_JWT_KID", "k1"},
                                  {"MTAPI_JWT_KEYS", "k2:HS256:signing:env:OTHER"},
                                  {"OTHER", kOtherSecret}}));
    });
    EXPECT_NE(message.find("'k1'"), std::string::npos) << message;
    EXPECT_NE(message.find("'k2'"), std::string::npos) << message;
    EXPECT_NE(message.find("both signing"), std::string::npos) << message;
}

TEST(Keyring, requires_a_signing_key) {
    auto message = keyring_error([] { Keyring::from_spec("k1:HS256:verify_only:env:S", env_of({{"S", kSecret}})); });
    EXPECT_NE(message.find("no JWT signing key"), std::string::npos) << message;
    message = keyring_error([] { Keyring::from_env(env_of({})); });
    EXPECT_NE(message.find("no JWT key configured"), std::string::npos) << message;
}

TEST(Keyring, reports_a_missing_file_naming_the_key_and_path) {
    auto message =
        keyring_error([] { Keyring::from_spec("ed1:EdDSA:signing:file:/nonexistent/mtapi/ed.pem", env_of({})); });
    EXPECT_NE(message.find("'ed1'"), std::string::npos) << message;
    EXPECT_NE(message.find("/nonexistent/mtapi/ed.pem"), std::string::npos) << message;
    EXPECT_NE(message.find("No such file"), std::string::npos) << message;
}

TEST(Keyring, reports_a_missing_environment_variable) {
    auto message = keyring_error([] { Keyring::from_spec("k1:HS256:signing:env:NOPE", env_of({})); });
    EXPECT_NE(message.find("'k1'"), std::string::npos) << message;
    EXPECT_NE(message.find("NOPE is not set"), std::string::npos) << message;
}

TEST(Keyring, rejects_repeated_kids_bad_entries_and_inexact_algorithm_names) {
    auto env = env_of({{"S", kSecret}, {"T", kOtherSecret}});
    EXPECT_NE(keyring_error([&] {
                  Keyring::from_spec("k1:HS256:signing:env:S,k1:HS256:verify_only:env:T", env);
              }).find("configured twice"),
              std::string::npos);
    EXPECT_NE(keyring_error([&] { Keyring::from_spec("k1:HS256:signing", env); }).find("kid:alg:state:source"),
              std::string::npos);
    EXPECT_NE(keyring_error([&] { Keyring::from_spec("k1:hs256:signing:env:S", env); }).find("unknown algorithm"),
              std::string::npos);
    EXPECT_NE(keyring_error([&] { Keyring::from_spec("k1:HS256:active:env:S", env); }).find("unknown state"),
              std::string::npos);
    EXPECT_NE(keyring_error([&] { Keyring::from_spec("k1:HS256:signing:vault:S", env); }).find("unknown key source"),
              std::string::npos);
    EXPECT_NE(keyring_error([&] { Keyring::from_spec("k 1:HS256:signing:env:S", env); }).find("kid must be"),
              std::string::npos);
}

TEST(Keyring, strips_one_trailing_newline_from_a_secret_file) {
    TempDir dir;
    const auto path = dir.write("secret", kSecret + "\n");
    auto from_file = Keyring::from_spec("k1:HS256:signing:file:" + path, env_of({}));
    auto from_env = hs_keyring("k1", kSecret);
    EXPECT_TRUE(auth::verify(*from_env, auth::sign(*from_file, valid_claims()), options()));
}

TEST(Keyring, needs_the_private_half_for_an_eddsa_signing_key) {
    TempDir dir;
    auto key = generate_ed25519();
    const auto pub = dir.write("ed.pub.pem", public_pem(key.get()));
    auto message = keyring_error([&] { Keyring::from_spec("ed1:EdDSA:signing:file:" + pub, env_of({})); });
    EXPECT_NE(message.find("'ed1'"), std::string::npos) << message;
    EXPECT_NE(message.find("private key"), std::string::npos) << message;
}

TEST(Keyring, rejects_a_non_ed25519_pem) {
    TempDir dir;
    auth::PkeyPtr ec(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
    const auto path = dir.write("ec.pem", private_pem(ec.get()));
    auto message = keyring_error([&] { Keyring::from_spec("ec1:EdDSA:signing:file:" + path, env_of({})); });
    EXPECT_NE(message.find("'ec1'"), std::string::npos) << message;
    EXPECT_NE(message.find("Ed25519"), std::string::npos) << message;
}

TEST(Keyring, loads_an_eddsa_pem_from_the_environment) {
    auto key = generate_ed25519();
    auto keyring = Keyring::from_spec("ed1:EdDSA:signing:env:PEM", env_of({{"PEM", private_pem(key.get())}}));
    EXPECT_EQ(keyring->signing_key().algorithm(), auth::Algorithm::eddsa);
}

// Round trips.

TEST(Jws, hs256_round_trip) {
    auto keyring = hs_keyring();
    const Claims claims = valid_claims();
    const auto token = auth::sign(*keyring, claims);
    auto result = auth::verify(*keyring, token, options());
    ASSERT_TRUE(result) << auth::to_string(result.error());
    const Claims& got = result.claims();
    EXPECT_EQ(got.iss, claims.iss);
    EXPECT_EQ(got.aud, claims.aud);
    EXPECT_EQ(got.sub, claims.sub);
    EXPECT_EQ(got.tenant_id, claims.tenant_id);
    EXPECT_EQ(got.role, claims.role);
    EXPECT_EQ(got.iat, claims.iat);
    EXPECT_EQ(got.nbf, std::nullopt);
    EXPECT_EQ(got.exp, claims.exp);
    EXPECT_EQ(got.jti, claims.jti);

    auto header = boost::json::parse(*util::base64url_decode(token.substr(0, token.find('.'))));
    EXPECT_EQ(header, boost::json::parse(kHsHeader));
}

TEST(Jws, eddsa_round_trip_through_pem_files) {
    TempDir dir;
    auto key = generate_ed25519();
    const auto priv = dir.write("ed.pem", private_pem(key.get()));
    const auto pub = dir.write("ed.pub.pem", public_pem(key.get()));
    auto signer = Keyring::from_spec("ed1:EdDSA:signing:file:" + priv, env_of({}));
    Claims claims = valid_claims();
    claims.nbf = kNow - 5s;
    const auto token = auth::sign(*signer, claims);

    auto result = auth::verify(*signer, token, options());
    ASSERT_TRUE(result) << auth::to_string(result.error());
    EXPECT_EQ(result.claims().nbf, claims.nbf);
    EXPECT_EQ(result.claims().jti, claims.jti);

    // A verifier holding only the public key (verify-only) accepts it too.
    auto verifier =
        Keyring::from_spec("hs:HS256:signing:env:S,ed1:EdDSA:verify_only:file:" + pub, env_of({{"S", kSecret}}));
    EXPECT_EQ(outcome(*verifier, token), "ok");
    auto header = boost::json::parse(*util::base64url_decode(token.substr(0, token.find('.'))));
    EXPECT_EQ(header.at("alg"), "EdDSA");
    EXPECT_EQ(header.at("kid"), "ed1");
}

TEST(Jws, platform_admin_round_trip_has_no_tenant) {
    auto keyring = hs_keyring();
    Claims claims = valid_claims();
    claims.role = "platform_admin";
    claims.tenant_id.reset();
    auto result = auth::verify(*keyring, auth::sign(*keyring, claims), options());
    ASSERT_TRUE(result) << auth::to_string(result.error());
    EXPECT_FALSE(result.claims().tenant_id);
    EXPECT_EQ(result.claims().role, "platform_admin");
}

TEST(Jws, sign_refuses_claims_that_would_not_verify) {
    auto keyring = hs_keyring();
    Claims no_tenant = valid_claims();
    no_tenant.tenant_id.reset();
    EXPECT_THROW(auth::sign(*keyring, no_tenant), std::invalid_argument);
    Claims bad_role = valid_claims();
    bad_role.role = "root";
    EXPECT_THROW(auth::sign(*keyring, bad_role), std::invalid_argument);
    Claims no_jti = valid_claims();
    no_jti.jti.clear();
    EXPECT_THROW(auth::sign(*keyring, no_jti), std::invalid_argument);
}

TEST(Jws, jti_is_128_random_bits) {
    const auto a = auth::new_jti();
    EXPECT_EQ(a.size(), 22u);
    EXPECT_EQ(util::base64url_decode(a)->size(), 16u);
    EXPECT_NE(a, auth::new_jti());
}

TEST(Jws, hand_made_token_verifies_so_attack_variants_below_are_meaningful) {
    EXPECT_EQ(outcome(*hs_keyring(), hs_token(kSecret, kHsHeader, kValidPayload)), "ok");
}

// RFC 8725: algorithm pinning.

TEST(Jws, alg_none_in_every_case_is_rejected) {
    auto keyring = hs_keyring();
    const std::string payload = b64(kValidPayload);
    for (const char* alg : {"none", "None", "NONE", "nOnE"}) {
        const std::string header = b64(std::string(R"({"alg":")") + alg + R"(","kid":"k1"})");
        EXPECT_EQ(outcome(*keyring, header + "." + payload + "."), "malformed") << alg;  // empty signature
        EXPECT_EQ(outcome(*keyring, header + "." + payload + "." + b64("garbage")), "alg_mismatch") << alg;
        // Even with a signature that is valid for the key, `none` is not the key's algorithm.
        const std::string input = header + "." + payload;
        EXPECT_EQ(outcome(*keyring, input + "." + b64(hmac_raw(kSecret, input))), "alg_mismatch") << alg;
    }
}

TEST(Jws, alg_is_compared_case_sensitively) {
    auto keyring = hs_keyring();
    for (const char* alg : {"hs256", "Hs256", "HS256 ", "HS384", "HS512"}) {
        const auto header = std::string(R"({"alg":")") + alg + R"(","kid":"k1"})";
        EXPECT_EQ(outcome(*keyring, hs_token(kSecret, header, kValidPayload)), "alg_mismatch") << alg;
    }
}

TEST(Jws, hs256_signed_with_a_wrong_secret_is_rejected) {
    EXPECT_EQ(outcome(*hs_keyring(), hs_token(kOtherSecret, kHsHeader, kValidPayload)), "bad_signature");
}

TEST(Jws, eddsa_token_against_an_hs256_kid_is_rejected) {
    MixedKeyring m;
    const auto token = ed_token(m.ed.get(), R"({"alg":"EdDSA","kid":"hs"})", kValidPayload);
    EXPECT_EQ(outcome(*m.keyring, token), "alg_mismatch");
    EXPECT_EQ(outcome(*m.keyring, ed_token(m.ed.get(), R"({"alg":"EdDSA","kid":"ed"})", kValidPayload)), "ok");
}

TEST(Jws, hs256_token_keyed_with_the_eddsa_public_key_is_rejected) {
    // The classic confusion: HMAC "signed" with the verifier's public key, naming the EdDSA kid.
    MixedKeyring m;
    for (const std::string& secret : {raw_public_key(m.ed.get()), public_pem(m.ed.get())}) {
        const auto token = hs_token(secret, R"({"alg":"HS256","kid":"ed"})", kValidPayload);
        EXPECT_EQ(outcome(*m.keyring, token), "alg_mismatch");
    }
}

TEST(Jws, unknown_and_missing_kid_are_rejected) {
    auto keyring = hs_keyring();
    EXPECT_EQ(outcome(*keyring, hs_token(kSecret, R"({"alg":"HS256","kid":"k9"})", kValidPayload)), "unknown_kid");
    EXPECT_EQ(outcome(*keyring, hs_token(kSecret, R"({"alg":"HS256"})", kValidPayload)), "unknown_kid");
    EXPECT_EQ(outcome(*keyring, hs_token(kSecret, R"({"alg":"HS256","kid":1})", kValidPayload)), "malformed");
}

// Header rules.

TEST(Jws, duplicate_header_keys_are_rejected) {
    auto keyring = hs_keyring();
    // A last-wins parser would read HS256 here and accept the token.
    EXPECT_EQ(outcome(*keyring, hs_token(kSecret, R"({"alg":"none","alg":"HS256","kid":"k1"})", kValidPayload)),
              "malformed");
    EXPECT_EQ(outcome(*keyring, hs_token(kSecret, R"({"alg":"HS256","alg":"none","kid":"k1"})", kValidPayload)),
              "malformed");
    EXPECT_EQ(outcome(*keyring, hs_token(kSecret, R"({"kid":"zz","alg":"HS256","kid":"k1"})", kValidPayload)),
              "malformed");
    // Repeats inside nested objects count too; the same name in different objects does not.
    EXPECT_EQ(outcome(*keyring,
                      hs_token(kSecret, R"({"alg":"HS256","kid":"k1","jwk":{"kty":"oct","kty":"x"}})", kValidPayload)),
              "malformed");
    EXPECT_EQ(
        outcome(*keyring, hs_token(kSecret, R"({"alg":"HS256","kid":"k1","x":{"kid":"a","alg":"b"}})", kValidPayload)),
        "ok");
}

TEST(Jws, crit_header_is_rejected) {
    const auto header = R"({"alg":"HS256","kid":"k1","crit":["exp"],"exp":1})";
    EXPECT_EQ(outcome(*hs_keyring(), hs_token(kSecret, header, kValidPayload)), "malformed");
}

TEST(Jws, key_location_headers_are_ignored) {
    MixedKeyring m;
    auto attacker = generate_ed25519();
    const std::string x = b64(raw_public_key(attacker.get()));
    const std::string header =
        R"({"alg":"HS256","kid":"hs","jku":"https://evil.example/jwks","x5u":"https://evil.example/c",)"
        R"("jwk":{"kty":"OKP","crv":"Ed25519","x":")" +
        x + R"("},"x5c":["MIIB"]})";
    EXPECT_EQ(outcome(*m.keyring, hs_token(kSecret, header, kValidPayload)), "ok");
    // An embedded key never verifies anything: a token signed by it under the EdDSA kid fails.
    const std::string embedded = R"({"alg":"EdDSA","kid":"ed","jwk":{"kty":"OKP","crv":"Ed25519","x":")" + x + R"("}})";
    EXPECT_EQ(outcome(*m.keyring, ed_token(attacker.get(), embedded, kValidPayload)), "bad_signature");
}

TEST(Jws, typ_other_than_jwt_and_non_object_headers_are_rejected) {
    auto keyring = hs_keyring();
    EXPECT_EQ(outcome(*keyring, hs_token(kSecret, R"({"alg":"HS256","kid":"k1"})", kValidPayload)), "ok");
    EXPECT_EQ(outcome(*keyring, hs_token(kSecret, R"({"alg":"HS256","kid":"k1","typ":"at+jwt"})", kValidPayload)),
              "malformed");
    EXPECT_EQ(outcome(*keyring, hs_token(kSecret, R"(["alg","HS256"])", kValidPayload)), "malformed");
    EXPECT_EQ(outcome(*keyring, hs_token(kSecret, R"("HS256")", kValidPayload)), "malformed");
    EXPECT_EQ(outcome(*keyring, hs_token(kSecret, R"({"alg":"HS256","kid":"k1"} x)", kValidPayload)), "malformed");
    EXPECT_EQ(outcome(*keyring, hs_token(kSecret, R"({"alg":"HS256","kid":"k1",})", kValidPayload)), "malformed");
    EXPECT_EQ(outcome(*keyring, hs_token(kSecret, R"({"alg":null,"kid":"k1"})", kValidPayload)), "malformed");
}

// Compact form and base64url.

TEST(Jws, segment_count_and_empty_segments_are_rejected) {
    auto keyring = hs_keyring();
    const auto token = hs_token(kSecret, kHsHeader, kValidPayload);
    const auto dot2 = token.rfind('.');
    EXPECT_EQ(outcome(*keyring, token + ".AAAA"), "malformed");
    EXPECT_EQ(outcome(*keyring, token + "."), "malformed");
    EXPECT_EQ(outcome(*keyring, token.substr(0, dot2)), "malformed");      // 2 parts
    EXPECT_EQ(outcome(*keyring, token.substr(0, dot2 + 1)), "malformed");  // empty signature
    EXPECT_EQ(outcome(*keyring, token.substr(token.find('.'))), "malformed");
    EXPECT_EQ(outcome(*keyring, ""), "malformed");
    EXPECT_EQ(outcome(*keyring, ".."), "malformed");
}

TEST(Jws, padding_in_any_segment_is_rejected) {
    auto keyring = hs_keyring();
    const auto token = hs_token(kSecret, kHsHeader, kValidPayload);
    const auto dot1 = token.find('.');
    const auto dot2 = token.rfind('.');
    EXPECT_EQ(outcome(*keyring, token + "="), "malformed");
    EXPECT_EQ(outcome(*keyring, token.substr(0, dot1) + "=" + token.substr(dot1)), "malformed");
    EXPECT_EQ(outcome(*keyring, token.substr(0, dot2) + "=" + token.substr(dot2)), "malformed");
}

TEST(Jws, standard_base64_characters_are_rejected) {
    auto keyring = hs_keyring();
    // Find a token whose signature contains '-' or '_' and spell those the standard-base64 way.
    for (int i = 0; i < 200; ++i) {
        const auto payload = payload_with([&](auto& c) { c["jti"] = "jti-" + std::to_string(i); });
        const auto token = hs_token(kSecret, kHsHeader, payload);
        if (token.find_first_of("-_", token.rfind('.')) == std::string::npos) continue;
        ASSERT_EQ(outcome(*keyring, token), "ok");
        std::string standard = token;
        for (auto p = standard.rfind('.'); p < standard.size(); ++p) {
            if (standard[p] == '-') standard[p] = '+';
            if (standard[p] == '_') standard[p] = '/';
        }
        EXPECT_EQ(outcome(*keyring, standard), "malformed");
        return;
    }
    FAIL() << "no signature with '-' or '_' in 200 tokens";
}

TEST(Jws, non_canonical_last_character_is_rejected) {
    // 32 signature bytes take 43 characters; the last one carries 2 unused bits. Setting them
    // leaves the decoded bytes unchanged, so only the canonical check can catch it.
    auto keyring = hs_keyring();
    const auto token = hs_token(kSecret, kHsHeader, kValidPayload);
    ASSERT_EQ(token.size() - token.rfind('.') - 1, 43u);
    const std::string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    std::string tampered = token;
    tampered.back() = alphabet[alphabet.find(token.back()) | 1];
    ASSERT_NE(tampered, token);
    EXPECT_EQ(outcome(*keyring, tampered), "malformed");
}

TEST(Jws, token_over_the_length_cap_is_rejected_before_decoding) {
    auto keyring = hs_keyring();
    const std::string garbage(10 * 1024, '!');
    EXPECT_EQ(outcome(*keyring, garbage), "too_long");
    VerifyOptions roomy = options();
    roomy.max_token_bytes = 16 * 1024;
    EXPECT_EQ(outcome(*keyring, garbage, roomy), "malformed");  // it is only the cap that answered

    const auto big = hs_token(kSecret, kHsHeader, payload_with([](auto& c) { c["pad"] = std::string(8000, 'a'); }));
    ASSERT_GT(big.size(), 10'000u);
    EXPECT_EQ(outcome(*keyring, big), "too_long");
    EXPECT_EQ(outcome(*keyring, big, roomy), "ok");
}

TEST(Jws, any_single_byte_change_is_rejected_and_nothing_throws) {
    auto keyring = hs_keyring();
    const auto token = auth::sign(*keyring, valid_claims());
    for (std::size_t i = 0; i < token.size(); ++i) {
        for (char c : {'A', 'z', '0', '-', '_', '.', '=', '+', '\0', '\xff'}) {
            if (token[i] == c) continue;
            std::string mutated = token;
            mutated[i] = c;
            VerifyOptions o = options();
            EXPECT_NO_THROW(EXPECT_FALSE(auth::verify(*keyring, mutated, o)) << i << " " << c);
        }
    }
}

// Claims.

TEST(Jws, expiry_honours_thirty_seconds_of_skew) {
    auto keyring = hs_keyring();
    const auto now = kNow.time_since_epoch().count();
    auto with_exp = [&](std::int64_t exp) {
        return hs_token(kSecret, kHsHeader, payload_with([&](auto& c) { c["exp"] = exp; }));
    };
    EXPECT_EQ(outcome(*keyring, with_exp(now + 1)), "ok");
    EXPECT_EQ(outcome(*keyring, with_exp(now - 10)), "ok");
    EXPECT_EQ(outcome(*keyring, with_exp(now - 29)), "ok");
    EXPECT_EQ(outcome(*keyring, with_exp(now - 30)), "expired");
    EXPECT_EQ(outcome(*keyring, with_exp(now - 31)), "expired");
    EXPECT_EQ(outcome(*keyring, with_exp(now - 3600)), "expired");
    VerifyOptions strict = options();
    strict.max_skew = 0s;
    EXPECT_EQ(outcome(*keyring, with_exp(now - 10), strict), "expired");
    // Extreme values neither overflow nor pass.
    EXPECT_EQ(outcome(*keyring, with_exp(std::numeric_limits<std::int64_t>::min())), "expired");
    EXPECT_EQ(outcome(*keyring, with_exp(std::numeric_limits<std::int64_t>::max())), "ok");
}

TEST(Jws, nbf_and_iat_in_the_future_beyond_skew_are_rejected) {
    auto keyring = hs_keyring();
    const auto now = kNow.time_since_epoch().count();
    auto with = [&](const char* name, std::int64_t t) {
        return hs_token(kSecret, kHsHeader, payload_with([&](auto& c) { c[name] = t; }));
    };
    EXPECT_EQ(outcome(*keyring, with("nbf", now + 30)), "ok");
    EXPECT_EQ(outcome(*keyring, with("nbf", now + 31)), "not_yet_valid");
    EXPECT_EQ(outcome(*keyring, with("nbf", now + 600)), "not_yet_valid");
    EXPECT_EQ(outcome(*keyring, with("iat", now + 30)), "ok");
    EXPECT_EQ(outcome(*keyring, with("iat", now + 31)), "not_yet_valid");
    EXPECT_EQ(outcome(*keyring, with("nbf", std::numeric_limits<std::int64_t>::max())), "not_yet_valid");
}

TEST(Jws, exp_is_required_and_must_be_an_integer) {
    auto keyring = hs_keyring();
    auto with = [&](const std::function<void(boost::json::object&)>& change) {
        return outcome(*keyring, hs_token(kSecret, kHsHeader, payload_with(change)));
    };
    EXPECT_EQ(with([](auto& c) { c.erase("exp"); }), "bad_claims");
    EXPECT_EQ(with([](auto& c) { c["exp"] = std::to_string(c["exp"].as_int64()); }), "bad_claims");
    EXPECT_EQ(with([](auto& c) { c["exp"] = static_cast<double>(c["exp"].as_int64()); }), "bad_claims");
    EXPECT_EQ(with([](auto& c) { c["exp"] = nullptr; }), "bad_claims");
    EXPECT_EQ(with([](auto& c) { c["exp"] = std::uint64_t{1} << 63; }), "bad_claims");
    EXPECT_EQ(with([](auto& c) { c["nbf"] = "1700000000"; }), "bad_claims");
    EXPECT_EQ(with([](auto& c) { c["iat"] = true; }), "bad_claims");
}

TEST(Jws, issuer_and_audience_must_match_exactly) {
    auto keyring = hs_keyring();
    auto with = [&](const std::function<void(boost::json::object&)>& change) {
        return outcome(*keyring, hs_token(kSecret, kHsHeader, payload_with(change)));
    };
    EXPECT_EQ(with([](auto& c) { c["iss"] = "other"; }), "bad_issuer");
    EXPECT_EQ(with([](auto& c) { c["iss"] = "MTAPI"; }), "bad_issuer");
    EXPECT_EQ(with([](auto& c) { c.erase("iss"); }), "bad_issuer");
    EXPECT_EQ(with([](auto& c) { c["aud"] = "other"; }), "bad_audience");
    EXPECT_EQ(with([](auto& c) { c["aud"] = "mtapi "; }), "bad_audience");
    EXPECT_EQ(with([](auto& c) { c.erase("aud"); }), "bad_audience");
    EXPECT_EQ(with([](auto& c) { c["aud"] = boost::json::array{"mtapi"}; }), "bad_audience");
    VerifyOptions other = options();
    other.audience = "billing";
    EXPECT_EQ(outcome(*keyring, hs_token(kSecret, kHsHeader, kValidPayload), other), "bad_audience");
}

TEST(Jws, duplicate_claim_keys_are_rejected) {
    auto keyring = hs_keyring();
    // Without the check the last `role` would win and a viewer would become an admin.
    std::string payload = kValidPayload;
    payload.insert(1, R"("role":"viewer",)");
    EXPECT_EQ(outcome(*keyring, hs_token(kSecret, kHsHeader, payload)), "bad_claims");
    std::string twice_exp = kValidPayload;
    twice_exp.insert(1, R"("exp":1,)");
    EXPECT_EQ(outcome(*keyring, hs_token(kSecret, kHsHeader, twice_exp)), "bad_claims");
}

TEST(Jws, claims_must_be_a_json_object) {
    auto keyring = hs_keyring();
    EXPECT_EQ(outcome(*keyring, hs_token(kSecret, kHsHeader, "[]")), "bad_claims");
    EXPECT_EQ(outcome(*keyring, hs_token(kSecret, kHsHeader, "not json")), "bad_claims");
    EXPECT_EQ(outcome(*keyring, hs_token(kSecret, kHsHeader, kValidPayload + "{}")), "bad_claims");
}

TEST(Jws, role_and_tenant_must_agree) {
    auto keyring = hs_keyring();
    auto with = [&](const std::function<void(boost::json::object&)>& change) {
        return outcome(*keyring, hs_token(kSecret, kHsHeader, payload_with(change)));
    };
    for (const char* role : {"admin", "dispatcher", "viewer"}) {
        EXPECT_EQ(with([&](auto& c) { c["role"] = role; }), "ok") << role;
        EXPECT_EQ(with([&](auto& c) {
                      c["role"] = role;
                      c.erase("tenant_id");
                  }),
                  "bad_claims")
            << role;
    }
    EXPECT_EQ(with([](auto& c) { c["role"] = "platform_admin"; }), "bad_claims");
    EXPECT_EQ(with([](auto& c) {
                  c["role"] = "platform_admin";
                  c.erase("tenant_id");
              }),
              "ok");
    EXPECT_EQ(with([](auto& c) { c["role"] = "Admin"; }), "bad_claims");
    EXPECT_EQ(with([](auto& c) { c["role"] = "superuser"; }), "bad_claims");
    EXPECT_EQ(with([](auto& c) { c.erase("role"); }), "bad_claims");
    EXPECT_EQ(with([](auto& c) { c["tenant_id"] = nullptr; }), "bad_claims");
}

TEST(Jws, sub_and_tenant_id_must_be_uuids) {
    auto keyring = hs_keyring();
    auto with = [&](const std::function<void(boost::json::object&)>& change) {
        return outcome(*keyring, hs_token(kSecret, kHsHeader, payload_with(change)));
    };
    EXPECT_EQ(with([](auto& c) { c["sub"] = "alice"; }), "bad_claims");
    EXPECT_EQ(with([](auto& c) { c["sub"] = "0190a6f27c1e7a4b8c3d1234567890ab"; }), "bad_claims");
    EXPECT_EQ(with([](auto& c) { c["sub"] = 42; }), "bad_claims");
    EXPECT_EQ(with([](auto& c) { c.erase("sub"); }), "bad_claims");
    EXPECT_EQ(with([](auto& c) { c["tenant_id"] = "acme"; }), "bad_claims");
    EXPECT_EQ(with([](auto& c) { c["tenant_id"] = "{0190a6f2-7c1e-7a4b-8c3d-0000000000aa}"; }), "bad_claims");
}

TEST(Jws, jti_is_required_and_bounded) {
    auto keyring = hs_keyring();
    auto with = [&](const std::function<void(boost::json::object&)>& change) {
        return outcome(*keyring, hs_token(kSecret, kHsHeader, payload_with(change)));
    };
    EXPECT_EQ(with([](auto& c) { c.erase("jti"); }), "bad_claims");
    EXPECT_EQ(with([](auto& c) { c["jti"] = ""; }), "bad_claims");
    EXPECT_EQ(with([](auto& c) { c["jti"] = 7; }), "bad_claims");
    EXPECT_EQ(with([](auto& c) { c["jti"] = std::string(128, 'j'); }), "ok");
    EXPECT_EQ(with([](auto& c) { c["jti"] = std::string(129, 'j'); }), "bad_claims");
}

TEST(Jws, unknown_claims_are_ignored) {
    auto keyring = hs_keyring();
    const auto payload = payload_with([](auto& c) {
        c["scope"] = "everything";
        c["nested"] = boost::json::object{{"role", "platform_admin"}, {"exp", "x"}};
    });
    auto result = auth::verify(*keyring, hs_token(kSecret, kHsHeader, payload), options());
    ASSERT_TRUE(result);
    EXPECT_EQ(result.claims().role, "admin");
}

// Key rotation.

TEST(Jws, rotation_keeps_old_tokens_while_the_old_key_is_verify_only) {
    auto before = Keyring::from_env(env_of({{"MTAPI_JWT_SECRET", kSecret}, {"MTAPI_JWT_KID", "k1"}}));
    const auto old_token = auth::sign(*before, valid_claims());

    auto rotated = Keyring::from_env(env_of({{"MTAPI_JWT_SECRET", kOtherSecret},
                                             {"MTAPI_JWT_KID", "k2"},
                                             {"MTAPI_JWT_KEYS", "k1:HS256:verify_only:env:MTAPI_JWT_SECRET_OLD"},
                                             {"MTAPI_JWT_SECRET_OLD", kSecret}}));
    EXPECT_EQ(outcome(*rotated, old_token), "ok");
    const auto new_token = auth::sign(*rotated, valid_claims());
    auto header = boost::json::parse(*util::base64url_decode(new_token.substr(0, new_token.find('.'))));
    EXPECT_EQ(header.at("kid"), "k2");
    EXPECT_EQ(outcome(*rotated, new_token), "ok");
    EXPECT_EQ(outcome(*before, new_token), "unknown_kid");

    auto retired = Keyring::from_env(env_of({{"MTAPI_JWT_SECRET", kOtherSecret}, {"MTAPI_JWT_KID", "k2"}}));
    EXPECT_EQ(outcome(*retired, old_token), "unknown_kid");
    EXPECT_EQ(outcome(*retired, new_token), "ok");
}

TEST(Jws, rotation_from_hs256_to_eddsa) {
    TempDir dir;
    auto ed = generate_ed25519();
    const auto pem = dir.write("ed.pem", private_pem(ed.get()));
    auto before = hs_keyring("k1");
    const auto old_token = auth::sign(*before, valid_claims());
    auto rotated =
        Keyring::from_spec("k1:HS256:verify_only:env:OLD,k2:EdDSA:signing:file:" + pem, env_of({{"OLD", kSecret}}));
    EXPECT_EQ(outcome(*rotated, old_token), "ok");
    const auto new_token = auth::sign(*rotated, valid_claims());
    EXPECT_EQ(outcome(*rotated, new_token), "ok");
    EXPECT_EQ(outcome(*before, new_token), "unknown_kid");
}

TEST(Jws, verification_is_safe_from_many_threads) {
    MixedKeyring m;
    const auto hs = auth::sign(*m.keyring, valid_claims());
    const auto ed = ed_token(m.ed.get(), R"({"alg":"EdDSA","kid":"ed"})", kValidPayload);
    std::atomic<int> failures{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&] {
            for (int i = 0; i < 300; ++i) {
                if (!auth::verify(*m.keyring, hs, options())) ++failures;
                if (!auth::verify(*m.keyring, ed, options())) ++failures;
                if (auth::verify(*m.keyring, hs + "x", options())) ++failures;
            }
        });
    }
    for (auto& t : threads)
        t.join();
    EXPECT_EQ(failures.load(), 0);
}

// The per-thread cache of verified tokens.

TEST(VerifyCached, answers_like_verify_and_still_rejects_a_cached_token_once_it_expires) {
    auto keyring = hs_keyring();
    Claims c = valid_claims();
    const std::string token = auth::sign(*keyring, c);
    auto first = auth::verify_cached(keyring, token, options());
    ASSERT_TRUE(first.ok());
    auto again = auth::verify_cached(keyring, token, options());
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(again.claims().jti, c.jti);
    EXPECT_EQ(again.claims().sub, c.sub);
    EXPECT_EQ(again.claims().role, "admin");
    // Past exp (+ the skew) the cached token fails exactly as verify() fails it: here while the
    // entry is still young (exp 10 s after the first check), and long after.
    Claims short_lived = valid_claims();
    short_lived.exp = kNow + std::chrono::seconds(10);
    const std::string brief = auth::sign(*keyring, short_lived);
    ASSERT_TRUE(auth::verify_cached(keyring, brief, options()).ok());
    ASSERT_TRUE(auth::verify_cached(keyring, brief, options_at(kNow + std::chrono::seconds(39))).ok());
    for (auto later : {kNow + std::chrono::seconds(40), kNow + std::chrono::seconds(3600)}) {
        auto expired = auth::verify_cached(keyring, brief, options_at(later));
        ASSERT_FALSE(expired.ok());
        EXPECT_EQ(expired.error(), auth::VerifyError::expired);
        EXPECT_EQ(outcome(*keyring, brief, options_at(later)), "expired");
    }
}

TEST(VerifyCached, a_token_cached_for_one_keyring_issuer_or_audience_is_verified_afresh_for_another) {
    auto keyring = hs_keyring();
    const std::string token = auth::sign(*keyring, valid_claims());
    ASSERT_TRUE(auth::verify_cached(keyring, token, options()).ok());
    // Same kid, another secret: the signature no longer verifies.
    auto other = hs_keyring("k1", std::string(kSecret) + "-rotated");
    auto result = auth::verify_cached(other, token, options());
    ASSERT_FALSE(result.ok());
    EXPECT_EQ(result.error(), auth::VerifyError::bad_signature);
    VerifyOptions wrong_aud = options();
    wrong_aud.audience = "someone-else";
    auto aud = auth::verify_cached(keyring, token, wrong_aud);
    ASSERT_FALSE(aud.ok());
    EXPECT_EQ(aud.error(), auth::VerifyError::bad_audience);
    VerifyOptions wrong_iss = options();
    wrong_iss.issuer = "someone-else";
    auto iss = auth::verify_cached(keyring, token, wrong_iss);
    ASSERT_FALSE(iss.ok());
    EXPECT_EQ(iss.error(), auth::VerifyError::bad_issuer);
    // And the original combination still verifies.
    EXPECT_TRUE(auth::verify_cached(keyring, token, options()).ok());
}

TEST(VerifyCached, never_caches_a_rejected_token) {
    auto keyring = hs_keyring();
    std::string token = auth::sign(*keyring, valid_claims());
    token.back() = token.back() == 'A' ? 'B' : 'A';  // breaks the signature
    for (int i = 0; i < 3; ++i) {
        auto r = auth::verify_cached(keyring, token, options());
        ASSERT_FALSE(r.ok());
    }
}

TEST(VerifyCached, verifies_an_entry_older_than_its_lifetime_afresh_and_stays_within_its_size) {
    auto keyring = hs_keyring();
    const std::string token = auth::sign(*keyring, valid_claims());
    ASSERT_TRUE(auth::verify_cached(keyring, token, options()).ok());
    const auto later = kNow + auth::kVerifiedTokenCacheTtl + std::chrono::seconds(1);
    ASSERT_TRUE(auth::verify_cached(keyring, token, options_at(later)).ok());  // replaced, still valid
    ASSERT_TRUE(auth::verify_cached(keyring, token, options_at(later)).ok());
    // More tokens than the cache holds: the oldest are evicted, and every one still verifies.
    std::vector<std::string> tokens;
    for (std::size_t i = 0; i < auth::kVerifiedTokenCacheSize + 50; ++i)
        tokens.push_back(auth::sign(*keyring, valid_claims()));
    for (int pass = 0; pass < 2; ++pass) {
        for (const auto& t : tokens)
            ASSERT_TRUE(auth::verify_cached(keyring, t, options()).ok());
    }
}
