#include "harness.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <sstream>

extern char** environ;

namespace mtapi::test {
namespace {

constexpr std::size_t kMaxResponseHead = 1024 * 1024;

int remaining_ms(Clock::time_point deadline) {
    auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return 0;
    return static_cast<int>(std::min<long long>(left, 1'000'000));
}

std::string errno_text(int err) {
    return std::strerror(err);
}

char lower(char c) {
    return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
        s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
        s.remove_suffix(1);
    return s;
}

bool parse_uint(std::string_view s, std::uint64_t& out, int base = 10) {
    if (s.empty()) return false;
    std::uint64_t v = 0;
    for (char c : s) {
        int d = -1;
        if (c >= '0' && c <= '9') d = c - '0';
        if (base == 16 && c >= 'a' && c <= 'f') d = c - 'a' + 10;
        if (base == 16 && c >= 'A' && c <= 'F') d = c - 'A' + 10;
        if (d < 0) return false;
        if (v > (UINT64_MAX - static_cast<std::uint64_t>(d)) / static_cast<std::uint64_t>(base)) return false;
        v = v * static_cast<std::uint64_t>(base) + static_cast<std::uint64_t>(d);
    }
    out = v;
    return true;
}

// Decodes a chunked body starting at data[pos]; on success `pos` ends after the last CRLF.
ParseResult parse_chunked(std::string_view data, std::size_t& pos, std::string& body) {
    for (;;) {
        auto eol = data.find("\r\n", pos);
        if (eol == std::string_view::npos) return ParseResult::incomplete;
        auto size_text = data.substr(pos, eol - pos);
        size_text = trim(size_text.substr(0, size_text.find(';')));
        std::uint64_t size = 0;
        if (!parse_uint(size_text, size, 16)) return ParseResult::malformed;
        pos = eol + 2;
        if (size == 0) {
            // Trailer fields, then an empty line.
            for (;;) {
                auto end = data.find("\r\n", pos);
                if (end == std::string_view::npos) return ParseResult::incomplete;
                bool empty = end == pos;
                pos = end + 2;
                if (empty) return ParseResult::complete;
            }
        }
        if (data.size() - pos < size + 2) return ParseResult::incomplete;
        body.append(data.substr(pos, size));
        if (data.substr(pos + size, 2) != "\r\n") return ParseResult::malformed;
        pos += size + 2;
    }
}

}  // namespace

milliseconds since(Clock::time_point start) {
    return std::chrono::duration_cast<milliseconds>(Clock::now() - start);
}

Env default_test_env() {
    // Rate limits far above what any suite sends: only the rate limit suites, which set their
    // own, are ever limited (suites run in parallel from one address against one Redis).
    return {{"MTAPI_LISTEN", "127.0.0.1:0"},
            {"MTAPI_THREADS", "2"},
            {"MTAPI_TEST_ENDPOINTS", "on"},
            {"MTAPI_RATE_LIMIT_FREE", "1000000000:1000000"},
            {"MTAPI_RATE_LIMIT_STANDARD", "1000000000:1000000"},
            {"MTAPI_RATE_LIMIT_ENTERPRISE", "1000000000:1000000"},
            {"MTAPI_LOGIN_ACCOUNT_ATTEMPTS", "1000000"},
            {"MTAPI_LOGIN_ADDRESS_ATTEMPTS", "1000000"}};
}

bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (lower(a[i]) != lower(b[i])) return false;
    return true;
}

std::optional<boost::json::object> parse_json_object(std::string_view text) {
    boost::system::error_code ec;
    boost::json::value v = boost::json::parse(text, ec);
    if (ec || !v.is_object()) return std::nullopt;
    return std::move(v.as_object());
}

bool is_uuid(std::string_view text) {
    if (text.size() != 36) return false;
    for (std::size_t i = 0; i < text.size(); ++i) {
        char c = text[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-') return false;
        } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) {
            return false;
        }
    }
    return true;
}

rlim_t raise_open_file_limit(rlim_t wanted) {
    rlimit rl{};
    if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return 0;
    if (rl.rlim_cur >= wanted) return rl.rlim_cur;
    rlimit next = rl;
    next.rlim_cur = (rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= wanted) ? wanted : rl.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &next) != 0) return rl.rlim_cur;
    return next.rlim_cur;
}

// ---------------------------------------------------------------------------------------------
// ServerProcess

ServerProcess::ServerProcess(Env env, std::vector<std::string> args) : env_(std::move(env)), args_(std::move(args)) {}

ServerProcess::~ServerProcess() {
    if (pid_ > 0 && !exit_code_) {
        ::kill(pid_, SIGKILL);
        reap(true);
    }
    stop_reader_ = true;
    if (reader_.joinable()) reader_.join();
}

::testing::AssertionResult ServerProcess::launch() {
    if (pid_ > 0) return ::testing::AssertionFailure() << "the server process was already started";
    const char* binary = std::getenv("MTAPI_BINARY");
    if (binary == nullptr || *binary == '\0')
        return ::testing::AssertionFailure()
               << "MTAPI_BINARY is not set: point it at the mtapi executable (ctest sets it; by hand: "
                  "MTAPI_BINARY=build/release/mtapi build/release/tests/mtapi_integration_tests)";
    if (::access(binary, X_OK) != 0)
        return ::testing::AssertionFailure()
               << "MTAPI_BINARY=" << binary << " is not executable: " << errno_text(errno);

    // Environment: inherited, then the test defaults, then the test's own settings.
    Env merged;
    for (char** e = environ; *e != nullptr; ++e) {
        std::string_view kv(*e);
        auto eq = kv.find('=');
        if (eq == std::string_view::npos) continue;
        merged.emplace_back(std::string(kv.substr(0, eq)), std::string(kv.substr(eq + 1)));
    }
    auto apply = [&merged](const Env& over) {
        for (const auto& [k, v] : over) {
            auto it = std::find_if(merged.begin(), merged.end(), [&](const auto& p) { return p.first == k; });
            if (it != merged.end())
                it->second = v;
            else
                merged.emplace_back(k, v);
        }
    };
    apply(default_test_env());
    apply(env_);
    std::vector<std::string> env_strings;
    env_strings.reserve(merged.size());
    for (const auto& [k, v] : merged)
        env_strings.push_back(k + "=" + v);
    std::vector<char*> envp;
    for (auto& s : env_strings)
        envp.push_back(s.data());
    envp.push_back(nullptr);

    std::string binary_path(binary);
    std::vector<std::string> argv_strings;
    argv_strings.push_back(binary_path);
    argv_strings.insert(argv_strings.end(), args_.begin(), args_.end());
    std::vector<char*> argv;
    for (auto& s : argv_strings)
        argv.push_back(s.data());
    argv.push_back(nullptr);

    int out_pipe[2];
    int err_pipe[2];
    if (::pipe2(out_pipe, O_CLOEXEC) != 0) return ::testing::AssertionFailure() << "pipe: " << errno_text(errno);
    if (::pipe2(err_pipe, O_CLOEXEC) != 0) {
        ::close(out_pipe[0]);
        ::close(out_pipe[1]);
        return ::testing::AssertionFailure() << "pipe: " << errno_text(errno);
    }
    int devnull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    const pid_t parent = ::getpid();

    pid_t pid = ::fork();
    if (pid < 0) {
        int err = errno;
        for (int fd : {out_pipe[0], out_pipe[1], err_pipe[0], err_pipe[1], devnull})
            if (fd >= 0) ::close(fd);
        return ::testing::AssertionFailure() << "fork: " << errno_text(err);
    }
    if (pid == 0) {
        // Child: only async-signal-safe calls until exec. The server dies with the test process.
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (::getppid() != parent) ::_exit(127);
        if (devnull >= 0) ::dup2(devnull, STDIN_FILENO);
        ::dup2(out_pipe[1], STDOUT_FILENO);
        ::dup2(err_pipe[1], STDERR_FILENO);
        ::execve(argv[0], argv.data(), envp.data());
        static constexpr char kMsg[] = "exec of MTAPI_BINARY failed\n";
        [[maybe_unused]] auto n = ::write(STDERR_FILENO, kMsg, sizeof(kMsg) - 1);
        ::_exit(127);
    }
    pid_ = pid;
    ::close(out_pipe[1]);
    ::close(err_pipe[1]);
    if (devnull >= 0) ::close(devnull);
    reader_ = std::thread([this, out = out_pipe[0], err = err_pipe[0]] { reader_loop(out, err); });
    return ::testing::AssertionSuccess();
}

::testing::AssertionResult ServerProcess::start(milliseconds timeout) {
    auto launched = launch();
    if (!launched) return launched;
    auto deadline = Clock::now() + timeout;
    std::unique_lock lock(mutex_);
    bool ready = changed_.wait_until(lock, deadline, [this] { return port_ != 0 || output_closed_; });
    if (ready && port_ != 0) return ::testing::AssertionSuccess();
    lock.unlock();
    auto code = wait_exit(200ms);
    auto failure = ::testing::AssertionFailure();
    if (code)
        failure << "mtapi exited with code " << *code << " before listening";
    else
        failure << "mtapi did not report a listening address within " << timeout.count() << " ms";
    failure << "; output:\n" << output_tail();
    return failure;
}

std::uint16_t ServerProcess::port() const {
    std::lock_guard lock(mutex_);
    return port_;
}

void ServerProcess::reader_loop(int out_fd, int err_fd) {
    std::string partial[2];
    pollfd fds[2] = {{out_fd, POLLIN, 0}, {err_fd, POLLIN, 0}};
    int open_count = 2;
    char buf[65536];
    while (open_count > 0 && !stop_reader_) {
        int n = ::poll(fds, 2, 100);
        if (n < 0 && errno != EINTR) break;
        for (int i = 0; i < 2; ++i) {
            if (fds[i].fd < 0 || (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
            ssize_t got = ::read(fds[i].fd, buf, sizeof(buf));
            if (got < 0 && errno == EINTR) continue;
            if (got <= 0) {
                if (!partial[i].empty()) add_line(i == 0 ? Stream::out : Stream::err, std::move(partial[i]));
                partial[i].clear();
                ::close(fds[i].fd);
                fds[i].fd = -1;
                --open_count;
                continue;
            }
            partial[i].append(buf, static_cast<std::size_t>(got));
            std::size_t start = 0;
            for (;;) {
                auto nl = partial[i].find('\n', start);
                if (nl == std::string::npos) break;
                add_line(i == 0 ? Stream::out : Stream::err, partial[i].substr(start, nl - start));
                start = nl + 1;
            }
            partial[i].erase(0, start);
        }
    }
    for (auto& f : fds)
        if (f.fd >= 0) ::close(f.fd);
    std::lock_guard lock(mutex_);
    output_closed_ = true;
    changed_.notify_all();
}

void ServerProcess::add_line(Stream stream, std::string line) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    std::uint16_t port = 0;
    if (stream == Stream::out && line.find("\"listening\"") != std::string::npos) {
        if (auto obj = parse_json_object(line)) {
            auto msg = obj->if_contains("msg");
            auto url = obj->if_contains("url");
            if (msg && msg->is_string() && msg->as_string() == "listening" && url && url->is_string()) {
                std::string_view u = url->as_string();
                std::uint64_t p = 0;
                auto colon = u.rfind(':');
                if (colon != std::string_view::npos && parse_uint(u.substr(colon + 1), p) && p > 0 && p < 65536)
                    port = static_cast<std::uint16_t>(p);
            }
        }
    }
    std::lock_guard lock(mutex_);
    if (port != 0 && port_ == 0) port_ = port;
    (stream == Stream::out ? out_lines_ : err_lines_).push_back(std::move(line));
    changed_.notify_all();
}

std::vector<std::string> ServerProcess::lines(Stream stream) const {
    std::lock_guard lock(mutex_);
    return stream == Stream::out ? out_lines_ : err_lines_;
}

std::optional<std::string> ServerProcess::wait_for_line(const std::function<bool(std::string_view)>& pred,
                                                        milliseconds timeout, Stream stream) {
    auto deadline = Clock::now() + timeout;
    std::size_t checked = 0;
    std::unique_lock lock(mutex_);
    for (;;) {
        const auto& ls = stream == Stream::out ? out_lines_ : err_lines_;
        for (; checked < ls.size(); ++checked)
            if (pred(ls[checked])) return ls[checked];
        if (output_closed_) return std::nullopt;
        if (changed_.wait_until(lock, deadline) == std::cv_status::timeout) {
            const auto& again = stream == Stream::out ? out_lines_ : err_lines_;
            for (; checked < again.size(); ++checked)
                if (pred(again[checked])) return again[checked];
            return std::nullopt;
        }
    }
}

std::optional<boost::json::object> ServerProcess::wait_for_log(
    const std::function<bool(const boost::json::object&)>& pred, milliseconds timeout) {
    std::optional<boost::json::object> found;
    wait_for_line(
        [&](std::string_view line) {
            if (line.empty() || line.front() != '{') return false;
            auto obj = parse_json_object(line);
            if (!obj || !pred(*obj)) return false;
            found = std::move(obj);
            return true;
        },
        timeout);
    return found;
}

bool ServerProcess::signal(int sig) {
    if (pid_ <= 0 || exit_code_) return false;
    return ::kill(pid_, sig) == 0;
}

bool ServerProcess::reap(bool block) {
    if (pid_ <= 0) return false;
    if (exit_code_) return true;
    int status = 0;
    pid_t r;
    do {
        r = ::waitpid(pid_, &status, block ? 0 : WNOHANG);
    } while (r < 0 && errno == EINTR);
    if (r != pid_) return false;
    if (WIFEXITED(status))
        exit_code_ = WEXITSTATUS(status);
    else if (WIFSIGNALED(status))
        exit_code_ = 128 + WTERMSIG(status);
    else
        exit_code_ = -1;
    return true;
}

std::optional<int> ServerProcess::wait_exit(milliseconds timeout) {
    if (pid_ <= 0) return std::nullopt;
    auto deadline = Clock::now() + timeout;
    while (!reap(false)) {
        if (Clock::now() >= deadline) return std::nullopt;
        std::this_thread::sleep_for(5ms);
    }
    // The process is gone; its pipes close unless something it started still holds them.
    std::unique_lock lock(mutex_);
    changed_.wait_for(lock, 2s, [this] { return output_closed_; });
    return exit_code_;
}

std::string ServerProcess::output_tail(std::size_t max_lines) const {
    std::lock_guard lock(mutex_);
    std::ostringstream os;
    auto dump = [&](const std::vector<std::string>& ls, std::string_view name) {
        std::size_t from = ls.size() > max_lines ? ls.size() - max_lines : 0;
        os << "  [" << name << ": " << ls.size() << " lines" << (from > 0 ? ", last ones" : "") << "]\n";
        for (std::size_t i = from; i < ls.size(); ++i)
            os << "  " << ls[i].substr(0, 400) << "\n";
    };
    dump(out_lines_, "stdout");
    dump(err_lines_, "stderr");
    return os.str();
}

// ---------------------------------------------------------------------------------------------
// Responses

std::string Response::header(std::string_view name) const {
    for (const auto& [k, v] : headers)
        if (iequals(k, name)) return v;
    return {};
}

bool Response::has_header(std::string_view name) const {
    return header_count(name) > 0;
}

std::size_t Response::header_count(std::string_view name) const {
    return static_cast<std::size_t>(
        std::count_if(headers.begin(), headers.end(), [&](const auto& h) { return iequals(h.first, name); }));
}

ParseResult parse_response(std::string_view data, bool head_request, bool at_eof, Response& out,
                           std::size_t& consumed) {
    auto head_end = data.find("\r\n\r\n");
    if (head_end == std::string_view::npos)
        return data.size() > kMaxResponseHead ? ParseResult::malformed : ParseResult::incomplete;
    Response r;
    std::string_view head = data.substr(0, head_end);
    auto line_end = head.find("\r\n");
    std::string_view status_line = head.substr(0, line_end);
    // HTTP/1.1 200 OK
    if (status_line.size() < 12 || status_line.substr(0, 5) != "HTTP/" || status_line[8] != ' ')
        return ParseResult::malformed;
    r.version = std::string(status_line.substr(0, 8));
    std::uint64_t status = 0;
    if (!parse_uint(status_line.substr(9, 3), status) || status < 100 || status > 999) return ParseResult::malformed;
    r.status = static_cast<int>(status);
    if (status_line.size() > 12) {
        if (status_line[12] != ' ') return ParseResult::malformed;
        r.reason = std::string(status_line.substr(13));
    }
    std::string_view rest = line_end == std::string_view::npos ? std::string_view{} : head.substr(line_end + 2);
    while (!rest.empty()) {
        auto eol = rest.find("\r\n");
        std::string_view line = rest.substr(0, eol);
        rest = eol == std::string_view::npos ? std::string_view{} : rest.substr(eol + 2);
        auto colon = line.find(':');
        if (colon == std::string_view::npos || colon == 0) return ParseResult::malformed;
        r.headers.emplace_back(std::string(line.substr(0, colon)), std::string(trim(line.substr(colon + 1))));
    }

    std::size_t pos = head_end + 4;
    bool no_body = head_request || r.status < 200 || r.status == 204 || r.status == 304;
    if (!no_body) {
        std::string te = r.header("Transfer-Encoding");
        if (!te.empty()) {
            if (!iequals(trim(te), "chunked")) return ParseResult::malformed;
            auto result = parse_chunked(data, pos, r.body);
            if (result != ParseResult::complete) return result;
        } else if (r.has_header("Content-Length")) {
            if (r.header_count("Content-Length") != 1) return ParseResult::malformed;
            std::uint64_t len = 0;
            if (!parse_uint(r.header("Content-Length"), len)) return ParseResult::malformed;
            if (data.size() - pos < len) return ParseResult::incomplete;
            r.body = std::string(data.substr(pos, len));
            pos += len;
        } else {
            // Delimited by the end of the connection.
            if (!at_eof) return ParseResult::incomplete;
            r.body = std::string(data.substr(pos));
            pos = data.size();
        }
    }
    consumed = pos;
    out = std::move(r);
    return ParseResult::complete;
}

std::string_view to_string(ReadStatus s) {
    switch (s) {
        case ReadStatus::ok:
            return "ok";
        case ReadStatus::timeout:
            return "timeout";
        case ReadStatus::eof:
            return "eof";
        case ReadStatus::reset:
            return "reset";
        case ReadStatus::error:
            return "error";
        case ReadStatus::malformed:
            return "malformed";
    }
    return "?";
}

// ---------------------------------------------------------------------------------------------
// Connection

Connection::Connection(std::uint16_t port, milliseconds connect_timeout) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        error_ = "socket: " + errno_text(errno);
        status_ = ReadStatus::error;
        return;
    }
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int rc = ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr));
    if (rc != 0 && errno == EINPROGRESS) {
        pollfd p{fd, POLLOUT, 0};
        int n;
        do {
            n = ::poll(&p, 1, static_cast<int>(connect_timeout.count()));
        } while (n < 0 && errno == EINTR);
        if (n == 0) {
            ::close(fd);
            error_ = "connect: timed out";
            status_ = ReadStatus::timeout;
            return;
        }
        int err = 0;
        socklen_t len = sizeof(err);
        ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
        rc = err == 0 ? 0 : -1;
        errno = err;
    }
    if (rc != 0) {
        error_ = "connect: " + errno_text(errno);
        status_ = ReadStatus::error;
        ::close(fd);
        return;
    }
    fd_ = fd;
}

Connection::~Connection() {
    close();
}

Connection::Connection(Connection&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      buffer_(std::move(other.buffer_)),
      error_(std::move(other.error_)),
      status_(other.status_),
      peer_closed_(other.peer_closed_) {}

Connection& Connection::operator=(Connection&& other) noexcept {
    if (this != &other) {
        close();
        fd_ = std::exchange(other.fd_, -1);
        buffer_ = std::move(other.buffer_);
        error_ = std::move(other.error_);
        status_ = other.status_;
        peer_closed_ = other.peer_closed_;
    }
    return *this;
}

void Connection::close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
}

void Connection::shutdown_write() {
    if (fd_ >= 0) ::shutdown(fd_, SHUT_WR);
}

bool Connection::send(std::string_view bytes, milliseconds timeout) {
    if (fd_ < 0) {
        if (error_.empty()) error_ = "not connected";
        return false;
    }
    auto deadline = Clock::now() + timeout;
    while (!bytes.empty()) {
        ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
        if (n > 0) {
            bytes.remove_prefix(static_cast<std::size_t>(n));
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            pollfd p{fd_, POLLOUT, 0};
            int r = ::poll(&p, 1, remaining_ms(deadline));
            if (r == 0) {
                error_ = "send: timed out with " + std::to_string(bytes.size()) + " bytes unsent";
                return false;
            }
            continue;
        }
        error_ = "send: " + errno_text(errno);
        return false;
    }
    return true;
}

ReadStatus Connection::fill(Clock::time_point deadline) {
    if (fd_ < 0) {
        error_ = "not connected";
        return ReadStatus::error;
    }
    if (peer_closed_) return ReadStatus::eof;
    for (;;) {
        char buf[65536];
        ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
        if (n > 0) {
            buffer_.append(buf, static_cast<std::size_t>(n));
            return ReadStatus::ok;
        }
        if (n == 0) {
            peer_closed_ = true;
            return ReadStatus::eof;
        }
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            pollfd p{fd_, POLLIN, 0};
            int r = ::poll(&p, 1, remaining_ms(deadline));
            if (r == 0) return ReadStatus::timeout;
            continue;
        }
        if (errno == ECONNRESET) {
            peer_closed_ = true;
            error_ = "connection reset by the server";
            return ReadStatus::reset;
        }
        error_ = "recv: " + errno_text(errno);
        return ReadStatus::error;
    }
}

std::optional<Response> Connection::read_response(milliseconds timeout, bool head_request) {
    auto deadline = Clock::now() + timeout;
    for (;;) {
        Response r;
        std::size_t consumed = 0;
        auto parsed = parse_response(buffer_, head_request, peer_closed_, r, consumed);
        if (parsed == ParseResult::complete) {
            buffer_.erase(0, consumed);
            status_ = ReadStatus::ok;
            return r;
        }
        if (parsed == ParseResult::malformed) {
            status_ = ReadStatus::malformed;
            error_ = "malformed response: " + buffer_.substr(0, 200);
            return std::nullopt;
        }
        ReadStatus s = fill(deadline);
        if (s == ReadStatus::ok) continue;
        if (s == ReadStatus::eof && !buffer_.empty()) {
            // A body delimited by close may now be complete.
            if (parse_response(buffer_, head_request, true, r, consumed) == ParseResult::complete) {
                buffer_.erase(0, consumed);
                status_ = ReadStatus::ok;
                return r;
            }
            error_ = "connection closed in the middle of a response: " + buffer_.substr(0, 200);
        } else if (s == ReadStatus::eof) {
            error_ = "connection closed by the server before a response";
        } else if (s == ReadStatus::timeout) {
            error_ = "no complete response within " + std::to_string(timeout.count()) + " ms (" +
                     std::to_string(buffer_.size()) + " bytes received)";
        }
        status_ = s;
        return std::nullopt;
    }
}

ReadStatus Connection::wait_closed(milliseconds timeout) {
    auto deadline = Clock::now() + timeout;
    std::size_t before = buffer_.size();
    ReadStatus s = fill(deadline);
    if (s == ReadStatus::ok && buffer_.size() > before) return ReadStatus::ok;
    return s;
}

ReadStatus Connection::wait_readable(milliseconds timeout) {
    if (!buffer_.empty()) return ReadStatus::ok;
    return wait_closed(timeout);
}

// ---------------------------------------------------------------------------------------------
// Requests

std::string build_request(std::string_view method, std::string_view target, const Headers& headers,
                          std::string_view body) {
    auto has = [&](std::string_view name) {
        return std::any_of(headers.begin(), headers.end(), [&](const auto& h) { return iequals(h.first, name); });
    };
    std::string out;
    out.reserve(128 + target.size() + body.size());
    out.append(method).append(" ").append(target).append(" HTTP/1.1\r\n");
    if (!has("Host")) out.append("Host: 127.0.0.1\r\n");
    for (const auto& [k, v] : headers)
        out.append(k).append(": ").append(v).append("\r\n");
    bool body_method = method == "POST" || method == "PUT" || method == "PATCH";
    if ((!body.empty() || body_method) && !has("Content-Length") && !has("Transfer-Encoding"))
        out.append("Content-Length: ").append(std::to_string(body.size())).append("\r\n");
    out.append("\r\n");
    out.append(body);
    return out;
}

Response http_request(std::uint16_t port, std::string_view method, std::string_view target, const Headers& headers,
                      std::string_view body, milliseconds timeout) {
    auto deadline = Clock::now() + timeout;
    Response failed;
    Connection c(port, timeout);
    if (!c.connected()) {
        failed.error = c.error();
        return failed;
    }
    if (!c.send(build_request(method, target, headers, body), timeout)) {
        failed.error = c.error();
        return failed;
    }
    auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
    auto r = c.read_response(std::max(left, 1ms), method == "HEAD");
    if (!r) {
        failed.error = c.error();
        return failed;
    }
    return *r;
}

}  // namespace mtapi::test
