// `mtapi admin create --email E`: a platform admin; the password comes from standard input so it
// never appears in a process list or shell history.

#include <iostream>
#include <string>

#include "app/app.hpp"
#include "app/cli_support.hpp"
#include "app/commands.hpp"
#include "tenancy/provisioner.hpp"
#include "util/uuid.hpp"

namespace mtapi::app {

int cmd_admin_create(const Config& config, const std::string& email) {
    if (!tenancy::valid_email(email)) {
        std::cerr << "mtapi: admin create: --email must be an email address\n";
        return kExitConfig;
    }
    std::string password;
    if (!std::getline(std::cin, password)) {
        std::cerr << "mtapi: admin create: expected the password on standard input\n";
        return kExitConfig;
    }
    if (!password.empty() && password.back() == '\r') password.pop_back();
    std::size_t chars = 0;
    for (unsigned char c : password)
        if ((c & 0xc0) != 0x80) ++chars;
    if (chars < 12 || chars > 128) {
        std::cerr << "mtapi: admin create: the password must be 12 to 128 characters\n";
        return kExitConfig;
    }
    std::string hash = auth::PasswordHasher::hash_now(password, hash_params(config));
    return run_with_connection(
        config, "admin create", [&](boost::asio::io_context&, pg::Connection& conn) -> boost::asio::awaitable<int> {
            std::string id = util::to_string(util::uuid_v7());
            pg::Query q{
                "INSERT INTO platform.platform_admins (id, email, password_hash) VALUES ($1::uuid, $2, $3) "
                "ON CONFLICT DO NOTHING RETURNING id",
                {id, email, hash},
                true};
            auto r = co_await conn.query(std::move(q), pg::Clock::now() + std::chrono::seconds(30));
            if (r.rows() == 0) {
                std::cerr << "mtapi: admin create: an admin with this email already exists\n";
                co_return kExitFailure;
            }
            std::cout << "platform admin " << email << " created (id " << id << ")\n";
            co_return kExitOk;
        });
}

}  // namespace mtapi::app
