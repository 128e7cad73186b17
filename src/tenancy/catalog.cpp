#include "tenancy/catalog.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <charconv>

#include "obs/log.hpp"
#include "util/uuid.hpp"

namespace mtapi::tenancy {
namespace {

namespace asio = boost::asio;
constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);

std::optional<long long> opt_int(const pg::Result& r, int row, int col) {
    if (r.is_null(row, col)) return std::nullopt;
    return r.int64(row, col);
}

std::optional<double> opt_double(const pg::Result& r, int row, int col) {
    if (r.is_null(row, col)) return std::nullopt;
    return std::stod(std::string(r.text(row, col)));
}

}  // namespace

Catalog::Catalog() {
    snapshot_.store(std::make_shared<const Snapshot>());
}

const char* Catalog::select_columns() {
    return "id::text, slug, name, plan, status, schema_name, role_name, schema_version, rate_limit_capacity, "
           "rate_limit_refill_per_sec, placement, "
           "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), "
           "to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')";
}

Tenant Catalog::from_row(const pg::Result& r, int row) {
    Tenant t;
    t.id_text = std::string(r.text(row, 0));
    if (auto id = util::parse_uuid(t.id_text)) t.id = *id;
    t.slug = std::string(r.text(row, 1));
    t.name = std::string(r.text(row, 2));
    t.plan = std::string(r.text(row, 3));
    t.status = std::string(r.text(row, 4));
    t.schema = std::string(r.text(row, 5));
    t.role = std::string(r.text(row, 6));
    t.schema_version = static_cast<int>(r.int64(row, 7));
    t.rate_limit_capacity = opt_int(r, row, 8);
    t.rate_limit_refill_per_sec = opt_double(r, row, 9);
    t.placement = std::string(r.text(row, 10));
    t.created_at = std::string(r.text(row, 11));
    t.updated_at = std::string(r.text(row, 12));
    return t;
}

TenantPtr Catalog::find_id(const std::string& id) const {
    auto snap = snapshot();
    auto it = snap->by_id.find(id);
    return it == snap->by_id.end() ? nullptr : it->second;
}

TenantPtr Catalog::find_slug(const std::string& slug) const {
    auto snap = snapshot();
    auto it = snap->by_slug.find(slug);
    return it == snap->by_slug.end() ? nullptr : it->second;
}

void Catalog::upsert(TenantPtr t) {
    // Copy-on-write; compare-exchange so a concurrent full reload is never overwritten by a
    // snapshot built from an older one.
    auto current = snapshot();
    for (;;) {
        auto next = std::make_shared<Snapshot>(*current);
        if (auto old = next->by_id.find(t->id_text); old != next->by_id.end()) next->by_slug.erase(old->second->slug);
        next->by_id[t->id_text] = t;
        next->by_slug[t->slug] = t;
        std::shared_ptr<const Snapshot> desired = std::move(next);
        if (snapshot_.compare_exchange_weak(current, desired, std::memory_order_acq_rel)) return;
    }
}

void Catalog::erase(const std::string& id) {
    auto current = snapshot();
    for (;;) {
        auto it = current->by_id.find(id);
        if (it == current->by_id.end()) return;
        auto next = std::make_shared<Snapshot>(*current);
        next->by_slug.erase(it->second->slug);
        next->by_id.erase(id);
        std::shared_ptr<const Snapshot> desired = std::move(next);
        if (snapshot_.compare_exchange_weak(current, desired, std::memory_order_acq_rel)) return;
    }
}

asio::awaitable<TenantPtr> Catalog::lookup(pg::Pool& pool, const std::string& column, const std::string& value) {
    std::string sql = std::string("SELECT ") + select_columns() + " FROM platform.tenants WHERE " + column + " = $1";
    auto lease = co_await pool.acquire();
    pg::Query q{sql, {value}, true};
    auto r = co_await lease->query(std::move(q), pg::Clock::now() + pool.options().acquire_timeout);
    if (r.rows() == 0) co_return nullptr;
    auto t = std::make_shared<const Tenant>(from_row(r, 0));
    upsert(t);
    co_return t;
}

asio::awaitable<TenantPtr> Catalog::lookup_id(pg::Pool& pool, const std::string& id) {
    if (auto t = find_id(id)) co_return t;
    if (!util::parse_uuid(id)) co_return nullptr;
    co_return co_await lookup(pool, "id", id);
}

asio::awaitable<TenantPtr> Catalog::lookup_slug(pg::Pool& pool, const std::string& slug) {
    if (auto t = find_slug(slug)) co_return t;
    co_return co_await lookup(pool, "slug", slug);
}

asio::awaitable<void> Catalog::reload(pg::Connection& conn, pg::Deadline deadline) {
    std::string sql = std::string("SELECT ") + select_columns() + " FROM platform.tenants";
    pg::Query q{sql, {}, true};
    auto r = co_await conn.query(std::move(q), deadline);
    auto next = std::make_shared<Snapshot>();
    for (int i = 0; i < r.rows(); ++i) {
        auto t = std::make_shared<const Tenant>(from_row(r, i));
        next->by_id[t->id_text] = t;
        next->by_slug[t->slug] = t;
    }
    publish(std::move(next));
}

asio::awaitable<void> Catalog::run_refresher(asio::io_context& ioc, pg::ConnectOptions options,
                                             std::shared_ptr<std::atomic<bool>> stop) {
    asio::steady_timer backoff(ioc);
    std::chrono::milliseconds delay{100};
    while (!*stop) {
        try {
            auto conn = co_await pg::Connection::connect(ioc, options);
            pg::Query listen{"LISTEN mtapi_tenants", {}, false};
            co_await conn->query(std::move(listen), pg::Clock::now() + std::chrono::seconds(5));
            co_await reload(*conn, pg::Clock::now() + std::chrono::seconds(10));
            delay = std::chrono::milliseconds(100);
            auto next_full = pg::Clock::now() + full_reload_every;
            while (!*stop) {
                auto wake = std::min(next_full, pg::Clock::now() + std::chrono::seconds(1));
                if (!co_await conn->wait_readable(wake)) throw pg::Error(pg::ErrorKind::connection, "listener lost");
                bool changed = !conn->take_notifications().empty();
                if (changed || pg::Clock::now() >= next_full) {
                    co_await reload(*conn, pg::Clock::now() + std::chrono::seconds(10));
                    next_full = pg::Clock::now() + full_reload_every;
                }
            }
        } catch (const std::exception& e) {
            if (*stop) break;
            obs::warn("tenant catalog refresher lost its connection", {{"error", std::string_view(e.what())}});
        }
        backoff.expires_after(delay);
        co_await backoff.async_wait(nothrow);
        delay = std::min(delay * 2, std::chrono::milliseconds(5000));
    }
}

}  // namespace mtapi::tenancy
