// mtapi: the command-line entry point. Parses the command line, loads the configuration and
// hands over to one of the subcommands in src/app/commands.hpp.

#include <CLI/CLI.hpp>
#include <iostream>
#include <map>

#include "app/commands.hpp"
#include "app/config.hpp"
#include "obs/log.hpp"

using mtapi::app::kExitConfig;

int main(int argc, char** argv) {
    CLI::App cli{"mtapi — multi-tenant REST API server"};
    cli.require_subcommand(1);
    cli.set_version_flag("--version", std::string("mtapi ") + MTAPI_VERSION);

    // Every setting is a flag of the top-level command; subcommands fall through to them, so
    // `mtapi serve --listen 0.0.0.0:8000` works.
    std::map<std::string, std::string> values;
    std::vector<std::pair<std::string, CLI::Option*>> options;
    for (const auto& s : mtapi::app::settings()) {
        std::string help = std::string(s.help) + " [env " + std::string(s.env) + "]";
        if (!s.fallback.empty()) help += " (default " + std::string(s.fallback) + ")";
        auto* opt = cli.add_option("--" + std::string(s.flag), values[std::string(s.env)], help);
        opt->group("Settings (flag overrides environment)");
        options.emplace_back(std::string(s.env), opt);
    }

    auto* serve = cli.add_subcommand("serve", "serve the HTTP API")->fallthrough();
    auto* migrate =
        cli.add_subcommand("migrate", "bring the platform schema and every tenant schema to head")->fallthrough();
    auto* version = cli.add_subcommand("version", "print the version");

    auto* tenant = cli.add_subcommand("tenant", "manage tenants")->fallthrough()->require_subcommand(1);
    mtapi::app::TenantCreateArgs create_args;
    std::string admin_password;
    auto* t_create =
        tenant->add_subcommand("create", "provision a tenant (schema, role, tables, first admin)")->fallthrough();
    t_create->add_option("--slug", create_args.slug, "URL-safe name, ^[a-z][a-z0-9-]{2,39}$")->required();
    t_create->add_option("--name", create_args.name, "display name")->required();
    t_create->add_option("--plan", create_args.plan, "free, standard or enterprise")->capture_default_str();
    t_create->add_option("--admin-email", create_args.admin_email, "email of the first admin user")->required();
    auto* pw_opt =
        t_create->add_option("--admin-password", admin_password, "password of the first admin (generated when absent)");
    auto* t_list = tenant->add_subcommand("list", "list tenants")->fallthrough();
    std::string target;
    auto* t_suspend = tenant->add_subcommand("suspend", "suspend a tenant (its tokens get 403)")->fallthrough();
    t_suspend->add_option("tenant", target, "tenant id or slug")->required();
    auto* t_activate = tenant->add_subcommand("activate", "reactivate a suspended tenant")->fallthrough();
    t_activate->add_option("tenant", target, "tenant id or slug")->required();
    auto* t_delete = tenant->add_subcommand("delete", "drop a tenant's schema, role and catalog row")->fallthrough();
    t_delete->add_option("tenant", target, "tenant id or slug")->required();

    auto* admin = cli.add_subcommand("admin", "manage platform admins")->fallthrough()->require_subcommand(1);
    std::string admin_email;
    auto* a_create = admin->add_subcommand("create", "create a platform admin (password from stdin)")->fallthrough();
    a_create->add_option("--email", admin_email, "the admin's email")->required();

    try {
        cli.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return cli.exit(e);
    } catch (const CLI::CallForAllHelp& e) {
        return cli.exit(e);
    } catch (const CLI::CallForVersion& e) {
        return cli.exit(e);
    } catch (const CLI::ParseError& e) {
        std::cerr << "mtapi: " << e.what() << " (see mtapi --help)\n";
        return kExitConfig;
    }

    if (version->parsed()) {
        std::cout << "mtapi " << MTAPI_VERSION << "\n";
        return 0;
    }

    std::map<std::string, std::string> overrides;
    for (const auto& [env, opt] : options)
        if (opt->count() > 0) overrides[env] = values[env];
    mtapi::app::Config config;
    try {
        config = mtapi::app::load_config(mtapi::app::process_env(), overrides);
        mtapi::obs::set_level(config.log_level);
        if (serve->parsed() || migrate->parsed() || tenant->parsed() || admin->parsed())
            mtapi::app::require_database(config);
    } catch (const mtapi::app::ConfigError& e) {
        std::cerr << "mtapi: " << e.what() << "\n";
        return kExitConfig;
    }

    if (serve->parsed()) return mtapi::app::cmd_serve(config);
    if (migrate->parsed()) return mtapi::app::cmd_migrate(config);
    if (t_create->parsed()) {
        if (pw_opt->count() > 0) create_args.admin_password = admin_password;
        return mtapi::app::cmd_tenant_create(config, create_args);
    }
    if (t_list->parsed()) return mtapi::app::cmd_tenant_list(config);
    if (t_suspend->parsed()) return mtapi::app::cmd_tenant_suspend(config, target, true);
    if (t_activate->parsed()) return mtapi::app::cmd_tenant_suspend(config, target, false);
    if (t_delete->parsed()) return mtapi::app::cmd_tenant_delete(config, target);
    if (a_create->parsed()) return mtapi::app::cmd_admin_create(config, admin_email);
    return kExitConfig;
}
