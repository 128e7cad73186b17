#include "pg/connection.hpp"

#include <libpq-fe.h>
#include <poll.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <list>
#include <unordered_map>

namespace mtapi::pg {
namespace {

namespace asio = boost::asio;
constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);

std::string field(const PGresult* res, int code) {
    const char* v = PQresultErrorField(res, code);
    return v == nullptr ? std::string() : std::string(v);
}

Error error_from_result(const PGresult* res) {
    std::string sqlstate = field(res, PG_DIAG_SQLSTATE);
    std::string message = field(res, PG_DIAG_MESSAGE_PRIMARY);
    if (message.empty()) message = PQresultErrorMessage(res);
    return Error(kind_of_sqlstate(sqlstate, message), message, sqlstate, field(res, PG_DIAG_CONSTRAINT_NAME),
                 field(res, PG_DIAG_COLUMN_NAME));
}

void ignore_notice(void*, const char*) {}

struct ConnDeleter {
    void operator()(PGconn* c) const {
        if (c != nullptr) PQfinish(c);
    }
};

// Hashes std::string and std::string_view alike, so lookups need no temporary string.
struct StringHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

// Per-connection LRU of named prepared statements, keyed by scope and SQL text ("<scope>\0<sql>";
// a scope never contains NUL, nor does SQL that libpq can send).
class StatementCache {
  public:
    explicit StatementCache(std::size_t capacity) : capacity_(capacity) {}

    // The cache key of `sql` under `scope`, built in a buffer reused from call to call.
    std::string_view key(std::string_view scope, std::string_view sql) {
        key_.assign(scope);
        key_.push_back('\0');
        key_.append(sql);
        return key_;
    }

    const std::string* find(std::string_view key) {
        auto it = index_.find(key);
        if (it == index_.end()) return nullptr;
        lru_.splice(lru_.begin(), lru_, it->second);
        return &it->second->name;
    }
    // Records a statement the server has prepared; returns the name evicted to make room, if any.
    std::optional<std::string> insert(std::string key, std::string name) {
        std::optional<std::string> evicted;
        if (capacity_ > 0 && lru_.size() >= capacity_) {
            evicted = lru_.back().name;
            index_.erase(lru_.back().key);
            lru_.pop_back();
        }
        lru_.push_front({key, std::move(name)});
        index_[std::move(key)] = lru_.begin();
        return evicted;
    }
    std::optional<std::string> erase(std::string_view key) {
        auto it = index_.find(key);
        if (it == index_.end()) return std::nullopt;
        std::string name = it->second->name;
        lru_.erase(it->second);
        index_.erase(it);
        return name;
    }
    std::size_t size() const { return lru_.size(); }
    std::string next_name() { return "mtapi_" + std::to_string(++counter_); }

  private:
    struct Entry {
        std::string key;
        std::string name;
    };
    std::size_t capacity_;
    std::list<Entry> lru_;
    std::unordered_map<std::string, std::list<Entry>::iterator, StringHash, std::equal_to<>> index_;
    std::string key_;
    std::uint64_t counter_ = 0;
};

}  // namespace

struct Connection::Impl : std::enable_shared_from_this<Connection::Impl> {
    Impl(asio::io_context& ioc, std::size_t cache_size) : ioc(ioc), sd(ioc), timer(ioc), cache(cache_size) {}
    ~Impl() { close(); }

    asio::io_context& ioc;
    std::unique_ptr<PGconn, ConnDeleter> conn;
    asio::posix::stream_descriptor sd;
    asio::steady_timer timer;
    StatementCache cache;
    std::vector<std::string> to_deallocate;
    bool broken = false;
    bool timed_out = false;
    std::uint64_t generation = 0;

    // The descriptor belongs to libpq: release it from Asio before PQfinish closes it.
    void close() {
        if (sd.is_open()) {
            boost::system::error_code ignored;
            sd.cancel(ignored);
            sd.release();
        }
        conn.reset();
    }

    void track_socket() {
        int fd = PQsocket(conn.get());
        if (sd.is_open() && sd.native_handle() == fd) return;
        if (sd.is_open()) sd.release();
        if (fd >= 0) sd.assign(fd);
    }

    void arm_deadline(Deadline deadline) {
        ++generation;
        timed_out = false;
        timer.expires_at(deadline);
        timer.async_wait([weak = weak_from_this(), gen = generation](const boost::system::error_code& ec) {
            if (ec) return;
            auto self = weak.lock();
            if (!self || self->generation != gen) return;
            self->timed_out = true;
            boost::system::error_code ignored;
            if (self->sd.is_open()) self->sd.cancel(ignored);
        });
    }
    void disarm_deadline() {
        ++generation;
        timer.cancel();
    }

    [[noreturn]] void fail_link(const std::string& what) {
        broken = true;
        std::string msg = conn ? PQerrorMessage(conn.get()) : "";
        while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' '))
            msg.pop_back();
        if (timed_out) throw Error(ErrorKind::timeout, "PostgreSQL operation deadline exceeded");
        throw Error(ErrorKind::connection, what + (msg.empty() ? "" : ": " + msg));
    }

    asio::awaitable<void> wait(asio::posix::stream_descriptor::wait_type type) {
        // The deadline may have fired while no wait was pending (nothing to cancel then).
        if (timed_out) fail_link("deadline exceeded");
        auto [ec] = co_await sd.async_wait(type, nothrow);
        if (ec || timed_out) fail_link(ec == asio::error::operation_aborted ? "operation cancelled" : ec.message());
    }

    asio::awaitable<void> flush() {
        for (;;) {
            int r = PQflush(conn.get());
            if (r == 0) co_return;
            if (r < 0) fail_link("write failed");
            // Wait until the socket can take more; read meanwhile so the server never blocks on us.
            co_await wait(asio::posix::stream_descriptor::wait_write);
            if (PQconsumeInput(conn.get()) == 0) fail_link("read failed");
        }
    }

    // Reads one statement's results up to its terminating nullptr, discarding them.
    asio::awaitable<void> drain_statement() {
        for (;;) {
            PGresult* r = co_await next_result();
            if (r == nullptr) co_return;
            PQclear(r);
        }
    }

    // Reads up to and including the Sync result that closes a segment. Anything but results
    // and single end-of-statement markers before it means the link is out of step.
    asio::awaitable<void> read_sync() {
        int nulls = 0;
        for (;;) {
            PGresult* r = co_await next_result();
            if (r == nullptr) {
                if (++nulls > 1 || PQstatus(conn.get()) == CONNECTION_BAD) fail_link("connection lost");
                continue;
            }
            nulls = 0;
            bool sync = PQresultStatus(r) == PGRES_PIPELINE_SYNC;
            PQclear(r);
            if (sync) co_return;
        }
    }

    // Next result of the current pipeline; nullptr marks the end of one statement's results.
    asio::awaitable<PGresult*> next_result() {
        for (;;) {
            if (PQisBusy(conn.get()) == 0) co_return PQgetResult(conn.get());
            co_await wait(asio::posix::stream_descriptor::wait_read);
            if (PQconsumeInput(conn.get()) == 0) fail_link("read failed");
        }
    }
};

Connection::Connection(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

Connection::~Connection() = default;

asio::awaitable<std::unique_ptr<Connection>> Connection::connect(asio::io_context& ioc, const ConnectOptions& options) {
    char* err = nullptr;
    std::unique_ptr<PQconninfoOption, decltype(&PQconninfoFree)> parsed(PQconninfoParse(options.url.c_str(), &err),
                                                                        &PQconninfoFree);
    if (!parsed) {
        std::string msg = err != nullptr ? err : "invalid connection string";
        if (err != nullptr) PQfreemem(err);
        throw Error(ErrorKind::connection, "invalid database URL: " + msg);
    }
    std::vector<std::string> keys;
    std::vector<std::string> values;
    std::string host;
    std::string port = "5432";
    bool has_hostaddr = false;
    for (auto* o = parsed.get(); o->keyword != nullptr; ++o) {
        if (o->val == nullptr) continue;
        std::string k = o->keyword;
        if (k == "host") host = o->val;
        if (k == "port") port = o->val;
        if (k == "hostaddr") has_hostaddr = true;
        if (k == "application_name" || k == "connect_timeout") continue;
        keys.push_back(k);
        values.emplace_back(o->val);
    }
    // Resolve a single TCP host with Asio so PQconnectPoll never blocks on DNS.
    if (!has_hostaddr && !host.empty() && host.front() != '/' && host.find(',') == std::string::npos) {
        asio::ip::tcp::resolver resolver(ioc);
        auto [ec, results] = co_await resolver.async_resolve(host, port, nothrow);
        if (ec || results.empty()) throw Error(ErrorKind::connection, "cannot resolve database host '" + host + "'");
        keys.emplace_back("hostaddr");
        values.push_back(results.begin()->endpoint().address().to_string());
    }
    keys.emplace_back("application_name");
    values.push_back(options.application_name);

    std::vector<const char*> kw;
    std::vector<const char*> vals;
    for (std::size_t i = 0; i < keys.size(); ++i) {
        kw.push_back(keys[i].c_str());
        vals.push_back(values[i].c_str());
    }
    kw.push_back(nullptr);
    vals.push_back(nullptr);

    auto impl = std::make_shared<Impl>(ioc, options.statement_cache_size);
    impl->conn.reset(PQconnectStartParams(kw.data(), vals.data(), 0));
    if (!impl->conn) throw Error(ErrorKind::connection, "out of memory starting a connection");
    if (PQstatus(impl->conn.get()) == CONNECTION_BAD) impl->fail_link("cannot connect");
    PQsetNoticeProcessor(impl->conn.get(), ignore_notice, nullptr);

    impl->arm_deadline(Clock::now() + options.connect_timeout);
    PostgresPollingStatusType poll = PGRES_POLLING_WRITING;
    while (poll != PGRES_POLLING_OK) {
        if (poll == PGRES_POLLING_FAILED) impl->fail_link("cannot connect");
        impl->track_socket();
        co_await impl->wait(poll == PGRES_POLLING_READING ? asio::posix::stream_descriptor::wait_read
                                                          : asio::posix::stream_descriptor::wait_write);
        poll = PQconnectPoll(impl->conn.get());
    }
    impl->disarm_deadline();
    impl->track_socket();
    if (PQsetnonblocking(impl->conn.get(), 1) != 0) impl->fail_link("cannot switch to non-blocking mode");
    if (PQenterPipelineMode(impl->conn.get()) != 1) impl->fail_link("cannot enter pipeline mode");
    co_return std::unique_ptr<Connection>(new Connection(std::move(impl)));
}

asio::awaitable<std::vector<Result>> Connection::execute(std::span<const Query> batch, Deadline deadline,
                                                         std::string_view scope) {
    std::vector<const Query*> pointers;
    pointers.reserve(batch.size());
    for (const Query& q : batch)
        pointers.push_back(&q);
    std::span<const Query* const> view(pointers);
    co_return co_await execute(view, deadline, scope);
}

asio::awaitable<std::vector<Result>> Connection::execute(std::span<const Query* const> batch, Deadline deadline,
                                                         std::string_view scope) {
    Impl& c = *impl_;
    if (c.broken || !c.conn) throw Error(ErrorKind::connection, "connection is closed");
    PGconn* conn = c.conn.get();

    // What the server will answer, in order: our own housekeeping and the caller's statements.
    enum class Slot : unsigned char { prepare, statement };
    struct Expect {
        Slot slot;
        std::size_t query;  // index into batch (prepare/statement)
        std::string name;   // prepared statement name (prepare)
        std::string key;    // cache key (prepare)
    };
    std::vector<Expect> expected;
    expected.reserve(batch.size() + c.to_deallocate.size());

    auto send_fail = [&] { c.fail_link("send failed"); };
    // Statements evicted from the cache are deallocated in a segment of their own (own Sync), and
    // only outside a transaction block: their failure can then never abort the caller's work.
    std::size_t deallocations = 0;
    if (!c.to_deallocate.empty() && PQtransactionStatus(conn) == PQTRANS_IDLE) {
        for (auto& name : c.to_deallocate) {
            std::string sql = "DEALLOCATE " + name;
            if (PQsendQueryParams(conn, sql.c_str(), 0, nullptr, nullptr, nullptr, nullptr, 0) != 1) send_fail();
            ++deallocations;
        }
        c.to_deallocate.clear();
        if (PQpipelineSync(conn) != 1) send_fail();
    }

    std::vector<const char*> values;
    std::vector<std::string> pending_names(batch.size());
    for (std::size_t i = 0; i < batch.size(); ++i) {
        const Query& q = *batch[i];
        values.clear();
        for (const auto& p : q.params)
            values.push_back(p ? p->c_str() : nullptr);
        const int n = static_cast<int>(values.size());
        const std::string& sql = q.sql;
        if (q.prepare) {
            const std::string* name = c.cache.find(c.cache.key(scope, q.sql));
            std::string fresh;
            if (name == nullptr) {
                // Prepared in this same batch earlier? Reuse that name.
                for (std::size_t j = 0; j < i && name == nullptr; ++j)
                    if (!pending_names[j].empty() && batch[j]->sql == q.sql) name = &pending_names[j];
            }
            if (name == nullptr) {
                fresh = c.cache.next_name();
                if (PQsendPrepare(conn, fresh.c_str(), sql.c_str(), n, nullptr) != 1) send_fail();
                expected.push_back({Slot::prepare, i, fresh, std::string(c.cache.key(scope, q.sql))});
                pending_names[i] = fresh;
                name = &pending_names[i];
            }
            if (PQsendQueryPrepared(conn, name->c_str(), n, values.data(), nullptr, nullptr, 0) != 1) send_fail();
        } else {
            if (PQsendQueryParams(conn, sql.c_str(), n, nullptr, values.data(), nullptr, nullptr, 0) != 1) send_fail();
        }
        expected.push_back({Slot::statement, i, {}, {}});
    }
    if (PQpipelineSync(conn) != 1) send_fail();

    c.arm_deadline(deadline);
    co_await c.flush();

    if (deallocations > 0) {
        for (std::size_t i = 0; i < deallocations; ++i)
            co_await c.drain_statement();
        co_await c.read_sync();
    }

    std::vector<Result> results(batch.size());
    std::optional<Error> first_error;
    for (const auto& e : expected) {
        Result last;
        for (;;) {
            PGresult* r = co_await c.next_result();
            if (r == nullptr) break;
            last = Result(r);
        }
        ExecStatusType st = last.get() == nullptr ? PGRES_FATAL_ERROR : PQresultStatus(last.get());
        bool failed = st == PGRES_FATAL_ERROR || st == PGRES_PIPELINE_ABORTED || st == PGRES_BAD_RESPONSE;
        if (failed && st == PGRES_FATAL_ERROR && last.get() != nullptr && !first_error) {
            first_error = error_from_result(last.get());
        }
        if (e.slot == Slot::prepare) {
            if (!failed) {
                if (auto evicted = c.cache.insert(e.key, e.name)) c.to_deallocate.push_back(std::move(*evicted));
            }
        } else if (e.slot == Slot::statement) {
            if (failed && first_error && first_error->kind() == ErrorKind::cached_plan_changed) {
                // The tables changed under a cached plan: forget it so the next use prepares afresh.
                if (auto name = c.cache.erase(c.cache.key(scope, batch[e.query]->sql)))
                    c.to_deallocate.push_back(std::move(*name));
            }
            results[e.query] = std::move(last);
        }
    }
    co_await c.read_sync();
    c.disarm_deadline();
    if (PQstatus(conn) == CONNECTION_BAD) c.fail_link("connection lost");
    if (first_error) {
        if (first_error->kind() == ErrorKind::connection) c.broken = true;
        throw *first_error;
    }
    co_return results;
}

asio::awaitable<Result> Connection::query(Query q, Deadline deadline) {
    auto results = co_await execute(std::span<const Query>(&q, 1), deadline);
    co_return std::move(results.front());
}

asio::awaitable<void> Connection::execute_script(std::string_view sql, Deadline deadline) {
    Impl& c = *impl_;
    if (c.broken || !c.conn) throw Error(ErrorKind::connection, "connection is closed");
    PGconn* conn = c.conn.get();
    if (PQexitPipelineMode(conn) != 1) c.fail_link("cannot leave pipeline mode");
    std::string text(sql);
    if (PQsendQuery(conn, text.c_str()) != 1) c.fail_link("send failed");
    c.arm_deadline(deadline);
    co_await c.flush();
    std::optional<Error> first_error;
    for (;;) {
        PGresult* r = co_await c.next_result();
        if (r == nullptr) break;
        Result res(r);
        if (PQresultStatus(r) == PGRES_FATAL_ERROR && !first_error) first_error = error_from_result(r);
    }
    c.disarm_deadline();
    if (PQenterPipelineMode(conn) != 1) c.fail_link("cannot enter pipeline mode");
    if (first_error) throw *first_error;
}

bool Connection::broken() const {
    return impl_->broken || !impl_->conn || PQstatus(impl_->conn.get()) == CONNECTION_BAD;
}

bool Connection::in_transaction() const {
    if (!impl_->conn) return false;
    auto st = PQtransactionStatus(impl_->conn.get());
    return st == PQTRANS_INTRANS || st == PQTRANS_INERROR || st == PQTRANS_ACTIVE;
}

bool Connection::check_alive() {
    if (broken()) return false;
    // A server that ends a session sends a FATAL message and then closes: the first read only
    // consumes the message, a following one sees the close. Read while the socket has data.
    PGconn* conn = impl_->conn.get();
    for (int i = 0; i < 16; ++i) {
        pollfd p{PQsocket(conn), POLLIN, 0};
        if (::poll(&p, 1, 0) <= 0) break;
        if (PQconsumeInput(conn) == 0 || PQstatus(conn) == CONNECTION_BAD) {
            impl_->broken = true;
            return false;
        }
    }
    if (PQstatus(conn) == CONNECTION_BAD) {
        impl_->broken = true;
        return false;
    }
    return true;
}

std::vector<Connection::Notification> Connection::take_notifications() {
    std::vector<Notification> out;
    if (!impl_->conn) return out;
    while (PGnotify* n = PQnotifies(impl_->conn.get())) {
        out.push_back({n->relname, n->extra});
        PQfreemem(n);
    }
    return out;
}

asio::awaitable<bool> Connection::wait_readable(Deadline deadline) {
    Impl& c = *impl_;
    if (c.broken || !c.conn) co_return false;
    c.arm_deadline(deadline);
    auto [ec] = co_await c.sd.async_wait(asio::posix::stream_descriptor::wait_read, nothrow);
    bool timed_out = c.timed_out;
    c.disarm_deadline();
    if (ec && !timed_out) {
        c.broken = true;
        co_return false;
    }
    if (!ec && PQconsumeInput(c.conn.get()) == 0) {
        c.broken = true;
        co_return false;
    }
    co_return true;
}

int Connection::backend_pid() const {
    return impl_->conn ? PQbackendPID(impl_->conn.get()) : 0;
}

std::size_t Connection::cached_statements() const {
    return impl_->cache.size();
}

}  // namespace mtapi::pg
