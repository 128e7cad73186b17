// The HTTP core seen from the outside: each test starts its own mtapi process on an ephemeral
// port and talks to it over real sockets.

#include <signal.h>

#include <algorithm>
#include <atomic>
#include <boost/json/value.hpp>
#include <string>
#include <thread>
#include <vector>

#include "harness.hpp"

namespace mtapi::test {
namespace {

constexpr std::string_view kJson = "application/json; charset=utf-8";
constexpr std::string_view kProblemJson = "application/problem+json; charset=utf-8";

std::string json_string(const boost::json::object& o, std::string_view key) {
    auto v = o.if_contains(key);
    return v != nullptr && v->is_string() ? std::string(v->as_string()) : std::string();
}

std::int64_t json_int(const boost::json::object& o, std::string_view key) {
    auto v = o.if_contains(key);
    return v != nullptr && v->is_int64() ? v->as_int64() : -1;
}

// True when the comma-separated header value lists `token`.
bool lists_token(std::string_view list, std::string_view token) {
    while (!list.empty()) {
        auto comma = list.find(',');
        auto item = list.substr(0, comma);
        while (!item.empty() && item.front() == ' ')
            item.remove_prefix(1);
        while (!item.empty() && item.back() == ' ')
            item.remove_suffix(1);
        if (iequals(item, token)) return true;
        if (comma == std::string_view::npos) break;
        list.remove_prefix(comma + 1);
    }
    return false;
}

// Checks the RFC 9457 shape SPEC.md requires of every error.
void expect_problem(const Response& r, int status, std::string_view instance) {
    SCOPED_TRACE("problem response " + std::to_string(r.status) + ": " + r.body);
    EXPECT_EQ(r.status, status);
    EXPECT_EQ(r.header("Content-Type"), kProblemJson);
    auto body = parse_json_object(r.body);
    ASSERT_TRUE(body) << "body is not a JSON object";
    EXPECT_FALSE(json_string(*body, "type").empty());
    EXPECT_FALSE(json_string(*body, "title").empty());
    EXPECT_EQ(json_int(*body, "status"), status);
    EXPECT_TRUE(body->contains("detail") && body->at("detail").is_string());
    EXPECT_EQ(json_string(*body, "instance"), instance);
    EXPECT_FALSE(json_string(*body, "request_id").empty());
    EXPECT_EQ(json_string(*body, "request_id"), r.header("X-Request-Id"));
}

bool is_closed(ReadStatus s) {
    return s == ReadStatus::eof || s == ReadStatus::reset;
}

milliseconds left_until(Clock::time_point deadline) {
    return std::max(std::chrono::duration_cast<milliseconds>(deadline - Clock::now()), 1ms);
}

// A thread that gets a stop flag and is stopped and joined when it goes out of scope, so a
// failed assertion in the test body never leaves it running.
class StoppableThread {
  public:
    template <class F>
    explicit StoppableThread(F f) : thread_([this, f] { f(stop_); }) {}
    ~StoppableThread() { stop(); }
    StoppableThread(const StoppableThread&) = delete;
    StoppableThread& operator=(const StoppableThread&) = delete;
    void stop() {
        stop_ = true;
        if (thread_.joinable()) thread_.join();
    }

  private:
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

// A request that must be refused with 400: the connection is closed after the answer, so a
// request pipelined behind it in the same write is never answered; fresh connections still are.
void expect_rejected_and_closed(std::uint16_t port, const std::string& request) {
    SCOPED_TRACE("request: " + request.substr(0, 200));
    {
        Connection c(port);
        ASSERT_TRUE(c.connected()) << c.error();
        const std::string follower = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-Id: smuggled\r\n\r\n";
        ASSERT_TRUE(c.send(request + follower)) << c.error();
        auto r = c.read_response(3s);
        ASSERT_TRUE(r) << to_string(c.last_status()) << ": " << c.error();
        EXPECT_EQ(r->status, 400) << r->body;
        EXPECT_EQ(r->header("Content-Type"), kProblemJson);
        EXPECT_EQ(r->header("Connection"), "close");
        EXPECT_TRUE(c.pending().empty()) << "the server answered more after the 400: " << c.pending();
        auto after = c.wait_closed(3s);
        EXPECT_TRUE(is_closed(after)) << "after the 400 the connection was " << to_string(after)
                                      << "; received: " << c.pending();
    }
    Response fresh = http_request(port, "GET", "/health");
    EXPECT_EQ(fresh.status, 200) << fresh.error;
}

// ---------------------------------------------------------------------------------------------

TEST(Health, answers_200_json_status_ok_with_a_request_id) {
    ServerProcess server;
    ASSERT_TRUE(server.start());
    Response r = http_request(server.port(), "GET", "/health");
    ASSERT_EQ(r.status, 200) << r.error;
    EXPECT_EQ(r.header("Content-Type"), kJson);
    EXPECT_EQ(r.body, R"({"status":"ok"})");
    EXPECT_EQ(r.header("Content-Length"), "15");
    EXPECT_FALSE(r.header("X-Request-Id").empty());
}

TEST(RequestId, sane_client_value_is_echoed_and_logged) {
    ServerProcess server;
    ASSERT_TRUE(server.start());
    Response r = http_request(server.port(), "GET", "/health", {{"X-Request-Id", "abc-123"}});
    ASSERT_EQ(r.status, 200) << r.error;
    EXPECT_EQ(r.header("X-Request-Id"), "abc-123");

    auto line = server.wait_for_log(
        [](const auto& o) { return json_string(o, "msg") == "request" && json_string(o, "request_id") == "abc-123"; },
        3s);
    ASSERT_TRUE(line) << "no access-log line for request id abc-123:\n" << server.output_tail();
    EXPECT_EQ(json_string(*line, "method"), "GET");
    EXPECT_EQ(json_string(*line, "route"), "/health");
    EXPECT_EQ(json_string(*line, "path"), "/health");
    EXPECT_EQ(json_int(*line, "status"), 200);
    EXPECT_EQ(json_int(*line, "bytes"), 15);
    EXPECT_TRUE(line->contains("latency_us"));
}

TEST(RequestId, unsafe_client_value_is_replaced_by_a_generated_uuid) {
    ServerProcess server;
    ASSERT_TRUE(server.start());
    const std::vector<std::string> unsafe = {std::string(300, 'a'), "has space", "quo\"te", "semi;colon{}"};
    std::vector<std::string> generated;
    for (const auto& sent : unsafe) {
        SCOPED_TRACE("sent X-Request-Id: " + sent.substr(0, 40));
        Response r = http_request(server.port(), "GET", "/health", {{"X-Request-Id", sent}});
        ASSERT_EQ(r.status, 200) << r.error;
        std::string id = r.header("X-Request-Id");
        EXPECT_NE(id, sent);
        EXPECT_TRUE(is_uuid(id)) << id;
        generated.push_back(id);
    }
    std::sort(generated.begin(), generated.end());
    EXPECT_EQ(std::unique(generated.begin(), generated.end()), generated.end()) << "generated ids repeat";
    for (const auto& id : generated) {
        auto line = server.wait_for_log(
            [&](const auto& o) { return json_string(o, "msg") == "request" && json_string(o, "request_id") == id; },
            3s);
        EXPECT_TRUE(line) << "generated id " << id << " is not in the access log:\n" << server.output_tail();
    }
}

TEST(Routing, unknown_path_is_404_problem_with_instance_and_request_id) {
    ServerProcess server;
    ASSERT_TRUE(server.start());
    Response r = http_request(server.port(), "GET", "/no/such/thing?q=1", {{"X-Request-Id", "nf-1"}});
    ASSERT_EQ(r.status, 404) << r.error;
    expect_problem(r, 404, "/no/such/thing");
    EXPECT_EQ(r.header("X-Request-Id"), "nf-1");
    auto body = parse_json_object(r.body);
    ASSERT_TRUE(body);
    EXPECT_EQ(json_string(*body, "request_id"), "nf-1");
    EXPECT_EQ(json_string(*body, "title"), "Not Found");
}

TEST(Routing, wrong_method_is_405_with_allow_listing_get) {
    ServerProcess server;
    ASSERT_TRUE(server.start());
    Response r = http_request(server.port(), "POST", "/health", {}, "{}");
    ASSERT_EQ(r.status, 405) << r.error;
    expect_problem(r, 405, "/health");
    EXPECT_TRUE(lists_token(r.header("Allow"), "GET")) << "Allow: " << r.header("Allow");
    EXPECT_FALSE(lists_token(r.header("Allow"), "POST")) << "Allow: " << r.header("Allow");
}

TEST(Routing, options_is_204_with_allow) {
    ServerProcess server;
    ASSERT_TRUE(server.start());
    Response r = http_request(server.port(), "OPTIONS", "/health");
    ASSERT_EQ(r.status, 204) << r.error;
    EXPECT_TRUE(lists_token(r.header("Allow"), "GET")) << "Allow: " << r.header("Allow");
    EXPECT_TRUE(r.body.empty());
}

TEST(Pipelining, hundred_requests_in_one_write_are_answered_in_order) {
    ServerProcess server;
    ASSERT_TRUE(server.start());
    Connection c(server.port());
    ASSERT_TRUE(c.connected()) << c.error();

    // Three kinds of request so a reordering or a lost response shows in statuses and bodies as
    // well as in the ids; the sleeps make later requests quicker than earlier ones.
    constexpr int kCount = 100;
    std::string batch;
    for (int i = 0; i < kCount; ++i) {
        Headers h = {{"X-Request-Id", "p-" + std::to_string(i)}};
        if (i % 3 == 0)
            batch += build_request("GET", "/health", h);
        else if (i % 3 == 1)
            batch += build_request("GET", "/__test/sleep?ms=" + std::to_string((kCount - i) % 4), h);
        else
            batch += build_request("GET", "/nope-" + std::to_string(i), h);
    }
    ASSERT_TRUE(c.send(batch)) << c.error();

    auto deadline = Clock::now() + 10s;
    for (int i = 0; i < kCount; ++i) {
        SCOPED_TRACE("response " + std::to_string(i));
        auto r = c.read_response(left_until(deadline));
        ASSERT_TRUE(r) << to_string(c.last_status()) << ": " << c.error();
        ASSERT_EQ(r->header("X-Request-Id"), "p-" + std::to_string(i));
        if (i % 3 == 0) {
            EXPECT_EQ(r->status, 200);
            EXPECT_EQ(r->body, R"({"status":"ok"})");
        } else if (i % 3 == 1) {
            EXPECT_EQ(r->status, 200);
            EXPECT_EQ(r->body, "{\"slept_ms\":" + std::to_string((kCount - i) % 4) + "}");
        } else {
            EXPECT_EQ(r->status, 404);
            auto body = parse_json_object(r->body);
            ASSERT_TRUE(body) << r->body;
            EXPECT_EQ(json_string(*body, "instance"), "/nope-" + std::to_string(i));
        }
        EXPECT_NE(r->header("Connection"), "close");
    }
    EXPECT_TRUE(c.pending().empty()) << "unexpected extra bytes: " << c.pending().substr(0, 200);
}

TEST(BodyLimit, two_mib_body_gets_413_problem_not_a_reset) {
    ServerProcess server;
    ASSERT_TRUE(server.start());
    Connection c(server.port());
    ASSERT_TRUE(c.connected()) << c.error();
    constexpr std::size_t kSize = 2 * 1024 * 1024;
    std::string request =
        build_request("POST", "/__test/echo", {{"Content-Length", std::to_string(kSize)}}) + std::string(kSize, 'x');
    // The server may answer before the body is complete; the answer must survive either way.
    bool sent = c.send(request);
    auto r = c.read_response(5s);
    ASSERT_TRUE(r) << "no 413 response (" << to_string(c.last_status()) << ": " << c.error()
                   << "); whole body sent: " << sent;
    expect_problem(*r, 413, "/__test/echo");
    EXPECT_EQ(r->header("Connection"), "close");
}

TEST(BodyLimit, body_just_under_one_mib_is_accepted) {
    ServerProcess server;
    ASSERT_TRUE(server.start());
    constexpr std::size_t kSize = 1024 * 1024 - 1;
    Response r = http_request(server.port(), "POST", "/__test/echo", {{"Content-Type", "application/octet-stream"}},
                              std::string(kSize, 'y'));
    ASSERT_EQ(r.status, 200) << r.error << r.body;
    EXPECT_EQ(r.body, "{\"bytes\":" + std::to_string(kSize) + "}");
}

TEST(BodyLimit, chunked_body_over_the_limit_gets_413) {
    ServerProcess server;
    ASSERT_TRUE(server.start());
    Connection c(server.port());
    ASSERT_TRUE(c.connected()) << c.error();
    std::string request = build_request("POST", "/__test/echo", {{"Transfer-Encoding", "chunked"}});
    const std::string chunk(64 * 1024, 'z');
    for (int i = 0; i < 24; ++i)  // 1.5 MiB in total
        request += "10000\r\n" + chunk + "\r\n";
    request += "0\r\n\r\n";
    bool sent = c.send(request);
    auto r = c.read_response(5s);
    ASSERT_TRUE(r) << "no 413 response (" << to_string(c.last_status()) << ": " << c.error()
                   << "); whole body sent: " << sent;
    expect_problem(*r, 413, "/__test/echo");
}

TEST(HeaderLimit, sixty_four_kib_header_gets_431) {
    ServerProcess server;
    ASSERT_TRUE(server.start());
    Connection c(server.port());
    ASSERT_TRUE(c.connected()) << c.error();
    bool sent = c.send(build_request("GET", "/health", {{"X-Filler", std::string(64 * 1024, 'f')}}));
    auto r = c.read_response(5s);
    ASSERT_TRUE(r) << "no 431 response (" << to_string(c.last_status()) << ": " << c.error()
                   << "); whole request sent: " << sent;
    EXPECT_EQ(r->status, 431);
    EXPECT_EQ(r->header("Content-Type"), kProblemJson);
    EXPECT_EQ(r->header("Connection"), "close");
}

TEST(HeaderLimit, many_header_fields_over_the_limit_get_431) {
    ServerProcess server;
    ASSERT_TRUE(server.start());
    Connection c(server.port());
    ASSERT_TRUE(c.connected()) << c.error();
    Headers fields;
    for (int i = 0; i < 600; ++i)  // about 64 KiB in 600 fields
        fields.emplace_back("X-Filler-" + std::to_string(i), std::string(100, 'f'));
    bool sent = c.send(build_request("GET", "/health", fields));
    auto r = c.read_response(5s);
    ASSERT_TRUE(r) << "no 431 response (" << to_string(c.last_status()) << ": " << c.error()
                   << "); whole request sent: " << sent;
    EXPECT_EQ(r->status, 431);
    EXPECT_EQ(r->header("Content-Type"), kProblemJson);
    EXPECT_EQ(r->header("Connection"), "close");
}

TEST(HeaderLimit, headers_well_under_the_limit_are_accepted) {
    ServerProcess server;
    ASSERT_TRUE(server.start());
    Response r = http_request(server.port(), "GET", "/health", {{"X-Filler", std::string(8 * 1024, 'f')}});
    EXPECT_EQ(r.status, 200) << r.error;
}

TEST(HeaderLimit, request_line_over_eight_kib_gets_414) {
    ServerProcess server;
    ASSERT_TRUE(server.start());
    Connection c(server.port());
    ASSERT_TRUE(c.connected()) << c.error();
    const std::string path = "/" + std::string(9 * 1024, 'a');
    bool sent = c.send(build_request("GET", path));
    auto r = c.read_response(5s);
    ASSERT_TRUE(r) << "no 414 response (" << to_string(c.last_status()) << ": " << c.error()
                   << "); whole request sent: " << sent;
    EXPECT_EQ(r->status, 414);
    EXPECT_EQ(r->header("Content-Type"), kProblemJson);
}

TEST(Smuggling, content_length_with_transfer_encoding_is_400_and_closes) {
    ServerProcess server;
    ASSERT_TRUE(server.start());
    expect_rejected_and_closed(server.port(),
                               "POST /__test/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n"
                               "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
    expect_rejected_and_closed(server.port(),
                               "POST /__test/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
                               "Content-Length: 5\r\n\r\n0\r\n\r\n");
}

TEST(Smuggling, conflicting_content_lengths_are_400_and_close) {
    ServerProcess server;
    ASSERT_TRUE(server.start());
    expect_rejected_and_closed(server.port(),
                               "POST /__test/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n"
                               "Content-Length: 6\r\n\r\nhello!");
    expect_rejected_and_closed(server.port(),
                               "POST /__test/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5, 6\r\n\r\nhello!");
}

TEST(Smuggling, transfer_encoding_not_ending_in_chunked_is_400) {
    ServerProcess server;
    ASSERT_TRUE(server.start());
    expect_rejected_and_closed(server.port(),
                               "POST /__test/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: gzip\r\n\r\n");
    expect_rejected_and_closed(server.port(),
                               "POST /__test/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked, gzip\r\n"
                               "\r\n0\r\n\r\n");
}

TEST(Smuggling, transfer_encoding_in_http_1_0_is_400) {
    ServerProcess server;
    ASSERT_TRUE(server.start());
    expect_rejected_and_closed(server.port(),
                               "POST /__test/echo HTTP/1.0\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                               "5\r\nhello\r\n0\r\n\r\n");
}

TEST(Smuggling, chunked_applied_twice_is_400) {
    ServerProcess server;
    ASSERT_TRUE(server.start());
    expect_rejected_and_closed(
        server.port(),
        "POST /__test/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked, chunked\r\n"
        "\r\n0\r\n\r\n");
    expect_rejected_and_closed(server.port(),
                               "POST /__test/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
                               "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
}

TEST(Smuggling, invalid_chunk_size_is_400) {
    ServerProcess server;
    ASSERT_TRUE(server.start());
    expect_rejected_and_closed(server.port(),
                               "POST /__test/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                               "zz\r\nhello\r\n0\r\n\r\n");
}

TEST(Smuggling, whitespace_before_header_colon_is_400) {
    ServerProcess server;
    ASSERT_TRUE(server.start());
    expect_rejected_and_closed(server.port(),
                               "POST /__test/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length : 5\r\n\r\nhello");
}

TEST(Slowloris, one_byte_per_second_client_does_not_delay_others) {
    ServerProcess server({{"MTAPI_READ_TIMEOUT", "10s"}});
    ASSERT_TRUE(server.start());
    Connection slow(server.port());
    ASSERT_TRUE(slow.connected()) << slow.error();

    std::atomic<int> slow_bytes{0};
    std::atomic<bool> slow_cut{false};
    StoppableThread trickle([&](const std::atomic<bool>& stop) {
        const std::string head = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + std::string(64, 's');
        for (char ch : head) {
            if (stop) return;
            if (!slow.send(std::string_view(&ch, 1), 1s)) {
                slow_cut = true;
                return;
            }
            ++slow_bytes;
            for (int tick = 0; tick < 10 && !stop; ++tick) {
                if (slow.wait_readable(100ms) != ReadStatus::timeout) {
                    slow_cut = true;
                    return;
                }
            }
        }
    });

    std::this_thread::sleep_for(1200ms);  // the slow client is now part-way through its head
    milliseconds worst{0};
    for (int i = 0; i < 20; ++i) {
        SCOPED_TRACE("request " + std::to_string(i));
        Connection c(server.port());
        ASSERT_TRUE(c.connected()) << c.error();
        auto t = Clock::now();
        ASSERT_TRUE(c.send(build_request("GET", "/health"))) << c.error();
        auto r = c.read_response(2s);
        auto took = since(t);
        ASSERT_TRUE(r) << c.error();
        EXPECT_EQ(r->status, 200);
        worst = std::max(worst, took);
        std::this_thread::sleep_for(50ms);
    }
    int bytes_during = slow_bytes.load();
    bool cut_during = slow_cut.load();
    trickle.stop();
    EXPECT_LE(worst.count(), 100) << "slowest normal request took " << worst.count() << " ms";
    EXPECT_GE(bytes_during, 2) << "the slow client was not sending during the measurement";
    EXPECT_FALSE(cut_during) << "the slow client was answered or cut before the measurement ended";
}

TEST(Slowloris, slow_client_is_cut_after_the_read_timeout) {
    ServerProcess server({{"MTAPI_READ_TIMEOUT", "2s"}});
    ASSERT_TRUE(server.start());
    Connection slow(server.port());
    ASSERT_TRUE(slow.connected()) << slow.error();
    const std::string head = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + std::string(64, 's');
    auto t0 = Clock::now();
    ReadStatus outcome = ReadStatus::timeout;
    for (std::size_t i = 0; i < head.size() && since(t0) < 6s; ++i) {
        if (!slow.send(std::string_view(&head[i], 1), 1s)) {
            outcome = ReadStatus::reset;
            break;
        }
        outcome = slow.wait_readable(1s);
        if (outcome != ReadStatus::timeout) break;
    }
    auto cut_after = since(t0);
    ASSERT_NE(outcome, ReadStatus::timeout)
        << "the slow connection was still open after " << cut_after.count() << " ms";
    if (outcome == ReadStatus::ok) {
        auto r = slow.read_response(2s);
        ASSERT_TRUE(r) << to_string(slow.last_status()) << ": " << slow.error();
        EXPECT_EQ(r->status, 408);
    }
    EXPECT_GE(cut_after.count(), 1500);
    EXPECT_LE(cut_after.count(), 4000);
}

TEST(IdleTimeout, idle_keep_alive_connection_is_closed_after_the_idle_timeout) {
    ServerProcess server({{"MTAPI_IDLE_TIMEOUT", "1s"}});
    ASSERT_TRUE(server.start());
    Connection c(server.port());
    ASSERT_TRUE(c.connected()) << c.error();
    ASSERT_TRUE(c.send(build_request("GET", "/health"))) << c.error();
    auto r = c.read_response(2s);
    ASSERT_TRUE(r) << c.error();
    EXPECT_EQ(r->status, 200);
    EXPECT_NE(r->header("Connection"), "close");

    auto t0 = Clock::now();
    auto outcome = c.wait_closed(3s);
    auto closed_after = since(t0);
    EXPECT_TRUE(is_closed(outcome)) << "connection " << to_string(outcome) << " after " << closed_after.count()
                                    << " ms";
    EXPECT_GE(closed_after.count(), 700);
    EXPECT_LE(closed_after.count(), 3000);
}

TEST(Concurrency, five_hundred_concurrent_connections_are_all_served) {
    constexpr int kCount = 500;
    auto limit = raise_open_file_limit(4096);
    ASSERT_GE(limit, 600u) << "RLIMIT_NOFILE cannot be raised enough for " << kCount << " connections";
    ServerProcess server;
    ASSERT_TRUE(server.start());

    std::vector<Connection> conns;
    conns.reserve(kCount);
    for (int i = 0; i < kCount; ++i) {
        conns.emplace_back(server.port());
        ASSERT_TRUE(conns.back().connected()) << "connection " << i << ": " << conns.back().error();
    }
    const std::string request = build_request("GET", "/health");
    for (int i = 0; i < kCount; ++i)
        ASSERT_TRUE(conns[static_cast<std::size_t>(i)].send(request)) << "connection " << i;

    auto deadline = Clock::now() + 15s;
    int ok = 0;
    std::string first_failure;
    for (int i = 0; i < kCount; ++i) {
        auto& c = conns[static_cast<std::size_t>(i)];
        auto r = c.read_response(left_until(deadline));
        if (r && r->status == 200 && r->body == R"({"status":"ok"})") {
            ++ok;
        } else if (first_failure.empty()) {
            first_failure = "connection " + std::to_string(i) + ": " +
                            (r ? "status " + std::to_string(r->status) : std::string(c.error()));
        }
    }
    EXPECT_EQ(ok, kCount) << first_failure;

    // All of them are still open at the same time.
    Response metrics = http_request(server.port(), "GET", "/metrics");
    ASSERT_EQ(metrics.status, 200) << metrics.error;
    auto pos = metrics.body.find("\nmtapi_http_connections_open ");
    ASSERT_NE(pos, std::string::npos) << metrics.body;
    long open = std::stol(metrics.body.substr(pos + std::string_view("\nmtapi_http_connections_open ").size()));
    EXPECT_GE(open, kCount);
}

TEST(GracefulShutdown, sigterm_lets_200_in_flight_requests_finish_and_exits_0) {
    constexpr int kCount = 200;
    raise_open_file_limit(4096);
    ServerProcess server({{"MTAPI_DRAIN_TIMEOUT", "5s"}});
    ASSERT_TRUE(server.start());

    std::vector<Connection> conns;
    conns.reserve(kCount);
    for (int i = 0; i < kCount; ++i) {
        conns.emplace_back(server.port());
        auto& c = conns.back();
        ASSERT_TRUE(c.connected()) << "connection " << i << ": " << c.error();
        ASSERT_TRUE(c.send(build_request("GET", "/__test/sleep?ms=1500", {{"X-Request-Id", "s-" + std::to_string(i)}})))
            << c.error();
    }
    std::this_thread::sleep_for(300ms);  // the server has read every request by now
    ASSERT_TRUE(server.signal(SIGTERM));
    auto signalled = Clock::now();

    // New connections are refused once the drain has begun.
    ASSERT_TRUE(server.wait_for_log([](const auto& o) { return json_string(o, "msg") == "shutdown requested"; }, 2s))
        << server.output_tail();
    std::this_thread::sleep_for(100ms);
    {
        Connection late(server.port(), 1s);
        if (late.connected()) {
            late.send(build_request("GET", "/health"), 1s);
            auto r = late.read_response(1s);
            EXPECT_FALSE(r) << "a connection made after SIGTERM was answered with status " << r->status;
            EXPECT_TRUE(is_closed(late.last_status()))
                << "a connection made after SIGTERM was left open: " << to_string(late.last_status());
        }
    }

    auto deadline = Clock::now() + 8s;
    int ok = 0;
    std::string first_failure;
    for (int i = 0; i < kCount; ++i) {
        auto& c = conns[static_cast<std::size_t>(i)];
        auto r = c.read_response(left_until(deadline));
        bool good = r && r->status == 200 && r->body == R"({"slept_ms":1500})" && r->header("Connection") == "close" &&
                    r->header("X-Request-Id") == "s-" + std::to_string(i);
        if (good) {
            ++ok;
        } else if (first_failure.empty()) {
            first_failure = "connection " + std::to_string(i) + ": " +
                            (r ? "status " + std::to_string(r->status) + ", Connection: " + r->header("Connection")
                               : std::string(to_string(c.last_status())) + " " + c.error());
        }
    }
    EXPECT_EQ(ok, kCount) << first_failure;

    auto code = server.wait_exit(6s);
    ASSERT_TRUE(code) << "mtapi still running after SIGTERM:\n" << server.output_tail();
    EXPECT_EQ(*code, 0) << server.output_tail();
    EXPECT_LT(since(signalled).count(), 5000) << "drain took longer than MTAPI_DRAIN_TIMEOUT";
}

TEST(GracefulShutdown, sigterm_closes_idle_keep_alive_connections_promptly) {
    ServerProcess server({{"MTAPI_DRAIN_TIMEOUT", "5s"}});
    ASSERT_TRUE(server.start());
    // One request in flight keeps the server draining for a while.
    Connection busy(server.port());
    ASSERT_TRUE(busy.connected()) << busy.error();
    ASSERT_TRUE(busy.send(build_request("GET", "/__test/sleep?ms=1500"))) << busy.error();

    std::vector<Connection> idle;
    for (int i = 0; i < 3; ++i) {
        idle.emplace_back(server.port());
        auto& c = idle.back();
        ASSERT_TRUE(c.connected()) << c.error();
        ASSERT_TRUE(c.send(build_request("GET", "/health"))) << c.error();
        auto r = c.read_response(2s);
        ASSERT_TRUE(r) << c.error();
        ASSERT_EQ(r->status, 200);
    }
    std::this_thread::sleep_for(200ms);
    ASSERT_TRUE(server.signal(SIGTERM));
    auto signalled = Clock::now();
    for (auto& c : idle) {
        auto outcome = c.wait_closed(1s);
        EXPECT_TRUE(is_closed(outcome)) << "idle connection " << to_string(outcome) << " at "
                                        << since(signalled).count() << " ms after SIGTERM";
    }
    EXPECT_LT(since(signalled).count(), 800) << "idle connections were not closed promptly";

    auto r = busy.read_response(4s);
    ASSERT_TRUE(r) << busy.error();
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->header("Connection"), "close");
    auto code = server.wait_exit(5s);
    ASSERT_TRUE(code) << server.output_tail();
    EXPECT_EQ(*code, 0);
}

TEST(Config, invalid_threads_value_exits_2_with_one_stderr_line) {
    ServerProcess server({{"MTAPI_THREADS", "abc"}});
    ASSERT_TRUE(server.launch());
    auto code = server.wait_exit(5s);
    ASSERT_TRUE(code) << "mtapi did not exit:\n" << server.output_tail();
    EXPECT_EQ(*code, 2);
    auto err = server.lines(Stream::err);
    ASSERT_EQ(err.size(), 1u) << server.output_tail();
    EXPECT_NE(err[0].find("MTAPI_THREADS"), std::string::npos) << err[0];
    for (const auto& line : server.lines(Stream::out))
        EXPECT_EQ(line.find("listening"), std::string::npos) << line;
}

TEST(Head, head_health_has_content_length_15_and_no_body) {
    ServerProcess server;
    ASSERT_TRUE(server.start());
    Connection c(server.port());
    ASSERT_TRUE(c.connected()) << c.error();
    // A GET pipelined behind the HEAD: any body bytes after the HEAD response would corrupt it.
    ASSERT_TRUE(c.send(build_request("HEAD", "/health") + build_request("GET", "/health", {{"X-Request-Id", "after"}})))
        << c.error();
    auto head = c.read_response(2s, true);
    ASSERT_TRUE(head) << c.error();
    EXPECT_EQ(head->status, 200);
    EXPECT_EQ(head->header("Content-Length"), "15");
    EXPECT_EQ(head->header("Content-Type"), kJson);
    auto get = c.read_response(2s);
    ASSERT_TRUE(get) << "response after HEAD: " << c.error();
    EXPECT_EQ(get->status, 200);
    EXPECT_EQ(get->header("X-Request-Id"), "after");
    EXPECT_EQ(get->body, R"({"status":"ok"})");
}

TEST(ExpectContinue, server_sends_100_continue_before_the_body_then_200) {
    ServerProcess server;
    ASSERT_TRUE(server.start());
    Connection c(server.port());
    ASSERT_TRUE(c.connected()) << c.error();
    const std::string body = "hello world";
    ASSERT_TRUE(c.send(build_request("POST", "/__test/echo",
                                     {{"Expect", "100-continue"}, {"Content-Length", std::to_string(body.size())}})))
        << c.error();
    auto interim = c.read_response(2s);
    ASSERT_TRUE(interim) << "no 100 Continue before the body was sent: " << c.error();
    EXPECT_EQ(interim->status, 100);
    EXPECT_EQ(interim->version, "HTTP/1.1");
    ASSERT_TRUE(c.send(body)) << c.error();
    auto r = c.read_response(2s);
    ASSERT_TRUE(r) << c.error();
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->body, "{\"bytes\":11}");
}

TEST(Metrics, counts_requests_by_route_and_exposes_latency_histograms) {
    ServerProcess server;
    ASSERT_TRUE(server.start());
    Connection c(server.port());
    ASSERT_TRUE(c.connected()) << c.error();
    // Same connection: the /health request is recorded before the next request is read.
    ASSERT_TRUE(c.send(build_request("GET", "/health"))) << c.error();
    auto health = c.read_response(2s);
    ASSERT_TRUE(health) << c.error();
    ASSERT_EQ(health->status, 200);
    ASSERT_TRUE(c.send(build_request("GET", "/metrics"))) << c.error();
    auto r = c.read_response(2s);
    ASSERT_TRUE(r) << c.error();
    ASSERT_EQ(r->status, 200);
    EXPECT_EQ(r->header("Content-Type").rfind("text/plain", 0), 0u) << r->header("Content-Type");

    bool counter = false;
    bool bucket = false;
    std::string_view text = r->body;
    while (!text.empty()) {
        auto eol = text.find('\n');
        std::string_view line = text.substr(0, eol);
        text = eol == std::string_view::npos ? std::string_view{} : text.substr(eol + 1);
        bool health_2xx = line.find("route=\"/health\"") != std::string_view::npos &&
                          line.find("status_class=\"2xx\"") != std::string_view::npos;
        if (line.rfind("mtapi_http_requests_total{", 0) == 0 && health_2xx) {
            auto value = line.substr(line.rfind(' ') + 1);
            counter = value != "0";
        }
        if (line.rfind("mtapi_http_request_duration_seconds_bucket{", 0) == 0 && health_2xx) bucket = true;
    }
    EXPECT_TRUE(counter) << "no mtapi_http_requests_total for /health:\n" << r->body;
    EXPECT_TRUE(bucket) << "no mtapi_http_request_duration_seconds_bucket for /health:\n" << r->body;
}

}  // namespace
}  // namespace mtapi::test
