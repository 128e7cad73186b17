#pragma once
// The subcommands of the mtapi binary. Each returns the process exit code.

#include <optional>
#include <string>

#include "app/config.hpp"

namespace mtapi::app {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitConfig = 2;

int cmd_serve(const Config& config);
int cmd_migrate(const Config& config);

struct TenantCreateArgs {
    std::string slug;
    std::string name;
    std::string plan = "standard";
    std::string admin_email;
    std::optional<std::string> admin_password;
};
int cmd_tenant_create(const Config& config, const TenantCreateArgs& args);
int cmd_tenant_list(const Config& config);
int cmd_tenant_suspend(const Config& config, const std::string& id_or_slug, bool suspend);
int cmd_tenant_delete(const Config& config, const std::string& id_or_slug);

// Creates a platform admin; the password is read from standard input (one line).
int cmd_admin_create(const Config& config, const std::string& email);

}  // namespace mtapi::app
