#include "identity_support.hpp"

#include <crypt.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <stdexcept>

#include "auth/password_hasher.hpp"
#include "migrate/migrations.hpp"
#include "migrate/runner.hpp"
#include "pg_test_support.hpp"
#include "util/base64url.hpp"
#include "util/uuid.hpp"

namespace mtapi::idtest {
namespace {

namespace json = boost::json;

[[noreturn]] void fail(const std::string& what) {
    throw std::runtime_error(what);
}

std::unique_ptr<IdentityEnv>& instance() {
    static std::unique_ptr<IdentityEnv> env;
    return env;
}

std::mutex& instance_mutex() {
    static std::mutex m;
    return m;
}

// Runs `argv` with `input` on its standard input; returns the exit status and what it wrote on
// stdout and stderr.
std::pair<int, std::string> run_with_stdin(const std::vector<std::string>& argv, const std::string& input) {
    int in[2];
    int out[2];
    if (::pipe(in) != 0 || ::pipe(out) != 0) fail("pipe failed");
    pid_t pid = ::fork();
    if (pid < 0) fail("fork failed");
    if (pid == 0) {
        ::dup2(in[0], STDIN_FILENO);
        ::dup2(out[1], STDOUT_FILENO);
        ::dup2(out[1], STDERR_FILENO);
        ::close(in[0]);
        ::close(in[1]);
        ::close(out[0]);
        ::close(out[1]);
        std::vector<char*> args;
        for (const auto& a : argv)
            args.push_back(const_cast<char*>(a.c_str()));
        args.push_back(nullptr);
        ::execv(args[0], args.data());
        ::_exit(127);
    }
    ::close(in[0]);
    ::close(out[1]);
    std::size_t written = 0;
    while (written < input.size()) {
        ssize_t n = ::write(in[1], input.data() + written, input.size() - written);
        if (n <= 0) break;
        written += static_cast<std::size_t>(n);
    }
    ::close(in[1]);
    std::string output;
    char buf[4096];
    for (;;) {
        ssize_t n = ::read(out[0], buf, sizeof(buf));
        if (n <= 0) break;
        output.append(buf, static_cast<std::size_t>(n));
    }
    ::close(out[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    return {WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), output};
}

// The platform schema at head (a no-op when it already is). Tenant schemas are left alone: other
// suites own theirs, and `mtapi migrate` would touch every tenant of the shared catalog.
void migrate_platform() {
    pgtest::run([](boost::asio::io_context& ioc) -> boost::asio::awaitable<void> {
        pg::ConnectOptions o = pgtest::options();
        auto conn = co_await pg::Connection::connect(ioc, o);
        migrate::Stream stream = migrate::platform_migrations();
        co_await migrate::migrate_platform(*conn, pgtest::after(60s), stream);
    });
}

[[maybe_unused]] const auto* const kRegistered = ::testing::AddGlobalTestEnvironment(new IdentityEnvironment);

}  // namespace

// ----------------------------------------------------------------------------- small helpers

std::string random_hex(std::size_t bytes) {
    std::string raw(bytes, '\0');
    if (RAND_bytes(reinterpret_cast<unsigned char*>(raw.data()), static_cast<int>(bytes)) != 1) fail("RAND_bytes");
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out;
    for (unsigned char c : raw) {
        out.push_back(kHex[c >> 4]);
        out.push_back(kHex[c & 15]);
    }
    return out;
}

std::string env_or_empty(const char* name) {
    const char* v = std::getenv(name);
    return v == nullptr ? std::string() : std::string(v);
}

std::string lit(std::string_view text) {
    std::string out = "'";
    for (char c : text) {
        if (c == '\'') out.push_back('\'');
        out.push_back(c);
    }
    out.push_back('\'');
    return out;
}

std::optional<json::object> json_of(const Response& r) {
    return test::parse_json_object(r.body);
}

std::string str(const json::object& o, std::string_view key) {
    const json::value* v = o.if_contains(key);
    return v != nullptr && v->is_string() ? std::string(v->as_string()) : std::string();
}

std::string describe(const Response& r) {
    if (r.status == 0) return "no response: " + r.error;
    std::string out = std::to_string(r.status) + " " + r.reason;
    std::string www = r.header("WWW-Authenticate");
    if (!www.empty()) out += " [WWW-Authenticate: " + www + "]";
    out += " " + r.body.substr(0, 600);
    return out;
}

double percentile(std::vector<double> samples, double p) {
    if (samples.empty()) return 0;
    std::sort(samples.begin(), samples.end());
    auto rank = static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(samples.size())));
    rank = std::clamp<std::size_t>(rank, 1, samples.size());
    return samples[rank - 1];
}

// ----------------------------------------------------------------------------- tokens by hand

std::string b64url(std::string_view bytes) {
    return util::base64url_encode(bytes);
}

std::string token_header(std::string_view token) {
    auto dot = token.find('.');
    auto decoded = util::base64url_decode(token.substr(0, dot));
    return decoded ? *decoded : std::string();
}

std::string signing_input(std::string_view header_json, std::string_view claims_json) {
    return b64url(header_json) + "." + b64url(claims_json);
}

std::string hmac_sha256(std::string_view key, std::string_view data) {
    unsigned char out[EVP_MAX_MD_SIZE];
    std::size_t len = 0;
    if (EVP_Q_mac(nullptr, "HMAC", nullptr, "SHA256", nullptr, key.data(), key.size(),
                  reinterpret_cast<const unsigned char*>(data.data()), data.size(), out, sizeof(out), &len) == nullptr)
        fail("HMAC-SHA256 failed");
    return std::string(reinterpret_cast<const char*>(out), len);
}

Ed25519Key::Ed25519Key() : key_(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519")) {
    if (!key_) fail("Ed25519 key generation failed");
}

std::string Ed25519Key::sign(std::string_view data) const {
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    std::string sig(64, '\0');
    std::size_t len = sig.size();
    bool ok = ctx != nullptr && EVP_DigestSignInit(ctx, nullptr, nullptr, nullptr, key_.get()) == 1 &&
              EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(sig.data()), &len,
                             reinterpret_cast<const unsigned char*>(data.data()), data.size()) == 1;
    EVP_MD_CTX_free(ctx);
    if (!ok) fail("Ed25519 signing failed");
    sig.resize(len);
    return sig;
}

std::string Ed25519Key::public_pem() const {
    BIO* bio = BIO_new(BIO_s_mem());
    if (bio == nullptr || PEM_write_bio_PUBKEY(bio, key_.get()) != 1) {
        BIO_free(bio);
        fail("PEM_write_bio_PUBKEY failed");
    }
    char* data = nullptr;
    long n = BIO_get_mem_data(bio, &data);
    std::string pem(data, static_cast<std::size_t>(n));
    BIO_free(bio);
    return pem;
}

std::string hs256_token(std::string_view secret, std::string_view header_json, std::string_view claims_json) {
    std::string input = signing_input(header_json, claims_json);
    return input + "." + b64url(hmac_sha256(secret, input));
}

std::string eddsa_token(const Ed25519Key& key, std::string_view header_json, std::string_view claims_json) {
    std::string input = signing_input(header_json, claims_json);
    return input + "." + b64url(key.sign(input));
}

json::object claims_for(const std::string& user_id, const std::string& tenant_id, const std::string& role) {
    auto now = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch());
    json::object c;
    c["iss"] = "mtapi";
    c["aud"] = "mtapi";
    c["sub"] = user_id;
    if (!tenant_id.empty()) c["tenant_id"] = tenant_id;
    c["role"] = role;
    c["iat"] = now.count();
    c["exp"] = now.count() + 600;
    c["jti"] = random_hex(16);
    return c;
}

std::string header_json(std::string_view alg, std::optional<std::string_view> kid) {
    json::object h;
    h["alg"] = alg;
    h["typ"] = "JWT";
    if (kid) h["kid"] = *kid;
    return json::serialize(h);
}

// ----------------------------------------------------------------------------- passwords

std::string bcrypt_hash(const std::string& password, unsigned long cost) {
    char setting[CRYPT_GENSALT_OUTPUT_SIZE];
    if (crypt_gensalt_rn("$2b$", cost, nullptr, 0, setting, sizeof(setting)) == nullptr) fail("crypt_gensalt_rn");
    auto data = std::make_unique<crypt_data>();
    const char* hash = crypt_rn(password.c_str(), setting, data.get(), sizeof(crypt_data));
    if (hash == nullptr || hash[0] == '*') fail("crypt_rn failed");
    return hash;
}

// ----------------------------------------------------------------------------- HTTP

Headers bearer(const std::string& token) {
    if (token.empty()) return {};
    return {{"Authorization", "Bearer " + token}};
}

Response get(std::uint16_t port, const std::string& target, const std::string& token) {
    return test::http_request(port, "GET", target, bearer(token), {}, 10s);
}

Response send_json(std::uint16_t port, std::string_view method, const std::string& target, const std::string& body,
                   const std::string& token, milliseconds timeout) {
    Headers h = bearer(token);
    h.emplace_back("Content-Type", "application/json");
    return test::http_request(port, method, target, h, body, timeout);
}

Response del(std::uint16_t port, const std::string& target, const std::string& token) {
    return test::http_request(port, "DELETE", target, bearer(token), {}, 30s);
}

::testing::AssertionResult is_problem(const Response& r, int status) {
    if (r.status != status) return ::testing::AssertionFailure() << "expected " << status << ", got " << describe(r);
    if (r.header("Content-Type").rfind("application/problem+json", 0) != 0)
        return ::testing::AssertionFailure() << "not problem+json: Content-Type '" << r.header("Content-Type") << "'";
    auto body = json_of(r);
    if (!body) return ::testing::AssertionFailure() << "body is not a JSON object: " << r.body;
    const json::value* s = body->if_contains("status");
    if (s == nullptr || !s->is_int64() || s->as_int64() != status)
        return ::testing::AssertionFailure() << "body status is not " << status << ": " << r.body;
    for (const char* key : {"type", "title", "detail", "instance", "request_id"})
        if (str(*body, key).empty())
            return ::testing::AssertionFailure() << "problem without '" << key << "': " << r.body;
    return ::testing::AssertionSuccess();
}

::testing::AssertionResult is_invalid_token(const Response& r) {
    auto p = is_problem(r, 401);
    if (!p) return p;
    std::string www = r.header("WWW-Authenticate");
    if (www.rfind("Bearer", 0) != 0 || www.find("error=\"invalid_token\"") == std::string::npos)
        return ::testing::AssertionFailure()
               << "401 without WWW-Authenticate: Bearer …error=\"invalid_token\": '" << www << "'";
    return ::testing::AssertionSuccess();
}

std::vector<std::string> error_fields(const Response& r) {
    std::vector<std::string> out;
    auto body = json_of(r);
    if (!body) return out;
    const json::value* errors = body->if_contains("errors");
    if (errors == nullptr || !errors->is_array()) return out;
    for (const auto& e : errors->as_array())
        if (e.is_object()) out.push_back(str(e.as_object(), "field"));
    return out;
}

Response tenant_login(std::uint16_t port, const std::string& slug, const std::string& email,
                      const std::string& password, milliseconds timeout) {
    json::object o;
    o["tenant"] = slug;
    o["email"] = email;
    o["password"] = password;
    return send_json(port, "POST", "/api/v1/auth/login", json::serialize(o), {}, timeout);
}

std::string token_of(const Response& login) {
    auto body = json_of(login);
    if (login.status != 200 || !body || str(*body, "access_token").empty()) fail("login failed: " + describe(login));
    return str(*body, "access_token");
}

// ----------------------------------------------------------------------------- the environment

IdentityEnv::IdentityEnv() = default;

IdentityEnv& IdentityEnv::get() {
    std::lock_guard lock(instance_mutex());
    auto& env = instance();
    if (!env) {
        std::unique_ptr<IdentityEnv> fresh(new IdentityEnv());
        try {
            fresh->setup();
        } catch (...) {
            fresh->teardown();
            throw;
        }
        env = std::move(fresh);
    }
    return *env;
}

void IdentityEnv::shutdown() {
    std::lock_guard lock(instance_mutex());
    auto& env = instance();
    if (env) env->teardown();
    env.reset();
}

Env IdentityEnv::server_env() const {
    return {{"MTAPI_JWT_SECRET", hs_secret_},
            {"MTAPI_JWT_KID", kHsKid},
            {"MTAPI_JWT_KEYS", std::string(kEdKid) + ":EdDSA:verify_only:file:" + dir_ + "/ed-main.pub.pem"},
            {"MTAPI_JWT_ISSUER", "mtapi"},
            {"MTAPI_JWT_AUDIENCE", "mtapi"}};
}

std::unique_ptr<ServerProcess> IdentityEnv::start_server(Env extra) const {
    Env env = server_env();
    env.insert(env.end(), extra.begin(), extra.end());
    auto server = std::make_unique<ServerProcess>(env);
    auto started = server->start(20s);
    if (!started) fail("mtapi serve did not start: " + std::string(started.message()) + "\n" + server->output_tail());
    return server;
}

void IdentityEnv::setup() {
    if (env_or_empty("MTAPI_BINARY").empty()) fail("MTAPI_BINARY is not set");
    if (!pgtest::database_configured()) fail("MTAPI_DATABASE_URL / MTAPI_PG_SUPERUSER_URL are not set");
    hs_secret_ = env_or_empty("MTAPI_JWT_SECRET");
    if (hs_secret_.size() < 32) fail("MTAPI_JWT_SECRET (at least 32 bytes) is not set");

    char tmpl[] = "/tmp/mtapi-identity-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) fail("mkdtemp failed");
    dir_ = tmpl;
    std::ofstream(dir_ + "/ed-main.pub.pem") << ed_key_.public_pem();

    migrate_platform();
    server_ = start_server();

    // A platform admin of this process: `mtapi admin create` reads the password from stdin.
    admin_email_ = "identity-" + random_hex(6) + "@test.local";
    const std::string password = "pa-" + random_hex(12);
    auto [status, output] =
        run_with_stdin({env_or_empty("MTAPI_BINARY"), "admin", "create", "--email", admin_email_}, password + "\n");
    if (status != 0) fail("mtapi admin create exited with " + std::to_string(status) + ": " + output);
    admin_id_ = sql_value("SELECT id::text FROM platform.platform_admins WHERE email = " + lit(admin_email_));
    if (admin_id_.empty()) fail("mtapi admin create left no platform_admins row");

    json::object o;
    o["email"] = admin_email_;
    o["password"] = password;
    auto login = send_json(port(), "POST", "/api/v1/admin/auth/login", json::serialize(o));
    admin_token_ = token_of(login);
}

void IdentityEnv::teardown() {
    if (server_ && !admin_token_.empty()) {
        for (const auto& id : tenants_) {
            auto r = del(port(), "/api/v1/admin/tenants/" + id, admin_token_);
            if (r.status != 204 && r.status != 404)
                std::fprintf(stderr, "tenant %s was not deleted: %s\n", id.c_str(), describe(r).c_str());
        }
    }
    tenants_.clear();
    if (!admin_email_.empty()) {
        try {
            sql_exec("DELETE FROM platform.platform_admins WHERE email = " + lit(admin_email_));
        } catch (const std::exception& e) {
            std::fprintf(stderr, "platform admin %s was not deleted: %s\n", admin_email_.c_str(), e.what());
        }
    }
    server_.reset();
    if (!dir_.empty()) {
        std::error_code ec;
        std::filesystem::remove_all(dir_, ec);
    }
}

std::string IdentityEnv::unique_slug(std::string_view prefix) {
    return std::string(prefix) + "-" + random_hex(4);
}

TenantInfo IdentityEnv::create_tenant(std::string_view prefix, std::optional<std::string> admin_password) {
    TenantInfo t;
    t.slug = unique_slug(prefix);
    json::object o;
    o["slug"] = t.slug;
    o["name"] = "Identity test " + t.slug;
    o["admin_email"] = "admin@" + t.slug + ".test";
    if (admin_password) o["admin_password"] = *admin_password;
    auto r = send_json(port(), "POST", "/api/v1/admin/tenants", json::serialize(o), admin_token_, 60s);
    auto body = json_of(r);
    if (r.status != 201 || !body) fail("tenant creation failed: " + describe(r));
    t.created = *body;
    t.id = str(*body, "id");
    t.schema = str(*body, "schema");
    if (t.id.empty()) fail("tenant creation answered no id: " + r.body);
    tenants_.push_back(t.id);
    const json::value* admin = body->if_contains("admin");
    if (admin == nullptr || !admin->is_object()) fail("tenant creation answered no admin: " + r.body);
    t.admin_id = str(admin->as_object(), "id");
    t.admin_email = str(admin->as_object(), "email");
    t.admin_password = str(admin->as_object(), "password");
    if (t.admin_id.empty()) t.admin_id = sql_value("SELECT id::text FROM " + t.schema + ".users");
    return t;
}

std::string IdentityEnv::insert_user(const TenantInfo& tenant, const std::string& email, const std::string& role,
                                     const std::string& password_hash) {
    std::string id = util::to_string(util::uuid_v7());
    sql_exec("INSERT INTO " + tenant.schema + ".users (id, email, name, role, password_hash) VALUES (" + lit(id) +
             ", " + lit(email) + ", " + lit("User " + role) + ", " + lit(role) + ", " + lit(password_hash) + ")");
    return id;
}

UserInfo IdentityEnv::add_user(const TenantInfo& tenant, const std::string& admin_token, const std::string& role) {
    UserInfo u;
    u.role = role;
    u.email = role + "-" + random_hex(3) + "@" + tenant.slug + ".test";
    u.password = "pw-" + random_hex(10);
    json::object o;
    o["email"] = u.email;
    o["name"] = "User " + role;
    o["role"] = role;
    o["password"] = u.password;
    auto r = send_json(port(), "POST", "/api/v1/users", json::serialize(o), admin_token, 30s);
    if (r.status == 201) {
        auto body = json_of(r);
        if (body) u.id = str(*body, "id");
        if (u.id.empty()) fail("POST /api/v1/users answered 201 without an id: " + r.body);
    } else if (r.status == 404 || r.status == 405) {
        // The users route is not there (yet): the row goes in directly.
        u.id = insert_user(tenant, u.email, role, auth::PasswordHasher::hash_now(u.password, auth::HashParams{}));
    } else {
        fail("POST /api/v1/users failed: " + describe(r));
    }
    u.token = token_of(tenant_login(port(), tenant.slug, u.email, u.password));
    return u;
}

std::string IdentityEnv::sql_value(const std::string& sql) const {
    pgtest::AdminSession su(pgtest::superuser_url());
    return su.value(sql);
}

std::vector<std::string> IdentityEnv::sql_column(const std::string& sql) const {
    pgtest::AdminSession su(pgtest::superuser_url());
    return su.column(sql);
}

void IdentityEnv::sql_exec(const std::string& sql) const {
    pgtest::AdminSession su(pgtest::superuser_url());
    su.exec(sql);
}

void IdentityTest::SetUp() {
    IdentityEnv::get();
}

}  // namespace mtapi::idtest
