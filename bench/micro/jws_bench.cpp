// Micro-benchmarks of access-token work on the request path: verifying HS256 and EdDSA tokens
// and signing an HS256 token (login).

#include <benchmark/benchmark.h>

#include "auth/jws.hpp"
#include "auth/keyring.hpp"
#include "util/uuid.hpp"

using namespace mtapi;

namespace {

auth::Claims bench_claims() {
    auth::Claims c;
    c.iss = "mtapi";
    c.aud = "mtapi";
    c.sub = util::uuid_v7();
    c.tenant_id = util::uuid_v7();
    c.role = "dispatcher";
    c.iat = std::chrono::floor<std::chrono::seconds>(std::chrono::system_clock::now());
    c.exp = *c.iat + auth::kAccessTokenTtl;
    c.jti = auth::new_jti();
    return c;
}

std::shared_ptr<const auth::Keyring> hs_keyring() {
    std::vector<auth::Key> keys;
    keys.push_back(auth::Key::hs256("k1", auth::KeyState::signing, std::string(32, 's')));
    return std::make_shared<const auth::Keyring>(std::move(keys));
}

std::shared_ptr<const auth::Keyring> ed_keyring() {
    std::vector<auth::Key> keys;
    keys.push_back(auth::Key::ed25519("e1", auth::KeyState::signing,
                                      auth::PkeyPtr(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"))));
    return std::make_shared<const auth::Keyring>(std::move(keys));
}

void verify_loop(benchmark::State& state, const auth::Keyring& keyring) {
    const std::string token = auth::sign(keyring, bench_claims());
    auth::VerifyOptions options;
    options.issuer = "mtapi";
    options.audience = "mtapi";
    for (auto _ : state) {
        auto result = auth::verify(keyring, token, options);
        if (!result) state.SkipWithError("token did not verify");
        benchmark::DoNotOptimize(result);
    }
    state.counters["token_bytes"] = static_cast<double>(token.size());
}

void BM_VerifyHS256(benchmark::State& state) {
    verify_loop(state, *hs_keyring());
}
BENCHMARK(BM_VerifyHS256);

void BM_VerifyEdDSA(benchmark::State& state) {
    verify_loop(state, *ed_keyring());
}
BENCHMARK(BM_VerifyEdDSA);

// Rejections that must stay cheap: a bad signature and an oversized token.
void BM_VerifyHS256BadSignature(benchmark::State& state) {
    auto keyring = hs_keyring();
    std::string token = auth::sign(*keyring, bench_claims());
    token[token.size() - 5] = token[token.size() - 5] == 'A' ? 'B' : 'A';
    auth::VerifyOptions options;
    options.issuer = "mtapi";
    options.audience = "mtapi";
    for (auto _ : state)
        benchmark::DoNotOptimize(auth::verify(*keyring, token, options));
}
BENCHMARK(BM_VerifyHS256BadSignature);

void BM_SignHS256(benchmark::State& state) {
    auto keyring = hs_keyring();
    const auth::Claims claims = bench_claims();
    for (auto _ : state)
        benchmark::DoNotOptimize(auth::sign(*keyring, claims));
}
BENCHMARK(BM_SignHS256);

void BM_SignEdDSA(benchmark::State& state) {
    auto keyring = ed_keyring();
    const auth::Claims claims = bench_claims();
    for (auto _ : state)
        benchmark::DoNotOptimize(auth::sign(*keyring, claims));
}
BENCHMARK(BM_SignEdDSA);

}  // namespace
