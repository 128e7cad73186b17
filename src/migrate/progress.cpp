#include "migrate/progress.hpp"

#include <algorithm>
#include <cstdio>

namespace mtapi::migrate {
namespace {

constexpr auto kRedrawInterval = std::chrono::milliseconds(100);
constexpr std::string_view kPrefix = "mtapi: migrate: ";

void put_line(std::FILE* f, const std::string& line) {
    std::fputs(line.c_str(), f);
    std::fputc('\n', f);
    std::fflush(f);
}

std::string seconds(std::chrono::milliseconds ms) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f s", static_cast<double>(ms.count()) / 1000.0);
    return buf;
}

}  // namespace

std::string progress_bar(std::size_t done, std::size_t total, std::size_t failed, std::size_t width) {
    std::size_t filled = total == 0 ? width : std::min(width, done * width / total);
    std::string out = "[" + std::string(filled, '#') + std::string(width - filled, '.') + "] ";
    out += std::to_string(done) + "/" + std::to_string(total) + " tenants";
    if (failed > 0) out += " (" + std::to_string(failed) + " failed)";
    return out;
}

std::string failure_line(const TenantRef& tenant, const std::string& message) {
    return std::string(kPrefix) + "tenant " + tenant.slug + " (" + tenant.id + ") failed: " + message;
}

std::string summary_line(const Report& r) {
    std::string out = std::string(kPrefix) + "platform at version " + std::to_string(r.platform_version) +
                      ", tenant head " + std::to_string(r.tenant_head) +
                      "; tenants: " + std::to_string(r.tenants_total) + " total, " +
                      std::to_string(r.tenants_migrated) + " migrated, " + std::to_string(r.tenants_at_head) +
                      " already at head, " + std::to_string(r.tenants_failed) + " failed";
    if (r.tenants_ahead > 0) out += ", " + std::to_string(r.tenants_ahead) + " ahead of this binary";
    return out + " (" + seconds(r.elapsed) + ")";
}

void ProgressPrinter::started(const Report& r) {
    put_line(err_, std::string(kPrefix) + "platform at version " + std::to_string(r.platform_version) + "; " +
                       std::to_string(r.tenants_pending) + " of " + std::to_string(r.tenants_total) +
                       " tenants below head " + std::to_string(r.tenant_head));
    if (terminal_ && r.tenants_pending > 0) draw(r, true);
}

void ProgressPrinter::tenant_done(const TenantRef& tenant, const TenantOutcome& outcome, const Report& r) {
    if (outcome.result == TenantResult::failed) {
        clear();
        put_line(err_, failure_line(tenant, outcome.error));
    }
    if (terminal_) draw(r, outcome.result == TenantResult::failed || r.tenants_processed == r.tenants_pending);
}

void ProgressPrinter::finish(const Report& report, std::FILE* out) {
    clear();
    put_line(out, summary_line(report));
}

void ProgressPrinter::clear() {
    if (!bar_shown_) return;
    std::fputs("\r\033[K", err_);
    std::fflush(err_);
    bar_shown_ = false;
}

void ProgressPrinter::draw(const Report& r, bool force) {
    auto now = std::chrono::steady_clock::now();
    if (!force && now - last_draw_ < kRedrawInterval) return;
    last_draw_ = now;
    std::string line = "\r" + progress_bar(r.tenants_processed, r.tenants_pending, r.tenants_failed) + "\033[K";
    std::fputs(line.c_str(), err_);
    std::fflush(err_);
    bar_shown_ = true;
}

}  // namespace mtapi::migrate
