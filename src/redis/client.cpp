#include "redis/client.hpp"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/url/parse.hpp>
#include <charconv>
#include <cstdio>
#include <deque>
#include <optional>

#include "obs/log.hpp"
#include "obs/metrics.hpp"
#include "util/uuid.hpp"

namespace mtapi::redis {
namespace {

namespace asio = boost::asio;
constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);

Reply copy_reply(const redisReply& r) {
    Reply out;
    switch (r.type) {
        case REDIS_REPLY_INTEGER:
            out.type = Reply::Type::integer;
            out.integer = r.integer;
            break;
        case REDIS_REPLY_STRING:
            out.type = Reply::Type::string;
            out.str.assign(r.str, r.len);
            break;
        case REDIS_REPLY_STATUS:
            out.type = Reply::Type::status;
            out.str.assign(r.str, r.len);
            break;
        case REDIS_REPLY_ERROR:
            out.type = Reply::Type::error;
            out.str.assign(r.str, r.len);
            break;
        case REDIS_REPLY_ARRAY:
            out.type = Reply::Type::array;
            out.elements.reserve(r.elements);
            for (std::size_t i = 0; i < r.elements; ++i)
                out.elements.push_back(copy_reply(*r.element[i]));
            break;
        default:
            out.type = Reply::Type::nil;
            break;
    }
    return out;
}

// Counters written by the client's own thread and read by /metrics from any thread.
struct AtomicStats {
    std::atomic<std::uint64_t> commands{0};
    std::atomic<std::uint64_t> latency_sum_us{0};
    std::array<std::atomic<std::uint64_t>, ClientStats::kBuckets> latency_buckets{};
    std::atomic<std::uint64_t> reply_errors{0};
    std::atomic<std::uint64_t> connection_errors{0};
    std::atomic<std::uint64_t> timeouts{0};
    std::atomic<std::uint64_t> connects{0};
    std::atomic<std::uint64_t> connect_failures{0};
    std::atomic<std::uint64_t> drops{0};
};

void bump(std::atomic<std::uint64_t>& c, std::uint64_t n = 1) {
    c.fetch_add(n, std::memory_order_relaxed);
}

}  // namespace

// ----------------------------------------------------------------------------- errors, URL

const char* kind_name(ErrorKind kind) {
    switch (kind) {
        case ErrorKind::connection:
            return "connection";
        case ErrorKind::timeout:
            return "timeout";
        case ErrorKind::reply:
            return "reply";
    }
    return "unknown";
}

std::string_view Error::code() const {
    if (kind_ != ErrorKind::reply) return {};
    std::string_view msg = what();
    return msg.substr(0, msg.find(' '));
}

Endpoint parse_url(std::string_view url) {
    auto parsed = boost::urls::parse_uri(url);
    if (!parsed) throw std::invalid_argument("invalid Redis URL (expected redis://host:port/db)");
    const auto& u = *parsed;
    if (u.scheme() != "redis")
        throw std::invalid_argument("unsupported Redis URL scheme '" + std::string(u.scheme()) +
                                    "' (only redis:// is supported)");
    Endpoint ep;
    if (u.host_type() == boost::urls::host_type::ipv6) {
        ep.host = u.host_address();
    } else {
        ep.host = u.host();
    }
    if (ep.host.empty()) throw std::invalid_argument("Redis URL has no host");
    if (u.has_port()) {
        if (u.port().empty() || u.port_number() == 0)
            throw std::invalid_argument("invalid port in Redis URL: '" + std::string(u.port()) + "'");
        ep.port = u.port_number();
    }
    if (u.has_userinfo()) {
        ep.username = u.user();
        ep.password = u.password();
        if (ep.password.empty() && !ep.username.empty()) {
            // redis://secret@host: a lone user part is the password, as other Redis clients read it.
            ep.password = std::move(ep.username);
            ep.username.clear();
        }
    }
    std::string_view path = u.encoded_path();
    if (!path.empty() && path != "/") {
        std::string_view db = path.substr(1);
        int value = -1;
        auto [end, ec] = std::from_chars(db.data(), db.data() + db.size(), value);
        if (ec != std::errc() || end != db.data() + db.size() || value < 0)
            throw std::invalid_argument("invalid database number in Redis URL: '" + std::string(db) + "'");
        ep.db = value;
    }
    return ep;
}

// ----------------------------------------------------------------------------- stats

ClientStats& ClientStats::operator+=(const ClientStats& o) {
    commands += o.commands;
    latency_sum_us += o.latency_sum_us;
    for (std::size_t i = 0; i < kBuckets; ++i)
        latency_buckets[i] += o.latency_buckets[i];
    reply_errors += o.reply_errors;
    connection_errors += o.connection_errors;
    timeouts += o.timeouts;
    connects += o.connects;
    connect_failures += o.connect_failures;
    drops += o.drops;
    healthy += o.healthy;
    return *this;
}

void render_metrics(std::string& out, const ClientStats& s) {
    auto seconds = [](std::uint64_t us) {
        char buf[32];
        int n = std::snprintf(buf, sizeof buf, "%.6f", static_cast<double>(us) / 1e6);
        return std::string(buf, static_cast<std::size_t>(n));
    };
    out.append("# HELP mtapi_redis_command_duration_seconds Redis command round trips (sent to answered).\n");
    out.append("# TYPE mtapi_redis_command_duration_seconds histogram\n");
    std::uint64_t cumulative = 0;
    for (std::size_t b = 0; b < ClientStats::kBuckets; ++b) {
        cumulative += s.latency_buckets[b];
        out.append("mtapi_redis_command_duration_seconds_bucket{le=\"");
        out.append(seconds(ClientStats::kBucketBoundsUs[b]));
        out.append("\"} ");
        out.append(std::to_string(cumulative));
        out.push_back('\n');
    }
    out.append("mtapi_redis_command_duration_seconds_bucket{le=\"+Inf\"} ");
    out.append(std::to_string(s.commands));
    out.append("\nmtapi_redis_command_duration_seconds_sum ");
    out.append(seconds(s.latency_sum_us));
    out.append("\nmtapi_redis_command_duration_seconds_count ");
    out.append(std::to_string(s.commands));
    out.push_back('\n');
    obs::append_family(out, "mtapi_redis_errors_total", "counter", "Redis commands that failed, by kind.");
    obs::append_sample(out, "mtapi_redis_errors_total", R"({kind="reply"})", s.reply_errors);
    obs::append_sample(out, "mtapi_redis_errors_total", R"({kind="connection"})", s.connection_errors);
    obs::append_sample(out, "mtapi_redis_errors_total", R"({kind="timeout"})", s.timeouts);
    obs::append_metric(out, "mtapi_redis_connects_total", "counter", "Redis connections established.", s.connects);
    obs::append_metric(out, "mtapi_redis_connect_failures_total", "counter", "Failed attempts to connect to Redis.",
                       s.connect_failures);
    obs::append_metric(out, "mtapi_redis_disconnects_total", "counter",
                       "Established Redis connections lost or dropped.", s.drops);
    obs::append_metric(out, "mtapi_redis_healthy_connections", "gauge",
                       "Shards whose Redis connection is up and answering.", s.healthy);
}

// ----------------------------------------------------------------------------- the connection

// One command on the wire. hiredis calls back exactly once per command: with the reply, or with
// nullptr when the context goes away. The callback fills this in and cancels the timer, which
// wakes the awaiting coroutine; the timer's own expiry is the command's deadline.
struct Pending {
    explicit Pending(asio::io_context& ioc) : timer(ioc) {}
    asio::steady_timer timer;
    Reply reply;
    std::optional<Error> error;
    bool done = false;
};

struct Client::Impl : std::enable_shared_from_this<Client::Impl> {
    Impl(asio::io_context& ioc, ClientOptions opts, Endpoint ep)
        : ioc(ioc), options(std::move(opts)), endpoint(std::move(ep)), sd(ioc) {
        boost::system::error_code ec;
        auto addr = asio::ip::make_address(endpoint.host, ec);
        if (!ec) {
            address = addr.to_string();
            resolved = true;
        }
    }
    ~Impl() { drop("Redis client destroyed"); }

    asio::io_context& ioc;
    ClientOptions options;
    Endpoint endpoint;
    std::string address;  // numeric address of endpoint.host: hiredis is never handed a name to look up
    bool resolved = false;

    redisAsyncContext* ac = nullptr;
    asio::posix::stream_descriptor sd;
    std::uint64_t generation = 0;  // bumped per context, so waits of an old descriptor are ignored
    bool want_read = false;
    bool want_write = false;
    bool read_armed = false;
    bool write_armed = false;
    bool ready = false;  // handshake (AUTH/SELECT/PING) answered
    bool closed = false;
    std::atomic<bool> healthy{false};
    std::deque<std::shared_ptr<Pending>> inflight;  // in the order hiredis will call back
    std::string drop_reason;                        // why mtapi itself is dropping the context
    std::string context_error;                      // hiredis's message for a context it tears down

    Clock::time_point retry_after{};
    std::chrono::milliseconds backoff{0};
    Clock::time_point next_ping{};
    bool outage_logged = false;
    asio::steady_timer* loop_timer = nullptr;  // the health loop's timer while it waits
    AtomicStats stats;

    // ---- hiredis event hooks: hiredis says what it wants to wait for, Asio waits for it.

    static void ev_add_read(void* p) {
        auto* c = static_cast<Impl*>(p);
        c->want_read = true;
        c->arm(false);
    }
    static void ev_del_read(void* p) { static_cast<Impl*>(p)->want_read = false; }
    static void ev_add_write(void* p) {
        auto* c = static_cast<Impl*>(p);
        c->want_write = true;
        c->arm(true);
    }
    static void ev_del_write(void* p) { static_cast<Impl*>(p)->want_write = false; }
    static void ev_cleanup(void* p) { static_cast<Impl*>(p)->on_cleanup(); }

    // Starts one wait for readiness unless one is already pending; a wait that completes after
    // hiredis lost interest is ignored. hiredis re-adds what it still wants after each event.
    void arm(bool write) {
        bool& armed = write ? write_armed : read_armed;
        if (armed || !sd.is_open()) return;
        armed = true;
        sd.async_wait(write ? asio::posix::stream_descriptor::wait_write : asio::posix::stream_descriptor::wait_read,
                      [weak = weak_from_this(), gen = generation, write](const boost::system::error_code& ec) {
                          auto self = weak.lock();
                          if (!self || self->generation != gen) return;
                          (write ? self->write_armed : self->read_armed) = false;
                          if (self->ac == nullptr) return;
                          if (ec) {
                              if (ec != asio::error::operation_aborted) self->drop("Redis socket wait failed");
                              return;
                          }
                          if (write ? self->want_write : self->want_read) {
                              if (write)
                                  redisAsyncHandleWrite(self->ac);
                              else
                                  redisAsyncHandleRead(self->ac);
                          }
                          // The context may be gone now (a failed read or connect frees it).
                          if (self->ac != nullptr && self->generation == gen) {
                              if (self->want_read) self->arm(false);
                              if (self->want_write) self->arm(true);
                          }
                      });
    }

    // hiredis is about to close the descriptor and free the context (it may say so twice).
    void on_cleanup() {
        if (ac == nullptr) return;
        if (ac->c.err != 0 && context_error.empty()) context_error = ac->c.errstr;
        const bool was_ready = ready;
        ac = nullptr;
        ready = false;
        ++generation;
        want_read = want_write = read_armed = write_armed = false;
        if (sd.is_open()) {
            // The descriptor belongs to hiredis: release it from Asio before hiredis closes it.
            boost::system::error_code ignored;
            sd.cancel(ignored);
            sd.release();
        }
        healthy.store(false, std::memory_order_relaxed);
        if (was_ready) {
            bump(stats.drops);
            // The next command (or the health loop) reconnects at once; a failure then backs off.
            if (!outage_logged && !closed) {
                outage_logged = true;
                obs::warn("Redis connection lost", {{"reason", std::string_view(reason_text())}});
            }
        } else {
            bump(stats.connect_failures);
            retry_after = Clock::now() + next_backoff();
            if (!outage_logged && !closed) {
                outage_logged = true;
                obs::warn("Redis connection failed", {{"reason", std::string_view(reason_text())},
                                                      {"host", std::string_view(endpoint.host)},
                                                      {"port", static_cast<int>(endpoint.port)}});
            }
        }
        wake_loop();
    }

    std::string reason_text() const {
        if (!drop_reason.empty()) return drop_reason;
        if (context_error.empty()) return "connection closed";
        return context_error;
    }

    static void on_reply(redisAsyncContext* c, void* r, void* privdata) {
        auto* self = static_cast<Impl*>(c->data);
        if (r == nullptr && c->c.err != 0 && self->context_error.empty()) self->context_error = c->c.errstr;
        // hiredis answers in the order the commands were queued.
        auto it = self->inflight.begin();
        while (it != self->inflight.end() && it->get() != privdata)
            ++it;
        if (it == self->inflight.end()) return;
        std::shared_ptr<Pending> p = std::move(*it);
        self->inflight.erase(it);
        // The reply belongs to hiredis and is freed when this returns: copy it now.
        if (r == nullptr) {
            p->error.emplace(ErrorKind::connection, "Redis connection lost: " + self->reason_text());
        } else {
            p->reply = copy_reply(*static_cast<redisReply*>(r));
        }
        p->done = true;
        p->timer.cancel();
    }

    std::chrono::milliseconds next_backoff() {
        auto next = backoff.count() == 0 ? options.backoff_min : std::min(backoff * 2, options.backoff_max);
        backoff = next;
        // Jitter in [next/2, next] so shards and instances do not reconnect in lockstep.
        auto half = next.count() / 2;
        auto jitter = half > 0 ? static_cast<long>(util::fast_random() % static_cast<std::uint64_t>(half + 1)) : 0;
        return std::chrono::milliseconds(half + jitter);
    }

    void wake_loop() {
        if (loop_timer != nullptr) loop_timer->cancel();
    }

    // Frees the context: every pending command is answered with Error(connection) (the reason
    // is `reason`), then hiredis calls on_cleanup and closes the descriptor.
    void drop(std::string reason) {
        if (ac == nullptr) return;
        drop_reason = std::move(reason);
        redisAsyncFree(ac);
        drop_reason.clear();
        context_error.clear();
    }

    // Queues one command on the current context.
    std::shared_ptr<Pending> submit(const std::vector<std::string>& argv) {
        // On the stack for the commands mtapi sends (at most 8 arguments); the heap beyond.
        constexpr std::size_t kInline = 16;
        std::array<const char*, kInline> ptr_buf;
        std::array<std::size_t, kInline> len_buf;
        std::vector<const char*> ptr_heap;
        std::vector<std::size_t> len_heap;
        const char** ptrs = ptr_buf.data();
        std::size_t* lens = len_buf.data();
        if (argv.size() > kInline) {
            ptr_heap.resize(argv.size());
            len_heap.resize(argv.size());
            ptrs = ptr_heap.data();
            lens = len_heap.data();
        }
        for (std::size_t i = 0; i < argv.size(); ++i) {
            ptrs[i] = argv[i].data();
            lens[i] = argv[i].size();
        }
        auto p = std::make_shared<Pending>(ioc);
        inflight.push_back(p);
        if (redisAsyncCommandArgv(ac, &Impl::on_reply, p.get(), static_cast<int>(argv.size()), ptrs, lens) !=
            REDIS_OK) {
            inflight.pop_back();
            throw Error(ErrorKind::connection, "Redis connection is closing");
        }
        return p;
    }

    // Waits for the reply or the deadline; true when the reply (or a connection failure) came.
    asio::awaitable<bool> wait(Pending& p, Deadline deadline) {
        if (p.done) co_return true;
        p.timer.expires_at(deadline);
        co_await p.timer.async_wait(nothrow);
        co_return p.done;
    }

    // Opens a new context and queues the handshake ahead of anything else, so commands sent
    // while it connects are answered on the right database.
    void open() {
        context_error.clear();
        redisAsyncContext* c = redisAsyncConnect(address.c_str(), endpoint.port);
        if (c == nullptr) throw Error(ErrorKind::connection, "cannot allocate a Redis connection");
        if (c->err != 0) {
            std::string msg = c->errstr != nullptr ? c->errstr : "connect failed";
            redisAsyncFree(c);
            connect_failed(msg);
            throw Error(ErrorKind::connection, "cannot connect to Redis: " + msg);
        }
        ac = c;
        ++generation;
        want_read = want_write = read_armed = write_armed = false;
        ready = false;
        c->data = this;
        c->ev.data = this;
        c->ev.addRead = &Impl::ev_add_read;
        c->ev.delRead = &Impl::ev_del_read;
        c->ev.addWrite = &Impl::ev_add_write;
        c->ev.delWrite = &Impl::ev_del_write;
        c->ev.cleanup = &Impl::ev_cleanup;
        boost::system::error_code ec;
        sd.assign(c->c.fd, ec);
        if (ec) {
            drop("cannot watch the Redis socket: " + ec.message());
            throw Error(ErrorKind::connection, "cannot watch the Redis socket: " + ec.message());
        }

        std::vector<std::vector<std::string>> steps;
        if (!endpoint.password.empty()) {
            std::vector<std::string> auth{"AUTH"};
            if (!endpoint.username.empty()) auth.push_back(endpoint.username);
            auth.push_back(endpoint.password);
            steps.push_back(std::move(auth));
        }
        if (endpoint.db != 0) steps.push_back({"SELECT", std::to_string(endpoint.db)});
        if (steps.empty()) steps.push_back({"PING"});
        std::vector<std::shared_ptr<Pending>> pending;
        for (const auto& s : steps)
            pending.push_back(submit(s));
        asio::co_spawn(ioc, handshake(shared_from_this(), generation, std::move(pending)), asio::detached);
    }

    // A connect that failed before any context existed (the context path goes through on_cleanup).
    void connect_failed(const std::string& msg) {
        bump(stats.connect_failures);
        retry_after = Clock::now() + next_backoff();
        if (!outage_logged) {
            outage_logged = true;
            obs::warn("Redis connection failed", {{"reason", std::string_view(msg)},
                                                  {"host", std::string_view(endpoint.host)},
                                                  {"port", static_cast<int>(endpoint.port)}});
        }
    }

    static asio::awaitable<void> handshake(std::shared_ptr<Impl> self, std::uint64_t gen,
                                           std::vector<std::shared_ptr<Pending>> steps) {
        const Deadline deadline = Clock::now() + self->options.connect_timeout;
        for (auto& p : steps) {
            bool finished = co_await self->wait(*p, deadline);
            if (self->generation != gen) co_return;  // the context went away; on_cleanup recorded it
            if (!finished) {
                self->drop("Redis connect timed out");
                co_return;
            }
            if (p->error) co_return;
            if (p->reply.type == Reply::Type::error) {
                self->drop("Redis refused the connection setup: " + p->reply.str);
                co_return;
            }
        }
        self->on_ready();
    }

    void on_ready() {
        ready = true;
        healthy.store(true, std::memory_order_relaxed);
        backoff = std::chrono::milliseconds(0);
        retry_after = {};
        bump(stats.connects);
        next_ping = Clock::now() + options.health_interval;
        if (outage_logged) {
            outage_logged = false;
            obs::info("Redis connection restored",
                      {{"host", std::string_view(endpoint.host)}, {"port", static_cast<int>(endpoint.port)}});
        }
        wake_loop();
    }

    // Looks the host name up with Asio (hiredis would block the thread in getaddrinfo).
    asio::awaitable<void> resolve() {
        asio::ip::tcp::resolver resolver(ioc);
        auto [ec, results] = co_await resolver.async_resolve(endpoint.host, std::to_string(endpoint.port), nothrow);
        if (ec || results.empty()) {
            connect_failed("cannot resolve Redis host '" + endpoint.host + "'");
            co_return;
        }
        address = results.begin()->endpoint().address().to_string();
        resolved = true;
    }

    // Makes sure a context exists (connected or connecting); throws Error(connection) while
    // backing off after failed connects.
    asio::awaitable<void> ensure_context() {
        if (ac != nullptr) co_return;
        if (Clock::now() < retry_after) throw Error(ErrorKind::connection, "Redis unavailable; reconnecting shortly");
        if (!resolved) {
            co_await resolve();
            if (ac != nullptr) co_return;  // another command connected meanwhile
            if (!resolved) throw Error(ErrorKind::connection, "cannot resolve Redis host '" + endpoint.host + "'");
        }
        open();
    }

    asio::awaitable<void> ping() {
        next_ping = Clock::now() + options.health_interval;
        std::shared_ptr<Pending> p;
        try {
            std::vector<std::string> argv{"PING"};
            p = submit(argv);
        } catch (const Error&) {
            co_return;
        }
        bool finished = co_await wait(*p, Clock::now() + options.health_timeout);
        if (!finished) {
            bump(stats.timeouts);
            drop("Redis health check timed out");
            co_return;
        }
        if (p->error) co_return;  // connection lost; on_cleanup recorded it
        const bool ok = p->reply.is_string() && p->reply.str == "PONG";
        if (!ok && healthy.load(std::memory_order_relaxed))
            obs::warn("Redis health check failed", {{"reply", std::string_view(p->reply.str)}});
        healthy.store(ok && ready, std::memory_order_relaxed);
        next_ping = Clock::now() + options.health_interval;
    }

    // Connects, reconnects after the backoff, and PINGs while connected. Holds the Impl only while
    // awake, so a destroyed client ends the loop.
    static asio::awaitable<void> health_loop(std::weak_ptr<Impl> weak) {
        asio::steady_timer timer(co_await asio::this_coro::executor);
        // The frame (and its timer) may be destroyed with the io_context while the client lives on.
        struct Unlink {
            std::weak_ptr<Impl> weak;
            ~Unlink() {
                if (auto self = weak.lock()) self->loop_timer = nullptr;
            }
        } unlink{weak};
        for (;;) {
            Clock::time_point wake;
            {
                auto self = weak.lock();
                if (!self || self->closed) break;
                self->loop_timer = nullptr;
                try {
                    if (self->ac == nullptr && Clock::now() >= self->retry_after) {
                        if (!self->resolved) co_await self->resolve();
                        if (self->ac == nullptr && self->resolved && Clock::now() >= self->retry_after && !self->closed)
                            self->open();
                    } else if (self->ac != nullptr && self->ready && Clock::now() >= self->next_ping) {
                        co_await self->ping();
                    }
                } catch (const Error&) {
                    // connect failures are recorded (and logged once) where they happen
                } catch (const std::exception& e) {
                    obs::error("Redis health loop failed", {{"error", std::string_view(e.what())}});
                    if (self->ac == nullptr) self->retry_after = Clock::now() + self->next_backoff();
                }
                if (self->closed) break;
                const auto now = Clock::now();
                if (self->ac == nullptr)
                    wake = std::max(self->retry_after, now + std::chrono::milliseconds(1));
                else if (!self->ready)
                    wake = now + self->options.connect_timeout;  // on_ready wakes the loop earlier
                else
                    wake = std::max(self->next_ping, now + std::chrono::milliseconds(1));
                self->loop_timer = &timer;
            }
            timer.expires_at(wake);
            co_await timer.async_wait(nothrow);
        }
    }

    void record_latency(Clock::duration d) {
        auto us = static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(d).count());
        bump(stats.commands);
        bump(stats.latency_sum_us, us);
        for (std::size_t b = 0; b < ClientStats::kBuckets; ++b) {
            if (us <= ClientStats::kBucketBoundsUs[b]) {
                bump(stats.latency_buckets[b]);
                return;
            }
        }
    }
};

// ----------------------------------------------------------------------------- Client

Client::Client(asio::io_context& ioc, ClientOptions options) {
    Endpoint ep = parse_url(options.url);
    impl_ = std::make_shared<Impl>(ioc, std::move(options), std::move(ep));
    asio::co_spawn(ioc, Impl::health_loop(impl_), asio::detached);
}

Client::~Client() {
    close();
}

void Client::close() {
    Impl& c = *impl_;
    c.closed = true;
    c.wake_loop();
    c.loop_timer = nullptr;
    c.drop("Redis client closed");
    c.healthy.store(false, std::memory_order_relaxed);
}

asio::awaitable<Reply> Client::command(std::vector<std::string> argv, Deadline deadline) {
    std::shared_ptr<Impl> self = impl_;  // commands in flight keep the connection state alive
    Impl& c = *self;
    if (argv.empty()) throw std::invalid_argument("empty Redis command");
    if (c.closed) throw Error(ErrorKind::connection, "Redis client is closed");
    if (Clock::now() >= deadline) {
        bump(c.stats.timeouts);
        throw Error(ErrorKind::timeout, "Redis command deadline already passed");
    }
    if (c.ac == nullptr) {
        try {
            co_await c.ensure_context();
        } catch (const Error&) {
            bump(c.stats.connection_errors);
            throw;
        }
    }
    std::shared_ptr<Pending> p = c.submit(argv);
    const auto start = Clock::now();
    bool finished = co_await c.wait(*p, deadline);
    if (!finished) {
        // The command is on the wire and cannot be withdrawn: drop the connection, which fails
        // every other command queued on it, and let the next command reconnect.
        bump(c.stats.timeouts);
        c.drop("Redis command deadline exceeded; connection dropped");
        throw Error(ErrorKind::timeout, "Redis command deadline exceeded (" + argv.front() + ")");
    }
    if (p->error) {
        bump(c.stats.connection_errors);
        throw *p->error;
    }
    c.record_latency(Clock::now() - start);
    if (p->reply.type == Reply::Type::error) {
        bump(c.stats.reply_errors);
        throw Error(ErrorKind::reply, p->reply.str);
    }
    co_return std::move(p->reply);
}

bool Client::healthy() const {
    return impl_->healthy.load(std::memory_order_relaxed);
}

asio::awaitable<bool> Client::wait_healthy(Deadline deadline) {
    asio::steady_timer timer(co_await asio::this_coro::executor);
    while (!healthy() && Clock::now() < deadline) {
        timer.expires_at(std::min(deadline, Clock::now() + std::chrono::milliseconds(5)));
        co_await timer.async_wait(nothrow);
    }
    co_return healthy();
}

ClientStats Client::stats() const {
    const AtomicStats& a = impl_->stats;
    auto get = [](const std::atomic<std::uint64_t>& v) { return v.load(std::memory_order_relaxed); };
    ClientStats s;
    s.commands = get(a.commands);
    s.latency_sum_us = get(a.latency_sum_us);
    for (std::size_t i = 0; i < ClientStats::kBuckets; ++i)
        s.latency_buckets[i] = get(a.latency_buckets[i]);
    s.reply_errors = get(a.reply_errors);
    s.connection_errors = get(a.connection_errors);
    s.timeouts = get(a.timeouts);
    s.connects = get(a.connects);
    s.connect_failures = get(a.connect_failures);
    s.drops = get(a.drops);
    s.healthy = healthy() ? 1 : 0;
    return s;
}

const Endpoint& Client::endpoint() const {
    return impl_->endpoint;
}

}  // namespace mtapi::redis
