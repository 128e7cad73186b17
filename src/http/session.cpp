// One client connection: reads requests in order (keep-alive and pipelining), enforces the
// limits and timeouts, dispatches to the router and writes responses.

#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/fields.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <cstddef>
#include <cstring>
#include <new>
#include <optional>
#include <tuple>

#include "http/problem.hpp"
#include "http/shard.hpp"
#include "obs/log.hpp"
#include "util/time.hpp"
#include "util/uuid.hpp"

namespace mtapi::http::detail {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = asio::ip::tcp;
using namespace std::string_view_literals;

constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t kReadChunk = 8192;
constexpr std::size_t kMaxRequestIdLength = 128;

// A client-supplied X-Request-Id is kept only when it is short and made of safe characters, so it
// can go into logs and headers as it is.
bool sane_request_id(std::string_view v) {
    if (v.empty() || v.size() > kMaxRequestIdLength) return false;
    for (char c : v) {
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
                  c == '.' || c == ':';
        if (!ok) return false;
    }
    return true;
}

// The decimal digits of n at the end of buf; returns where they start.
char* format_uint(char* end, std::size_t n) {
    char* p = end;
    do {
        *--p = static_cast<char>('0' + n % 10);
        n /= 10;
    } while (n != 0);
    return p;
}

enum class ConnectionHeader { none, keep_alive, close };

// Storage for the parsed request's target and header fields (Beast allocates each separately):
// a per-connection bump arena, emptied when the next request starts. What does not fit (unusual
// requests near the header limit) falls back to the heap.
class FieldArena {
  public:
    void* allocate(std::size_t bytes) {
        bytes = (bytes + kAlign - 1) & ~(kAlign - 1);
        if (bytes <= kSize - used_) {
            void* p = storage_ + used_;
            used_ += bytes;
            return p;
        }
        return ::operator new(bytes);
    }
    void deallocate(void* p) {
        auto* c = static_cast<unsigned char*>(p);
        if (c >= storage_ && c < storage_ + kSize) return;  // released wholesale by reset()
        ::operator delete(p);
    }
    void reset() { used_ = 0; }

  private:
    static constexpr std::size_t kAlign = alignof(std::max_align_t);
    static constexpr std::size_t kSize = 2048;
    alignas(std::max_align_t) unsigned char storage_[kSize];
    std::size_t used_ = 0;
};

template <class T>
struct ArenaAllocator {
    using value_type = T;
    FieldArena* arena;

    explicit ArenaAllocator(FieldArena& a) noexcept : arena(&a) {}
    template <class U>
    ArenaAllocator(const ArenaAllocator<U>& other) noexcept : arena(other.arena) {}  // NOLINT: rebinding
    T* allocate(std::size_t n) { return static_cast<T*>(arena->allocate(n * sizeof(T))); }
    void deallocate(T* p, std::size_t) noexcept { arena->deallocate(p); }
    template <class U>
    bool operator==(const ArenaAllocator<U>& other) const noexcept {
        return arena == other.arena;
    }
};

using RequestParser = bhttp::request_parser<bhttp::string_body, ArenaAllocator<char>>;

// Copies `s` to `p`; returns the end of the copy.
inline char* put(char* p, std::string_view s) {
    std::memcpy(p, s.data(), s.size());
    return p + s.size();
}

// Serialises the status line and headers into `out` (grown when too small, never shrunk; the
// bytes are written in place rather than appended piece by piece) and returns their length. The
// body is written from the Response as it is.
std::size_t serialize_head(std::string& out, const Response& r, std::string_view request_id, ConnectionHeader conn) {
    const std::string_view reason = reason_phrase(r.status);
    const std::string_view date = util::http_date_now();
    const std::string_view content_type = r.content_type.view();
    std::size_t need = 160 + reason.size() + date.size() + content_type.size() + request_id.size();
    for (const auto& h : r.headers)
        need += h.name.size() + h.value.size() + 4;
    if (out.size() < need) out.resize(need);

    char num[24];
    char* const num_end = num + sizeof(num);
    char* p = out.data();
    p = put(p, "HTTP/1.1 "sv);
    char* digits = format_uint(num_end, static_cast<std::size_t>(r.status));
    p = put(p, {digits, static_cast<std::size_t>(num_end - digits)});
    *p++ = ' ';
    p = put(p, reason);
    p = put(p, "\r\nDate: "sv);
    p = put(p, date);
    if (!content_type.empty()) {
        p = put(p, "\r\nContent-Type: "sv);
        p = put(p, content_type);
    }
    if (r.status != 204 && r.status != 304 && r.status >= 200) {
        p = put(p, "\r\nContent-Length: "sv);
        digits = format_uint(num_end, r.body.size());
        p = put(p, {digits, static_cast<std::size_t>(num_end - digits)});
    }
    p = put(p, "\r\nX-Request-Id: "sv);
    p = put(p, request_id);
    for (const auto& h : r.headers) {
        p = put(p, "\r\n"sv);
        p = put(p, h.name);
        p = put(p, ": "sv);
        p = put(p, h.value);
    }
    if (conn == ConnectionHeader::close) p = put(p, "\r\nConnection: close"sv);
    if (conn == ConnectionHeader::keep_alive) p = put(p, "\r\nConnection: keep-alive"sv);
    p = put(p, "\r\n\r\n"sv);
    return static_cast<std::size_t>(p - out.data());
}

class Session {
  public:
    Session(Shard& shard, tcp::socket socket) : shard_(shard), opts_(shard.options), socket_(std::move(socket)) {
        boost::system::error_code ec;
        auto ep = socket_.remote_endpoint(ec);
        if (!ec) remote_ = ep.address().to_string();
        hook_.socket = &socket_;
        shard_.link(hook_);
        shard_.metrics.connection_opened(shard_.index);
        head_.resize(256);
    }
    ~Session() {
        shard_.metrics.connection_closed(shard_.index);
        shard_.unlink(hook_);
    }
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    asio::awaitable<void> run();

  private:
    // What is wrong with a request head that parsed; status 0 when nothing is.
    struct Refusal {
        int status = 0;
        const char* detail = nullptr;
    };

    Refusal check_head() const;
    asio::awaitable<bool> read_body();
    const Handler* route(Response& resp);
    asio::awaitable<void> fail_read(beast::error_code ec);
    asio::awaitable<bool> write(const Response& r, ConnectionHeader conn, bool head);
    asio::awaitable<void> send_error_and_close(int status, const char* detail, bool linger);
    asio::awaitable<void> linger_close();

    // Timeouts: the shard's watchdog cancels the socket's operations once the deadline has passed.
    void expires_after(std::chrono::steady_clock::duration d) {
        hook_.expires_at(std::chrono::steady_clock::now() + d);
    }
    // An operation that failed because the watchdog cancelled it reports a timeout.
    beast::error_code timeout_aware(beast::error_code ec) const {
        if (ec == asio::error::operation_aborted && hook_.timed_out) return beast::error::timeout;
        return ec;
    }

    std::string_view request_id() const { return {request_id_.data(), request_id_size_}; }
    // The client's X-Request-Id when it is sane, else a fresh UUIDv7.
    void take_request_id(std::string_view client) {
        if (sane_request_id(client)) {
            client.copy(request_id_.data(), client.size());
            request_id_size_ = client.size();
        } else {
            util::format_uuid(util::uuid_v7(), request_id_.data());
            request_id_size_ = util::kUuidTextLength;
        }
    }

    void record(int route, std::string_view method, std::string_view route_label, std::string_view path, int status,
                std::size_t bytes);

    Shard& shard_;
    const ServerOptions& opts_;
    tcp::socket socket_;
    beast::flat_buffer buffer_;
    FieldArena arena_;  // before parser_: outlives it
    std::optional<RequestParser> parser_;
    RequestContext ctx_;
    std::array<char, kMaxRequestIdLength> request_id_{};
    std::size_t request_id_size_ = 0;
    std::string head_;
    std::string remote_;
    SessionHook hook_;
    std::chrono::steady_clock::time_point started_;
    int route_index_ = -1;
};

// The whole request cycle of a connection in one coroutine: the hot path (read head, route, call
// the handler, write) awaits nothing but socket operations and the handler itself, so it
// allocates no coroutine frames of its own. Bodies and errors take the slower paths.
asio::awaitable<void> Session::run() {
    bool first = true;
    for (;;) {
        if (buffer_.size() == 0) {
            hook_.idle = true;
            if (shard_.draining) break;
            expires_after(first ? opts_.read_timeout : opts_.idle_timeout);
            auto [ec, n] = co_await socket_.async_read_some(buffer_.prepare(kReadChunk), nothrow);
            hook_.idle = false;
            if (ec) break;  // peer closed, idle timeout, or drain
            buffer_.commit(n);
        }
        hook_.idle = false;
        first = false;

        // The request: head (header limit) and body (body limit) within the read timeout.
        started_ = std::chrono::steady_clock::now();
        parser_.reset();
        arena_.reset();
        const ArenaAllocator<char> alloc(arena_);
        parser_.emplace(std::piecewise_construct, std::make_tuple(), std::make_tuple(alloc));
        parser_->header_limit(static_cast<std::uint32_t>(opts_.header_limit));
        parser_->body_limit(opts_.body_limit);
        hook_.expires_at(started_ + opts_.read_timeout);
        // The head: parse what is buffered (a pipelined request may be there whole), read more
        // while the parser needs it. Beast's async_read_header does the same in a composed
        // operation that costs more than the parse itself.
        beast::error_code ec;
        for (;;) {
            if (buffer_.size() != 0) {
                const std::size_t used = parser_->put(buffer_.data(), ec);
                buffer_.consume(used);
                if (ec == bhttp::error::need_more)
                    ec = {};
                else if (ec || parser_->is_header_done())
                    break;
            }
            auto [rec, n] = co_await socket_.async_read_some(buffer_.prepare(kReadChunk), nothrow);
            if (rec == asio::error::eof) {
                if (parser_->got_some())
                    parser_->put_eof(ec);
                else
                    ec = bhttp::error::end_of_stream;
                break;
            }
            if (rec) {
                ec = timeout_aware(rec);
                break;
            }
            buffer_.commit(n);
        }
        if (ec) {
            co_await fail_read(ec);
            break;
        }
        const Refusal refusal = check_head();
        if (refusal.status != 0) {
            co_await send_error_and_close(refusal.status, refusal.detail, true);
            break;
        }
        if (!parser_->is_done() && !co_await read_body()) break;
        hook_.expires_never();

        // The response.
        auto& req = parser_->get();
        bool close_after = !req.keep_alive();
        Response resp;
        const Handler* handler = route(resp);
        if (handler != nullptr) {
            std::optional<Problem> problem;
            try {
                resp = co_await (*handler)(ctx_);
            } catch (const Problem& p) {
                problem = p;
            } catch (const std::exception& e) {
                obs::error(
                    "unhandled exception in handler",
                    {{"request_id", ctx_.request_id}, {"route", ctx_.route}, {"error", std::string_view(e.what())}});
                problem = Problem::internal();
            }
            if (problem) resp = render_problem(*problem, ctx_.path, ctx_.request_id);
            for (auto& h : ctx_.response_headers)
                resp.headers.push_back(std::move(h));
        }
        if (shard_.draining) close_after = true;

        ConnectionHeader conn = ConnectionHeader::none;
        if (close_after)
            conn = ConnectionHeader::close;
        else if (req.version() < 11)
            conn = ConnectionHeader::keep_alive;
        const bool head = ctx_.method == Method::head;
        const std::size_t head_size = serialize_head(head_, resp, request_id(), conn);
        std::array<asio::const_buffer, 2> bufs{asio::buffer(head_.data(), head_size), asio::buffer(resp.body)};
        if (head) bufs[1] = asio::const_buffer();
        expires_after(opts_.read_timeout);
        auto [wec, wn] = co_await asio::async_write(socket_, bufs, nothrow);
        hook_.expires_never();
        record(route_index_, ctx_.method_text, ctx_.route, ctx_.path, resp.status, head ? 0 : resp.body.size());
        if (wec || close_after) break;
    }
    beast::error_code ignored;
    hook_.expires_never();
    socket_.shutdown(tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
}

Session::Refusal Session::check_head() const {
    const auto& req = parser_->get();
    if (req.method_string().size() + req.target().size() + 10 > opts_.request_line_limit) return {414, nullptr};
    // RFC 9112 §6.1/§6.3: a request whose Transfer-Encoding does not end in chunked, or an HTTP/1.0
    // request with Transfer-Encoding at all, has no reliable framing: reject and close.
    // (Content-Length together with Transfer-Encoding and conflicting Content-Lengths are refused
    // by the parser itself and end up in fail_read.)
    if (req.find(bhttp::field::transfer_encoding) != req.end() && (!parser_->chunked() || req.version() < 11))
        return {400, "The request's Transfer-Encoding is not acceptable."};
    return {};
}

// The body of a request whose head announced one; false when the connection must end (an error
// response has been sent where one is due).
asio::awaitable<bool> Session::read_body() {
    auto expect = parser_->get()[bhttp::field::expect];
    if (!expect.empty()) {
        if (!iequals(expect, "100-continue")) {
            co_await send_error_and_close(417, "Only 'Expect: 100-continue' is supported.", true);
            co_return false;
        }
        static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
        auto [wec, wn] = co_await asio::async_write(socket_, asio::buffer(kContinue), nothrow);
        if (wec) co_return false;
    }
    auto [ec, n] = co_await bhttp::async_read(socket_, buffer_, *parser_, nothrow);
    if (ec) {
        co_await fail_read(timeout_aware(ec));
        co_return false;
    }
    co_return true;
}

// Fills the RequestContext, takes the request id and matches the route. Returns the handler to
// call, or nullptr with `resp` set (404, 405, or 204 for OPTIONS).
const Handler* Session::route(Response& resp) {
    auto& req = parser_->get();
    ctx_.method = parse_method(req.method_string());
    ctx_.method_text = req.method_string();
    ctx_.target = req.target();
    auto q = ctx_.target.find('?');
    ctx_.path = ctx_.target.substr(0, q);
    ctx_.query = q == std::string_view::npos ? std::string_view{} : ctx_.target.substr(q + 1);
    ctx_.body = req.body();
    ctx_.remote_address = remote_;
    ctx_.shard = shard_.index;
    ctx_.received_at = started_;
    ctx_.route = {};
    ctx_.response_headers.clear();
    route_index_ = -1;
    ctx_.headers.clear();
    std::string_view client_id;
    for (const auto& f : req) {
        ctx_.headers.emplace_back(f.name_string(), f.value());
        if (client_id.empty() && iequals(f.name_string(), "X-Request-Id")) client_id = f.value();
    }
    ctx_.params.clear();
    take_request_id(client_id);
    ctx_.request_id = request_id();

    Router::Match m = shard_.router.match(ctx_.method, ctx_.path);
    if (m.handler != nullptr) {
        ctx_.route = m.pattern;
        route_index_ = m.route;
        ctx_.params = std::move(m.params);
        return m.handler;
    }
    if (m.path_known) {
        ctx_.route = m.pattern;
        std::string allow = m.allow + ", OPTIONS";
        if (ctx_.method == Method::options) {
            resp = Response::no_content();
            resp.header("Allow", std::move(allow));
        } else {
            resp = render_problem(Problem::method_not_allowed(std::move(allow)), ctx_.path, ctx_.request_id);
        }
    } else {
        resp = render_problem(Problem::not_found(), ctx_.path, ctx_.request_id);
    }
    return nullptr;
}

asio::awaitable<bool> Session::write(const Response& r, ConnectionHeader conn, bool head) {
    const std::size_t head_size = serialize_head(head_, r, request_id(), conn);
    std::array<asio::const_buffer, 2> bufs{asio::buffer(head_.data(), head_size), asio::buffer(r.body)};
    if (head) bufs[1] = asio::const_buffer();
    expires_after(opts_.read_timeout);
    auto [ec, n] = co_await asio::async_write(socket_, bufs, nothrow);
    hook_.expires_never();
    co_return !ec;
}

void Session::record(int route, std::string_view method, std::string_view route_label, std::string_view path,
                     int status, std::size_t bytes) {
    auto latency = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - started_);
    auto us = static_cast<std::uint64_t>(latency.count());
    shard_.metrics.observe(shard_.index, route, status, us);
    if (!opts_.access_log || !obs::enabled(obs::Level::info)) return;
    std::string& line = shard_.access_log.begin_line();
    line.append("{\"ts\":\"");
    util::append_rfc3339(line, std::chrono::system_clock::now());
    line.append("\",\"level\":\"info\",\"msg\":\"request\",\"request_id\":");
    obs::append_json_string(line, request_id());
    line.append(",\"method\":");
    obs::append_json_string(line, method);
    line.append(",\"route\":");
    obs::append_json_string(line, route_label);
    line.append(",\"path\":");
    obs::append_json_string(line, path);
    line.append(",\"status\":");
    line.append(std::to_string(status));
    line.append(",\"bytes\":");
    line.append(std::to_string(bytes));
    line.append(",\"latency_us\":");
    line.append(std::to_string(us));
    line.append(",\"remote\":");
    obs::append_json_string(line, remote_);
    line.push_back('}');
    shard_.access_log.end_line();
}

asio::awaitable<void> Session::fail_read(beast::error_code ec) {
    if (ec == bhttp::error::header_limit) {
        // The parser consumes the request line (and each complete field) as it goes: when it has
        // a target, the request line fitted and the header fields are what overflowed.
        bool line_too_long = parser_->get().target().empty();
        co_await send_error_and_close(line_too_long ? 414 : 431, nullptr, true);
    } else if (ec == bhttp::error::body_limit) {
        co_await send_error_and_close(413, nullptr, true);
    } else if (ec == beast::error::timeout) {
        co_await send_error_and_close(408, nullptr, false);
    } else if (ec == bhttp::error::end_of_stream || ec == bhttp::error::partial_message || ec == asio::error::eof ||
               ec == asio::error::connection_reset || ec == asio::error::operation_aborted ||
               ec == asio::error::broken_pipe) {
        co_return;  // the peer went away
    } else {
        co_await send_error_and_close(400, "The request is not valid HTTP/1.1.", true);
    }
}

asio::awaitable<void> Session::send_error_and_close(int status, const char* detail, bool linger) {
    std::string_view client_id;
    std::string_view instance;
    std::string_view method;
    // Whatever the parser has seen so far: the request line and fields parsed before the error.
    if (parser_ && !parser_->get().target().empty()) {
        auto target = parser_->get().target();
        instance = target.substr(0, target.find('?'));
        method = parser_->get().method_string();
        client_id = parser_->get()["X-Request-Id"];
    }
    take_request_id(client_id);
    Response r = render_problem(Problem::of_status(status, detail != nullptr ? detail : ""), instance, request_id());
    bool ok = co_await write(r, ConnectionHeader::close, false);
    record(-1, method, {}, instance, status, r.body.size());
    if (ok && linger) co_await linger_close();
}

// Closing right after an error response while the client is still sending would make the kernel
// answer with RST, and the client may lose the response. Half-close and discard input briefly.
asio::awaitable<void> Session::linger_close() {
    beast::error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_send, ignored);
    expires_after(std::chrono::seconds(2));
    std::array<char, 16384> scratch;
    std::size_t total = 0;
    while (total < 8 * 1024 * 1024) {
        auto [ec, n] = co_await socket_.async_read_some(asio::buffer(scratch), nothrow);
        if (ec) break;
        total += n;
    }
}

}  // namespace

asio::awaitable<void> run_session(Shard& shard, tcp::socket socket) {
    try {
        Session session(shard, std::move(socket));
        co_await session.run();
    } catch (const std::exception& e) {
        obs::error("connection failed", {{"error", std::string_view(e.what())}});
    }
}

}  // namespace mtapi::http::detail
