#include "tenancy/tenant_tx.hpp"

#include <string>
#include <unordered_map>

#include "obs/log.hpp"

namespace mtapi::tenancy {
namespace {

namespace asio = boost::asio;
constexpr std::string_view kBind = "SELECT set_config('search_path', $1, true), set_config('role', $2, true)";
constexpr std::string_view kPrincipal = "SELECT mtapi_principal($1::uuid, $2::text[])";

const pg::Query& begin_query() {
    static const pg::Query q{"BEGIN", {}, false};
    return q;
}
const pg::Query& commit_query() {
    static const pg::Query q{"COMMIT", {}, false};
    return q;
}

struct StringHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};
// Distinct statement texts remembered per thread; handler SQL is fixed text, so a full table
// means something builds SQL dynamically: start over rather than grow.
constexpr std::size_t kVerdictCacheSize = 1024;

}  // namespace

std::string schema_name_for(const util::Uuid& id) {
    return "tenant_" + util::to_hex(id);
}

bool rebinds_session(std::string_view sql) {
    // Lower-case with runs of whitespace folded to one space.
    std::string text;
    text.reserve(sql.size());
    for (char c : sql) {
        char l = (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
        bool space = l == ' ' || l == '\t' || l == '\n' || l == '\r' || l == '\f';
        if (space) {
            if (!text.empty() && text.back() != ' ') text.push_back(' ');
        } else {
            text.push_back(l);
        }
    }
    // Only data statements: no SET/RESET, transaction control, DDL, DO blocks or comments that
    // could hide what follows.
    static constexpr std::string_view kAllowedStarts[] = {"select ", "insert ", "update ", "delete ", "with "};
    bool allowed = false;
    for (auto start : kAllowedStarts)
        allowed = allowed || text.compare(0, start.size(), start) == 0;
    if (!allowed) return true;
    // Functions that change session state or reach outside the database.
    static constexpr std::string_view kForbidden[] = {"set_config", "set_user", "dblink",   "lo_import",
                                                      "lo_export",  "pg_read_", "pg_write_"};
    for (auto f : kForbidden)
        if (text.find(f) != std::string::npos) return true;
    return false;
}

bool rebinds_session_cached(std::string_view sql) {
    thread_local std::unordered_map<std::string, bool, StringHash, std::equal_to<>> verdicts;
    if (auto it = verdicts.find(sql); it != verdicts.end()) return it->second;
    bool verdict = rebinds_session(sql);
    if (verdicts.size() >= kVerdictCacheSize) verdicts.clear();
    verdicts.emplace(std::string(sql), verdict);
    return verdict;
}

asio::awaitable<std::vector<pg::Result>> TenantTx::run(std::span<const pg::Query> batch, bool commit) {
    if (finished_) throw pg::Error(pg::ErrorKind::other, "tenant transaction already finished");
    for (const auto& q : batch) {
        if (rebinds_session_cached(q.sql))
            throw pg::Error(pg::ErrorKind::insufficient_privilege, "statement may not change the tenant binding",
                            "42501");
    }
    // The statements are sent from where they are: the caller's batch, this transaction's own.
    std::vector<const pg::Query*> full;
    full.reserve(batch.size() + 4);
    std::size_t offset = 0;
    pg::Query bind;
    if (!begun_) {
        full.push_back(&begin_query());
        // pg_temp last: a temporary object can never shadow a tenant table (TEMP is revoked from
        // PUBLIC as well).
        bind.sql = kBind;
        bind.params.reserve(2);
        bind.params.emplace_back(schema_ + ", pg_temp");
        bind.params.emplace_back(role_);
        full.push_back(&bind);
        offset = 2;
        if (!principal_.params.empty()) {
            principal_.sql = kPrincipal;
            full.push_back(&principal_);
            offset = 3;
        }
        conn_.set_affinity(schema_);
    }
    for (const auto& q : batch)
        full.push_back(&q);
    if (commit) full.push_back(&commit_query());
    // Count the transaction as open before sending: if anything fails, abort() rolls back.
    begun_ = true;
    // Prepared statements are kept per tenant on the connection (see Connection::execute): a
    // tenant's plans survive the connection serving other tenants in between.
    std::span<const pg::Query* const> view(full);
    auto results = co_await conn_.execute(view, deadline_, schema_);
    if (commit) finished_ = true;
    std::vector<pg::Result> out;
    out.reserve(batch.size());
    for (std::size_t i = 0; i < batch.size(); ++i)
        out.push_back(std::move(results[offset + i]));
    co_return out;
}

asio::awaitable<std::vector<pg::Result>> TenantTx::execute(std::span<const pg::Query> batch) {
    co_return co_await run(batch, false);
}

asio::awaitable<pg::Result> TenantTx::query(pg::Query q) {
    auto r = co_await run(std::span<const pg::Query>(&q, 1), false);
    co_return std::move(r.front());
}

asio::awaitable<pg::Result> TenantTx::query_and_commit(pg::Query q) {
    auto r = co_await run(std::span<const pg::Query>(&q, 1), true);
    co_return std::move(r.front());
}

asio::awaitable<void> TenantTx::commit() {
    if (finished_) co_return;
    if (!begun_) {
        // Nothing ran. The principal check still must: a handler that touches no table is
        // authorised like any other.
        if (principal_.params.empty()) {
            finished_ = true;
            co_return;
        }
        co_await run({}, true);
        co_return;
    }
    pg::Query c{"COMMIT", {}, false};
    co_await conn_.execute(std::span<const pg::Query>(&c, 1), deadline_);
    finished_ = true;
}

asio::awaitable<void> TenantTx::abort() noexcept {
    if (finished_) co_return;
    finished_ = true;
    if (!begun_ || conn_.broken() || !conn_.in_transaction()) co_return;
    try {
        pg::Query r{"ROLLBACK", {}, false};
        co_await conn_.execute(std::span<const pg::Query>(&r, 1), deadline_);
    } catch (const std::exception& e) {
        // The pool drops connections still in a transaction; log and carry on.
        obs::warn("rollback failed", {{"error", std::string_view(e.what())}});
    }
}

}  // namespace mtapi::tenancy
