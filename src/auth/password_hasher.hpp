#pragma once
// Password hashing (argon2id, libsodium) on a small dedicated thread pool with a bounded queue.
// Hashing costs tens of milliseconds and ~19 MiB by design; it must never run on an I/O thread,
// and a flood of logins must turn into quick 503s rather than unbounded memory.

#include <boost/asio/awaitable.hpp>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace mtapi::auth {

struct HashParams {
    unsigned long long opslimit = 2;             // t (passes); OWASP minimum for m=19 MiB is 2
    std::size_t memlimit = 19u * 1024u * 1024u;  // m in bytes
};

// The queue is full: the caller should answer 503.
struct HasherOverloaded : std::runtime_error {
    HasherOverloaded() : std::runtime_error("password hashing queue is full") {}
};

class PasswordHasher {
  public:
    PasswordHasher(unsigned threads, std::size_t queue_limit, HashParams params);
    ~PasswordHasher();
    PasswordHasher(const PasswordHasher&) = delete;
    PasswordHasher& operator=(const PasswordHasher&) = delete;

    // argon2id hash in PHC string form ($argon2id$v=19$m=…,t=…,p=1$…). Throws HasherOverloaded.
    boost::asio::awaitable<std::string> hash(std::string password);
    boost::asio::awaitable<bool> verify(std::string encoded, std::string password);

    // Synchronous cores, for CLI use and tests.
    static std::string hash_now(const std::string& password, const HashParams& params);
    // Verifies argon2id ($argon2id$) and imported bcrypt ($2b$/$2y$) hashes; anything else fails.
    static bool verify_now(const std::string& encoded, const std::string& password);
    static bool verify_bcrypt(const std::string& encoded, const std::string& password);
    // True for bcrypt hashes and argon2id hashes with other parameters than the configured ones.
    bool needs_rehash(const std::string& encoded) const;
    // Verification against a fixed dummy hash with the configured cost: lets a login for an
    // unknown user take as long as one for a known user.
    boost::asio::awaitable<void> verify_dummy(std::string password);

    const HashParams& params() const { return params_; }

  private:
    struct Task {
        virtual ~Task() = default;
        virtual void run() = 0;
        virtual void reject() = 0;  // the queue was full: resume the caller with HasherOverloaded
    };
    template <class R>
    boost::asio::awaitable<R> submit(std::function<R()> fn);
    void enqueue(std::unique_ptr<Task> task);
    void worker();

    HashParams params_;
    std::string dummy_;  // written once in the constructor, read-only afterwards
    std::size_t queue_limit_;
    std::mutex mutex_;
    std::condition_variable cv_;
    std::deque<std::unique_ptr<Task>> queue_;
    bool stopping_ = false;
    std::vector<std::thread> threads_;
};

// Generates a random password of `length` characters from an unambiguous alphabet.
std::string generate_password(std::size_t length = 20);

}  // namespace mtapi::auth
