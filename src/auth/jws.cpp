#include "auth/jws.hpp"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>

#include <array>
#include <boost/json/basic_parser_impl.hpp>
#include <cstdint>
#include <list>
#include <span>
#include <stdexcept>
#include <unordered_map>
#include <vector>

#include "util/base64url.hpp"

namespace mtapi::auth {
namespace {

constexpr std::size_t kHmacBytes = 32;
constexpr std::size_t kEd25519SignatureBytes = 64;

// Strict JSON object scanning.

enum class JsonKind : std::uint8_t { absent, string, integer, other };

// One top-level member of interest. Integers are JSON numbers without fraction or exponent that
// fit in int64; any other number, and every array, object, boolean or null, is `other`.
struct JsonField {
    JsonKind kind = JsonKind::absent;
    std::string text;
    std::int64_t integer = 0;

    void reset() {
        kind = JsonKind::absent;
        text.clear();
        integer = 0;
    }
};

// Working memory of ObjectScanner, kept per thread so that scanning does not allocate.
struct ScanBuffers {
    std::string key;                                        // a key arriving in parts
    std::string arena;                                      // keys of the open objects, back to back
    std::vector<std::pair<std::size_t, std::size_t>> keys;  // (offset, length) in arena
    std::vector<std::size_t> object_starts;                 // index in keys of each open object

    void clear() {
        key.clear();
        arena.clear();
        keys.clear();
        object_starts.clear();
    }
};

// A boost::json::basic_parser handler that accepts only a JSON object, rejects a repeated key in
// any object at any depth (the default parser silently keeps the last one, so a header could
// carry two different `alg` values) and captures the top-level members named in `names`.
class ObjectScanner {
  public:
    // Sizes are bounded by the token length cap; the member count also bounds the quadratic
    // duplicate search.
    static constexpr std::size_t max_object_size = 1024;
    static constexpr std::size_t max_array_size = static_cast<std::size_t>(-1);
    static constexpr std::size_t max_key_size = static_cast<std::size_t>(-1);
    static constexpr std::size_t max_string_size = static_cast<std::size_t>(-1);

    ObjectScanner(std::span<const std::string_view> names, std::span<JsonField> fields, ScanBuffers& buffers)
        : names_(names), fields_(fields), b_(buffers) {}

    bool on_document_begin(boost::json::error_code&) { return true; }
    bool on_document_end(boost::json::error_code&) { return true; }

    bool on_object_begin(boost::json::error_code&) {
        mark_other();
        b_.object_starts.push_back(b_.keys.size());
        ++depth_;
        return true;
    }
    bool on_object_end(std::size_t, boost::json::error_code&) {
        const std::size_t start = b_.object_starts.back();
        b_.object_starts.pop_back();
        if (start < b_.keys.size()) b_.arena.resize(b_.keys[start].first);
        b_.keys.resize(start);
        --depth_;
        return true;
    }
    bool on_array_begin(boost::json::error_code& ec) {
        if (depth_ == 0) return fail(ec);
        mark_other();
        ++depth_;
        return true;
    }
    bool on_array_end(std::size_t, boost::json::error_code&) {
        --depth_;
        return true;
    }

    bool on_key_part(boost::json::string_view s, std::size_t, boost::json::error_code&) {
        b_.key.append(s.data(), s.size());
        return true;
    }
    bool on_key(boost::json::string_view s, std::size_t, boost::json::error_code& ec) {
        std::string_view key(s.data(), s.size());
        if (!b_.key.empty()) key = b_.key.append(key);
        const bool fresh = remember_key(key);
        if (depth_ == 1) current_ = field_index(key);
        b_.key.clear();
        return fresh || fail(ec);
    }

    bool on_string_part(boost::json::string_view s, std::size_t, boost::json::error_code& ec) {
        if (depth_ == 0) return fail(ec);
        if (JsonField* f = current()) f->text.append(s.data(), s.size());
        return true;
    }
    bool on_string(boost::json::string_view s, std::size_t, boost::json::error_code& ec) {
        if (depth_ == 0) return fail(ec);
        if (JsonField* f = current()) {
            f->text.append(s.data(), s.size());
            f->kind = JsonKind::string;
            current_ = kNone;
        }
        return true;
    }

    bool on_number_part(boost::json::string_view, boost::json::error_code&) { return true; }
    bool on_int64(std::int64_t i, boost::json::string_view, boost::json::error_code& ec) {
        if (depth_ == 0) return fail(ec);
        if (JsonField* f = current()) {
            f->kind = JsonKind::integer;
            f->integer = i;
            current_ = kNone;
        }
        return true;
    }
    bool on_uint64(std::uint64_t, boost::json::string_view, boost::json::error_code& ec) { return scalar(ec); }
    bool on_double(double, boost::json::string_view, boost::json::error_code& ec) { return scalar(ec); }
    bool on_bool(bool, boost::json::error_code& ec) { return scalar(ec); }
    bool on_null(boost::json::error_code& ec) { return scalar(ec); }
    bool on_comment_part(boost::json::string_view, boost::json::error_code&) { return true; }
    bool on_comment(boost::json::string_view, boost::json::error_code&) { return true; }

  private:
    static constexpr std::size_t kNone = static_cast<std::size_t>(-1);

    static bool fail(boost::json::error_code& ec) {
        ec = boost::json::error::syntax;
        return false;
    }

    JsonField* current() { return depth_ == 1 && current_ != kNone ? &fields_[current_] : nullptr; }

    // A value that is not captured as string or integer.
    void mark_other() {
        if (JsonField* f = current()) f->kind = JsonKind::other;
        current_ = kNone;
    }
    bool scalar(boost::json::error_code& ec) {
        if (depth_ == 0) return fail(ec);
        mark_other();
        return true;
    }

    std::size_t field_index(std::string_view key) const {
        for (std::size_t i = 0; i < names_.size(); ++i)
            if (names_[i] == key) return i;
        return kNone;
    }

    // False when the innermost open object already has this key.
    bool remember_key(std::string_view key) {
        const std::string_view arena(b_.arena);
        for (std::size_t i = b_.object_starts.back(); i < b_.keys.size(); ++i)
            if (arena.substr(b_.keys[i].first, b_.keys[i].second) == key) return false;
        b_.keys.emplace_back(b_.arena.size(), key.size());
        b_.arena.append(key);
        return true;
    }

    std::span<const std::string_view> names_;
    std::span<JsonField> fields_;
    std::size_t depth_ = 0;
    std::size_t current_ = kNone;
    ScanBuffers& b_;
};

// Standard JSON only (no comments, trailing commas or invalid UTF-8), nesting at most 16 deep.
bool scan_object(std::string_view json, std::span<const std::string_view> names, std::span<JsonField> fields,
                 ScanBuffers& buffers) {
    for (auto& f : fields)
        f.reset();
    buffers.clear();
    boost::json::parse_options options;
    options.max_depth = 16;
    boost::json::basic_parser<ObjectScanner> parser(options, names, fields, buffers);
    boost::json::error_code ec;
    const std::size_t used = parser.write_some(false, json.data(), json.size(), ec);
    return !ec && used == json.size();
}

// Signatures.

struct MdCtxDeleter {
    void operator()(EVP_MD_CTX* ctx) const noexcept { EVP_MD_CTX_free(ctx); }
};
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, MdCtxDeleter>;

bool hmac_sha256(const Key& key, std::string_view data, std::array<unsigned char, kHmacBytes>& out) {
    MacCtxPtr ctx(EVP_MAC_CTX_dup(key.hmac()));
    std::size_t len = 0;
    return ctx && EVP_MAC_update(ctx.get(), reinterpret_cast<const unsigned char*>(data.data()), data.size()) == 1 &&
           EVP_MAC_final(ctx.get(), out.data(), &len, out.size()) == 1 && len == out.size();
}

bool ed25519_verify(const Key& key, std::string_view data, std::string_view signature) {
    if (signature.size() != kEd25519SignatureBytes) return false;
    MdCtxPtr ctx(EVP_MD_CTX_new());
    const bool ok =
        ctx && EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, key.pkey()) == 1 &&
        EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()), signature.size(),
                         reinterpret_cast<const unsigned char*>(data.data()), data.size()) == 1;
    ERR_clear_error();
    return ok;
}

bool signature_valid(const Key& key, std::string_view signing_input, std::string_view signature) {
    if (key.algorithm() == Algorithm::eddsa) return ed25519_verify(key, signing_input, signature);
    if (signature.size() != kHmacBytes) return false;
    std::array<unsigned char, kHmacBytes> expected{};
    return hmac_sha256(key, signing_input, expected) &&
           CRYPTO_memcmp(expected.data(), signature.data(), expected.size()) == 0;
}

std::string create_signature(const Key& key, std::string_view signing_input) {
    if (key.algorithm() == Algorithm::hs256) {
        std::array<unsigned char, kHmacBytes> mac{};
        if (!hmac_sha256(key, signing_input, mac)) throw std::runtime_error("HMAC-SHA256 failed");
        return std::string(reinterpret_cast<const char*>(mac.data()), mac.size());
    }
    MdCtxPtr ctx(EVP_MD_CTX_new());
    std::string sig(kEd25519SignatureBytes, '\0');
    std::size_t len = sig.size();
    if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, key.pkey()) != 1 ||
        EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len,
                       reinterpret_cast<const unsigned char*>(signing_input.data()), signing_input.size()) != 1) {
        ERR_clear_error();
        throw std::runtime_error("Ed25519 signing failed for key '" + key.kid() + "'");
    }
    sig.resize(len);
    return sig;
}

// Signing.

void append_json_string(std::string& out, std::string_view s) {
    static constexpr char kHex[] = "0123456789abcdef";
    out.push_back('"');
    for (char c : s) {
        const auto u = static_cast<unsigned char>(c);
        if (c == '"' || c == '\\') {
            out.push_back('\\');
            out.push_back(c);
        } else if (u < 0x20) {
            out.append("\\u00");
            out.push_back(kHex[u >> 4]);
            out.push_back(kHex[u & 0x0f]);
        } else {
            out.push_back(c);
        }
    }
    out.push_back('"');
}

// Builds one flat JSON object, members in call order.
class JsonObjectWriter {
  public:
    void string(std::string_view name, std::string_view value) {
        key(name);
        append_json_string(out_, value);
    }
    void integer(std::string_view name, std::int64_t value) {
        key(name);
        out_.append(std::to_string(value));
    }
    std::string finish() && {
        out_.push_back('}');
        return std::move(out_);
    }

  private:
    void key(std::string_view name) {
        if (out_.size() > 1) out_.push_back(',');
        append_json_string(out_, name);
        out_.push_back(':');
    }

    std::string out_ = "{";
};

std::int64_t seconds_of(std::chrono::sys_seconds t) {
    return t.time_since_epoch().count();
}

std::string header_json(const Key& key) {
    JsonObjectWriter w;
    w.string("alg", algorithm_name(key.algorithm()));
    w.string("typ", "JWT");
    w.string("kid", key.kid());
    return std::move(w).finish();
}

std::string claims_json(const Claims& c) {
    JsonObjectWriter w;
    w.string("iss", c.iss);
    w.string("aud", c.aud);
    w.string("sub", util::to_string(c.sub));
    if (c.tenant_id) w.string("tenant_id", util::to_string(*c.tenant_id));
    w.string("role", c.role);
    if (c.iat) w.integer("iat", seconds_of(*c.iat));
    if (c.nbf) w.integer("nbf", seconds_of(*c.nbf));
    w.integer("exp", seconds_of(c.exp));
    w.string("jti", c.jti);
    return std::move(w).finish();
}

// The rules verify() applies to role, tenant_id and jti (the only claims checks that do not
// depend on the verifier's options).
bool claims_consistent(std::string_view role, bool has_tenant, std::string_view jti) {
    if (!is_token_role(role)) return false;
    if ((role == "platform_admin") == has_tenant) return false;
    return !jti.empty() && jti.size() <= kMaxJtiBytes;
}

// Verification.

struct Segments {
    std::string_view header, payload, signature;
    std::string_view signing_input;  // header "." payload, exactly as received
};

std::optional<Segments> split_compact(std::string_view token) {
    const auto first = token.find('.');
    if (first == std::string_view::npos) return std::nullopt;
    const auto second = token.find('.', first + 1);
    if (second == std::string_view::npos || token.find('.', second + 1) != std::string_view::npos) return std::nullopt;
    Segments s{token.substr(0, first), token.substr(first + 1, second - first - 1), token.substr(second + 1),
               token.substr(0, second)};
    if (s.header.empty() || s.payload.empty() || s.signature.empty()) return std::nullopt;
    return s;
}

constexpr std::array<std::string_view, 4> kHeaderNames = {"alg", "kid", "typ", "crit"};
enum HeaderField { kAlg, kKid, kTyp, kCrit };

constexpr std::array<std::string_view, 9> kClaimNames = {"iss", "aud", "sub", "tenant_id", "role",
                                                         "iat", "nbf", "exp", "jti"};
enum ClaimField { kIss, kAud, kSub, kTenant, kRole, kIat, kNbf, kExp, kJti };

// Per-thread buffers, so that steady-state verification decodes without allocating.
struct Scratch {
    std::string header, payload, signature;
    std::array<JsonField, kHeaderNames.size()> header_fields;
    std::array<JsonField, kClaimNames.size()> claim_fields;
    ScanBuffers scan;
};

Scratch& scratch() {
    thread_local Scratch s;
    return s;
}

bool decode_segments(const Segments& seg, Scratch& s) {
    return util::base64url_decode_into(seg.header, s.header) && util::base64url_decode_into(seg.payload, s.payload) &&
           util::base64url_decode_into(seg.signature, s.signature);
}

// The key that may verify this header, or why there is none.
std::variant<const Key*, VerifyError> select_key(const Keyring& keyring, Scratch& s) {
    auto& f = s.header_fields;
    if (!scan_object(s.header, kHeaderNames, f, s.scan)) return VerifyError::malformed;
    if (f[kAlg].kind != JsonKind::string) return VerifyError::malformed;
    if (f[kTyp].kind != JsonKind::absent && (f[kTyp].kind != JsonKind::string || f[kTyp].text != "JWT"))
        return VerifyError::malformed;
    if (f[kCrit].kind != JsonKind::absent) return VerifyError::malformed;  // no extension is understood
    if (f[kKid].kind == JsonKind::absent) return VerifyError::unknown_kid;
    if (f[kKid].kind != JsonKind::string) return VerifyError::malformed;
    const Key* key = keyring.find(f[kKid].text);
    if (key == nullptr) return VerifyError::unknown_kid;
    if (f[kAlg].text != algorithm_name(key->algorithm())) return VerifyError::alg_mismatch;
    return key;
}

bool optional_time(const JsonField& f, std::optional<std::chrono::sys_seconds>& out) {
    if (f.kind == JsonKind::absent) return true;
    if (f.kind != JsonKind::integer) return false;
    out = std::chrono::sys_seconds(std::chrono::seconds(f.integer));
    return true;
}

std::optional<util::Uuid> uuid_field(const JsonField& f) {
    if (f.kind != JsonKind::string) return std::nullopt;
    return util::parse_uuid(f.text);
}

// Types and shapes of the claims; fills `out` except iss and aud.
bool extract_claims(std::array<JsonField, kClaimNames.size()>& f, Claims& out) {
    if (f[kExp].kind != JsonKind::integer) return false;
    out.exp = std::chrono::sys_seconds(std::chrono::seconds(f[kExp].integer));
    if (!optional_time(f[kIat], out.iat) || !optional_time(f[kNbf], out.nbf)) return false;
    auto sub = uuid_field(f[kSub]);
    if (!sub) return false;
    out.sub = *sub;
    if (f[kTenant].kind != JsonKind::absent) {
        out.tenant_id = uuid_field(f[kTenant]);
        if (!out.tenant_id) return false;
    }
    if (f[kRole].kind != JsonKind::string || f[kJti].kind != JsonKind::string) return false;
    if (!claims_consistent(f[kRole].text, out.tenant_id.has_value(), f[kJti].text)) return false;
    out.role = f[kRole].text;
    out.jti = f[kJti].text;
    return true;
}

VerifyResult check_claims(Scratch& s, const VerifyOptions& options) {
    auto& f = s.claim_fields;
    if (!scan_object(s.payload, kClaimNames, f, s.scan)) return VerifyError::bad_claims;
    Claims claims;
    if (!extract_claims(f, claims)) return VerifyError::bad_claims;
    if (auto error = check_times(claims, options)) return *error;
    if (f[kIss].kind != JsonKind::string || f[kIss].text != options.issuer) return VerifyError::bad_issuer;
    if (f[kAud].kind != JsonKind::string || f[kAud].text != options.audience) return VerifyError::bad_audience;
    claims.iss = f[kIss].text;
    claims.aud = f[kAud].text;
    return claims;
}

}  // namespace

// Seconds are compared as integers so that no claim value, however large, can overflow.
std::optional<VerifyError> check_times(const Claims& c, const VerifyOptions& options) {
    using std::chrono::floor;
    const std::int64_t now = floor<std::chrono::seconds>(options.now).time_since_epoch().count();
    const std::int64_t skew = options.max_skew.count();
    if (seconds_of(c.exp) <= now - skew) return VerifyError::expired;
    if (c.nbf && seconds_of(*c.nbf) > now + skew) return VerifyError::not_yet_valid;
    if (c.iat && seconds_of(*c.iat) > now + skew) return VerifyError::not_yet_valid;
    return std::nullopt;
}

bool is_token_role(std::string_view role) {
    return role == "admin" || role == "dispatcher" || role == "viewer" || role == "platform_admin";
}

std::string new_jti() {
    std::array<std::uint8_t, 16> bytes{};
    util::random_bytes(bytes.data(), bytes.size());
    return util::base64url_encode(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
}

std::string sign(const Keyring& keyring, const Claims& claims) {
    if (!claims_consistent(claims.role, claims.tenant_id.has_value(), claims.jti))
        throw std::invalid_argument("token claims: unknown role, role and tenant_id disagree, or bad jti");
    const Key& key = keyring.signing_key();
    std::string token;
    token.reserve(512);
    util::append_base64url(token, header_json(key));
    token.push_back('.');
    util::append_base64url(token, claims_json(claims));
    const std::string signature = create_signature(key, token);
    token.push_back('.');
    util::append_base64url(token, signature);
    return token;
}

std::string_view to_string(VerifyError error) {
    switch (error) {
        case VerifyError::malformed:
            return "malformed";
        case VerifyError::too_long:
            return "too_long";
        case VerifyError::unknown_kid:
            return "unknown_kid";
        case VerifyError::alg_mismatch:
            return "alg_mismatch";
        case VerifyError::bad_signature:
            return "bad_signature";
        case VerifyError::expired:
            return "expired";
        case VerifyError::not_yet_valid:
            return "not_yet_valid";
        case VerifyError::bad_issuer:
            return "bad_issuer";
        case VerifyError::bad_audience:
            return "bad_audience";
        case VerifyError::bad_claims:
            return "bad_claims";
    }
    return "unknown";
}

VerifyResult verify(const Keyring& keyring, std::string_view token, const VerifyOptions& options) {
    if (token.size() > options.max_token_bytes) return VerifyError::too_long;  // before any decoding
    const auto segments = split_compact(token);
    if (!segments) return VerifyError::malformed;
    Scratch& s = scratch();
    if (!decode_segments(*segments, s)) return VerifyError::malformed;
    const auto key = select_key(keyring, s);
    if (const auto* error = std::get_if<VerifyError>(&key)) return *error;
    if (!signature_valid(*std::get<const Key*>(key), segments->signing_input, s.signature))
        return VerifyError::bad_signature;
    return check_claims(s, options);
}

namespace {

struct TokenHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

// Tokens that verified, most recently used first.
class VerifiedTokens {
  public:
    struct Entry {
        std::string token;
        std::shared_ptr<const Keyring> keyring;  // held: the address stays this keyring's
        std::string issuer;
        std::string audience;
        std::chrono::seconds max_skew{};
        std::chrono::system_clock::time_point verified_at;
        Claims claims;
    };

    const Entry* find(std::string_view token) {
        auto it = index_.find(token);
        if (it == index_.end()) return nullptr;
        lru_.splice(lru_.begin(), lru_, it->second);
        return &*it->second;
    }
    void erase(std::string_view token) {
        auto it = index_.find(token);
        if (it == index_.end()) return;
        // The index's key views the entry's token: drop the index entry while that string lives.
        auto entry = it->second;
        index_.erase(it);
        lru_.erase(entry);
    }
    void insert(Entry entry) {
        erase(entry.token);
        if (lru_.size() >= kVerifiedTokenCacheSize) {
            index_.erase(lru_.back().token);
            lru_.pop_back();
        }
        lru_.push_front(std::move(entry));
        index_.emplace(lru_.front().token, lru_.begin());
    }

  private:
    std::list<Entry> lru_;
    std::unordered_map<std::string_view, std::list<Entry>::iterator, TokenHash, std::equal_to<>> index_;
};

}  // namespace

VerifyResult verify_cached(const std::shared_ptr<const Keyring>& keyring, std::string_view token,
                           const VerifyOptions& options) {
    thread_local VerifiedTokens cache;
    if (token.size() <= options.max_token_bytes) {
        if (const auto* e = cache.find(token)) {
            const bool same = e->keyring.get() == keyring.get() && e->issuer == options.issuer &&
                              e->audience == options.audience && e->max_skew == options.max_skew;
            const auto age = options.now - e->verified_at;
            if (same && age >= std::chrono::system_clock::duration::zero() && age < kVerifiedTokenCacheTtl &&
                !check_times(e->claims, options))
                return e->claims;
            cache.erase(token);
        }
    }
    VerifyResult result = verify(*keyring, token, options);
    if (result.ok()) {
        VerifiedTokens::Entry entry;
        entry.token = std::string(token);
        entry.keyring = keyring;
        entry.issuer = std::string(options.issuer);
        entry.audience = std::string(options.audience);
        entry.max_skew = options.max_skew;
        entry.verified_at = options.now;
        entry.claims = result.claims();
        cache.insert(std::move(entry));
    }
    return result;
}

}  // namespace mtapi::auth
