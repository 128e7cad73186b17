// One client connection: reads requests in order (keep-alive and pipelining), enforces the
// limits and timeouts, dispatches to the router and writes responses.

#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <optional>

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

void append_status_line(std::string& out, int status) {
    out.append("HTTP/1.1 ");
    out.append(std::to_string(status));
    out.push_back(' ');
    out.append(reason_phrase(status));
    out.append("\r\n");
}

void append_header(std::string& out, std::string_view name, std::string_view value) {
    out.append(name);
    out.append(": ");
    out.append(value);
    out.append("\r\n");
}

enum class ConnectionHeader { none, keep_alive, close };

// Serialises the status line and headers; the body is written from the Response as it is.
void serialize_head(std::string& out, const Response& r, std::string_view request_id, ConnectionHeader conn) {
    out.clear();
    append_status_line(out, r.status);
    append_header(out, "Date", util::http_date_now());
    if (!r.content_type.empty()) append_header(out, "Content-Type", r.content_type);
    if (r.status != 204 && r.status != 304 && r.status >= 200)
        append_header(out, "Content-Length", std::to_string(r.body.size()));
    append_header(out, "X-Request-Id", request_id);
    for (const auto& h : r.headers)
        append_header(out, h.name, h.value);
    if (conn == ConnectionHeader::close) append_header(out, "Connection", "close");
    if (conn == ConnectionHeader::keep_alive) append_header(out, "Connection", "keep-alive");
    out.append("\r\n");
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
    }
    ~Session() {
        shard_.metrics.connection_closed(shard_.index);
        shard_.unlink(hook_);
    }
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    asio::awaitable<void> run();

  private:
    asio::awaitable<bool> serve_one();
    asio::awaitable<void> fail_read(beast::error_code ec);
    asio::awaitable<bool> write(const Response& r, ConnectionHeader conn, bool head);
    asio::awaitable<void> send_error_and_close(int status, const char* detail, bool linger);
    asio::awaitable<void> linger_close();
    asio::awaitable<Response> dispatch();
    // Timeouts: the shard's watchdog cancels the socket's operations once the deadline has passed.
    void expires_after(std::chrono::steady_clock::duration d) {
        hook_.expires_at(std::chrono::steady_clock::now() + d);
    }
    // An operation that failed because the watchdog cancelled it reports a timeout.
    beast::error_code timeout_aware(beast::error_code ec) const {
        if (ec == asio::error::operation_aborted && hook_.timed_out) return beast::error::timeout;
        return ec;
    }
    void record(int route, std::string_view method, std::string_view route_label, std::string_view path, int status,
                std::size_t bytes);

    Shard& shard_;
    const ServerOptions& opts_;
    tcp::socket socket_;
    beast::flat_buffer buffer_;
    std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
    RequestContext ctx_;
    std::string request_id_;
    std::string head_;
    std::string remote_;
    SessionHook hook_;
    std::chrono::steady_clock::time_point started_;
    int route_index_ = -1;
};

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
        if (!co_await serve_one()) break;
    }
    beast::error_code ignored;
    hook_.expires_never();
    socket_.shutdown(tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
}

asio::awaitable<bool> Session::serve_one() {
    started_ = std::chrono::steady_clock::now();
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(opts_.header_limit));
    parser_->body_limit(opts_.body_limit);
    hook_.expires_at(started_ + opts_.read_timeout);

    auto [ec, n] = co_await bhttp::async_read_header(socket_, buffer_, *parser_, nothrow);
    if (ec) {
        co_await fail_read(timeout_aware(ec));
        co_return false;
    }
    auto& req = parser_->get();
    if (req.method_string().size() + req.target().size() + 10 > opts_.request_line_limit) {
        co_await send_error_and_close(414, nullptr, true);
        co_return false;
    }
    // RFC 9112 §6.1/§6.3: a request whose Transfer-Encoding does not end in chunked, or an HTTP/1.0
    // request with Transfer-Encoding at all, has no reliable framing: reject and close.
    // (Content-Length together with Transfer-Encoding and conflicting Content-Lengths are refused
    // by the parser itself and end up in fail_read.)
    if (req.find(bhttp::field::transfer_encoding) != req.end() && (!parser_->chunked() || req.version() < 11)) {
        co_await send_error_and_close(400, "The request's Transfer-Encoding is not acceptable.", true);
        co_return false;
    }
    if (!parser_->is_done()) {
        auto expect = req[bhttp::field::expect];
        if (!expect.empty()) {
            if (!iequals(expect, "100-continue")) {
                co_await send_error_and_close(417, "Only 'Expect: 100-continue' is supported.", true);
                co_return false;
            }
            static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
            auto [wec, wn] = co_await asio::async_write(socket_, asio::buffer(kContinue), nothrow);
            if (wec) co_return false;
        }
        auto [bec, bn] = co_await bhttp::async_read(socket_, buffer_, *parser_, nothrow);
        if (bec) {
            co_await fail_read(timeout_aware(bec));
            co_return false;
        }
    }
    hook_.expires_never();

    bool close_after = !req.keep_alive();
    Response resp = co_await dispatch();
    if (shard_.draining) close_after = true;

    ConnectionHeader conn = ConnectionHeader::none;
    if (close_after)
        conn = ConnectionHeader::close;
    else if (req.version() < 11)
        conn = ConnectionHeader::keep_alive;
    bool head = ctx_.method == Method::head;
    bool ok = co_await write(resp, conn, head);
    record(route_index_, req.method_string(), ctx_.route, ctx_.path, resp.status, head ? 0 : resp.body.size());
    co_return ok && !close_after;
}

asio::awaitable<Response> Session::dispatch() {
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
    ctx_.headers.clear();
    for (const auto& f : req)
        ctx_.headers.emplace_back(f.name_string(), f.value());
    ctx_.params.clear();
    route_index_ = -1;

    auto rid = req["X-Request-Id"];
    if (sane_request_id(rid)) {
        request_id_.assign(rid);
    } else {
        request_id_.clear();
        util::append_uuid(request_id_, util::uuid_v7());
    }
    ctx_.request_id = request_id_;

    Router::Match m = shard_.router.match(ctx_.method, ctx_.path);
    std::optional<Problem> problem;
    Response resp;
    if (m.handler != nullptr) {
        ctx_.route = m.pattern;
        ctx_.params = std::move(m.params);
        route_index_ = m.route;
        try {
            resp = co_await (*m.handler)(ctx_);
        } catch (const Problem& p) {
            problem = p;
        } catch (const std::exception& e) {
            obs::error("unhandled exception in handler",
                       {{"request_id", ctx_.request_id}, {"route", ctx_.route}, {"error", std::string_view(e.what())}});
            problem = Problem::internal();
        }
    } else if (m.path_known) {
        ctx_.route = m.pattern;
        std::string allow = m.allow + ", OPTIONS";
        if (ctx_.method == Method::options) {
            resp = Response::no_content();
            resp.header("Allow", std::move(allow));
        } else {
            problem = Problem::method_not_allowed(std::move(allow));
        }
    } else {
        problem = Problem::not_found();
    }
    if (problem) resp = render_problem(*problem, ctx_.path, ctx_.request_id);
    co_return resp;
}

asio::awaitable<bool> Session::write(const Response& r, ConnectionHeader conn, bool head) {
    serialize_head(head_, r, request_id_, conn);
    std::array<asio::const_buffer, 2> bufs{asio::buffer(head_), asio::buffer(r.body)};
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
    obs::append_json_string(line, request_id_);
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
    request_id_.clear();
    util::append_uuid(request_id_, util::uuid_v7());
    std::string_view instance;
    std::string_view method;
    // Whatever the parser has seen so far: the request line and fields parsed before the error.
    if (parser_ && !parser_->get().target().empty()) {
        auto target = parser_->get().target();
        instance = target.substr(0, target.find('?'));
        method = parser_->get().method_string();
        auto rid = parser_->get()["X-Request-Id"];
        if (sane_request_id(rid)) request_id_.assign(rid);
    }
    Response r = render_problem(Problem::of_status(status, detail != nullptr ? detail : ""), instance, request_id_);
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
