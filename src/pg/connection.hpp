#pragma once
// One PostgreSQL connection driven by Asio: non-blocking libpq in pipeline mode on the shard's
// io_context. A batch of statements goes out in one write with one Sync and comes back in one
// read where the network allows; named prepared statements are cached per connection, keyed by
// a caller-chosen scope and the SQL text.

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "pg/error.hpp"
#include "pg/result.hpp"

namespace mtapi::pg {

using Clock = std::chrono::steady_clock;
using Deadline = Clock::time_point;

// A statement with text-format parameters ($1, $2, …); nullopt binds SQL NULL.
struct Query {
    std::string sql;  // owned: a batch may outlive the expression that built the text
    std::vector<std::optional<std::string>> params;
    bool prepare = true;  // false: unnamed statement (DDL, one-off SQL, multi-statement text)
};

struct ConnectOptions {
    std::string url;  // libpq URL or key=value string; the host is resolved by Asio
    std::chrono::milliseconds connect_timeout{5000};
    std::size_t statement_cache_size = 256;
    std::string application_name = "mtapi";
};

class Connection {
  public:
    ~Connection();
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    // Connects without blocking the thread; throws Error(connection/timeout).
    static boost::asio::awaitable<std::unique_ptr<Connection>> connect(boost::asio::io_context& ioc,
                                                                       const ConnectOptions& options);

    // Sends every statement, one Sync, and returns one Result per statement in order. When a
    // statement fails, the server skips the rest of the batch: the first failure is thrown as
    // pg::Error after the batch is fully read, so the connection stays usable. Link failures and
    // deadline expiry throw Error(connection/timeout) and leave the connection broken().
    //
    // `scope` keys the prepared-statement cache together with the SQL text: the same text under
    // another scope is prepared as a statement of its own. PostgreSQL re-analyses and re-plans a
    // prepared statement whenever search_path differs from the one it was planned under, so
    // TenantTx passes the tenant's schema: each tenant then keeps its own plans on a connection
    // that serves several tenants in turn, instead of every tenant switch re-planning.
    boost::asio::awaitable<std::vector<Result>> execute(std::span<const Query> batch, Deadline deadline,
                                                        std::string_view scope = {});
    // The same for statements held elsewhere (no copies); the pointers must stay valid until the
    // call completes.
    boost::asio::awaitable<std::vector<Result>> execute(std::span<const Query* const> batch, Deadline deadline,
                                                        std::string_view scope = {});

    // Convenience for one statement.
    boost::asio::awaitable<Result> query(Query q, Deadline deadline);

    // Plain simple-protocol text (may hold several statements; no parameters). Leaves pipeline
    // mode for the call, for migrations and other scripts.
    boost::asio::awaitable<void> execute_script(std::string_view sql, Deadline deadline);

    bool broken() const;
    // Inside a transaction block (idle in transaction, or failed in one)?
    bool in_transaction() const;
    // Non-blocking check used before reuse: reads what the server sent while idle (an admin
    // shutdown or a terminated backend) and reports whether the connection is still good.
    bool check_alive();

    // Notifications received from LISTEN, drained in arrival order.
    struct Notification {
        std::string channel;
        std::string payload;
    };
    std::vector<Notification> take_notifications();
    // Waits until the server sends something (a notification), the deadline passes, or the link
    // fails. Returns false on failure.
    boost::asio::awaitable<bool> wait_readable(Deadline deadline);

    int backend_pid() const;
    std::size_t cached_statements() const;

    // What the connection last served (TenantTx records the tenant's schema when it binds), for
    // Pool::acquire's affinity: a connection that served the same tenant before has that
    // tenant's prepared statements and plans. Only a preference, never a binding: every tenant
    // transaction binds its tenant afresh.
    const std::string& affinity() const { return affinity_; }
    void set_affinity(std::string_view key) {
        if (affinity_ != key) affinity_.assign(key);
    }

  private:
    struct Impl;
    explicit Connection(std::shared_ptr<Impl> impl);
    std::shared_ptr<Impl> impl_;  // shared so deadline callbacks can tell that it is gone
    std::string affinity_;
};

}  // namespace mtapi::pg
