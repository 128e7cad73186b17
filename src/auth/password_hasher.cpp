#include "auth/password_hasher.hpp"

#include <crypt.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <sodium.h>
#include <sys/resource.h>
#include <unistd.h>

#include <boost/asio/async_result.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cstring>

#include "util/uuid.hpp"

namespace mtapi::auth {
namespace {
namespace asio = boost::asio;

void init_sodium() {
    static const bool ok = sodium_init() >= 0;
    if (!ok) throw std::runtime_error("libsodium failed to initialise");
}

}  // namespace

PasswordHasher::PasswordHasher(unsigned threads, std::size_t queue_limit, HashParams params)
    : params_(params), queue_limit_(queue_limit) {
    init_sodium();
    dummy_ = hash_now(generate_password(24), params_);  // once, at start-up
    if (threads == 0) threads = 1;
    for (unsigned i = 0; i < threads; ++i) {
        threads_.emplace_back([this, i] {
            std::string name = "mtapi-hash-" + std::to_string(i);
            pthread_setname_np(pthread_self(), name.c_str());
            // Below the I/O threads: a burst of logins must not delay other requests.
            setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), 10);
            worker();
        });
    }
}

PasswordHasher::~PasswordHasher() {
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_)
        t.join();
}

void PasswordHasher::enqueue(std::unique_ptr<Task> task) {
    {
        std::lock_guard lock(mutex_);
        if (!stopping_ && queue_.size() < queue_limit_) {
            queue_.push_back(std::move(task));
            task = nullptr;
        }
    }
    if (task) {
        task->reject();
        return;
    }
    cv_.notify_one();
}

void PasswordHasher::worker() {
    for (;;) {
        std::unique_ptr<Task> task;
        {
            std::unique_lock lock(mutex_);
            cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
            if (queue_.empty()) return;
            task = std::move(queue_.front());
            queue_.pop_front();
        }
        task->run();
    }
}

template <class R>
asio::awaitable<R> PasswordHasher::submit(std::function<R()> fn) {
    auto ex = co_await asio::this_coro::executor;
    co_return co_await asio::async_initiate<decltype(asio::use_awaitable), void(std::exception_ptr, R)>(
        [this, &fn, ex](auto handler) {
            using Handler = decltype(handler);
            // Runs fn on a hashing thread, then resumes the caller on its own executor.
            struct Job : Task {
                Job(std::function<R()> f, Handler h, asio::any_io_executor e)
                    : fn(std::move(f)), handler(std::move(h)), ex(std::move(e)) {}
                void run() override {
                    std::exception_ptr err;
                    R value{};
                    try {
                        value = fn();
                    } catch (...) {
                        err = std::current_exception();
                    }
                    asio::post(ex, [h = std::move(handler), err, v = std::move(value)]() mutable {
                        std::move(h)(err, std::move(v));
                    });
                    ex = asio::any_io_executor();  // release the work count
                }
                void reject() override {
                    asio::post(ex, [h = std::move(handler)]() mutable {
                        std::move(h)(std::make_exception_ptr(HasherOverloaded()), R{});
                    });
                    ex = asio::any_io_executor();
                }
                std::function<R()> fn;
                Handler handler;
                asio::any_io_executor ex;
            };
            // The tracked executor counts as outstanding work: the caller's io_context keeps
            // running while the job is on a hashing thread.
            asio::any_io_executor tracked = asio::prefer(ex, asio::execution::outstanding_work.tracked);
            enqueue(std::make_unique<Job>(std::move(fn), std::move(handler), std::move(tracked)));
        },
        asio::use_awaitable);
}

asio::awaitable<std::string> PasswordHasher::hash(std::string password) {
    // Named first: GCC 12 destroys temporaries of a co_await full-expression twice.
    std::function<std::string()> job = [pw = std::move(password), p = params_] { return hash_now(pw, p); };
    co_return co_await submit<std::string>(std::move(job));
}

asio::awaitable<bool> PasswordHasher::verify(std::string encoded, std::string password) {
    std::function<bool()> job = [enc = std::move(encoded), pw = std::move(password)] { return verify_now(enc, pw); };
    co_return co_await submit<bool>(std::move(job));
}

std::string PasswordHasher::hash_now(const std::string& password, const HashParams& params) {
    init_sodium();
    char out[crypto_pwhash_STRBYTES];
    if (crypto_pwhash_str_alg(out, password.data(), password.size(), params.opslimit, params.memlimit,
                              crypto_pwhash_ALG_ARGON2ID13) != 0)
        throw std::runtime_error("argon2id hashing failed (out of memory)");
    return out;
}

bool PasswordHasher::verify_now(const std::string& encoded, const std::string& password) {
    init_sodium();
    if (encoded.rfind("$argon2id$", 0) == 0)
        return crypto_pwhash_str_verify(encoded.c_str(), password.data(), password.size()) == 0;
    if (encoded.rfind("$2b$", 0) == 0 || encoded.rfind("$2y$", 0) == 0) return verify_bcrypt(encoded, password);
    return false;
}

// Imported bcrypt hashes (libxcrypt). bcrypt only ever saw the first 72 bytes of a password, so a
// longer password cannot be proven by such a hash: it is refused rather than silently truncated
// (the user resets it, and from then on it is stored as argon2id).
bool PasswordHasher::verify_bcrypt(const std::string& encoded, const std::string& password) {
    if (password.size() > 72 || password.find('\0') != std::string::npos) return false;
    auto data = std::make_unique<crypt_data>();
    const char* out = crypt_rn(password.c_str(), encoded.c_str(), data.get(), sizeof(crypt_data));
    if (out == nullptr || out[0] == '*') return false;
    std::size_t n = std::strlen(out);
    return n == encoded.size() && CRYPTO_memcmp(out, encoded.data(), n) == 0;
}

asio::awaitable<void> PasswordHasher::verify_dummy(std::string password) {
    co_await verify(dummy_, std::move(password));
}

bool PasswordHasher::needs_rehash(const std::string& encoded) const {
    if (encoded.rfind("$argon2id$", 0) != 0) return true;
    return crypto_pwhash_str_needs_rehash(encoded.c_str(), params_.opslimit, params_.memlimit) != 0;
}

std::string generate_password(std::size_t length) {
    static constexpr char kAlphabet[] = "abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    constexpr std::size_t kSize = sizeof(kAlphabet) - 1;
    std::string out;
    out.reserve(length);
    while (out.size() < length) {
        std::uint8_t b = 0;
        util::random_bytes(&b, 1);
        if (b >= 256 - (256 % kSize)) continue;  // no modulo bias
        out.push_back(kAlphabet[b % kSize]);
    }
    return out;
}

}  // namespace mtapi::auth
