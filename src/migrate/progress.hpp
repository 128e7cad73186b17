#pragma once
// What `mtapi migrate` shows while it runs. On a terminal: one progress bar line redrawn in place,
// with tenant failures printed above it as they happen. Otherwise (a log, a pipe): plain lines, one
// when the tenant list is known and one per tenant failure. The summary line comes at the end
// either way.

#include <chrono>
#include <cstddef>
#include <cstdio>
#include <string>

#include "migrate/runner.hpp"

namespace mtapi::migrate {

class ProgressPrinter {
  public:
    // Progress and failures go to `err`; `terminal` selects the redrawn bar.
    ProgressPrinter(std::FILE* err, bool terminal) : err_(err), terminal_(terminal) {}

    void started(const Report& report);
    void tenant_done(const TenantRef& tenant, const TenantOutcome& outcome, const Report& report);
    // Removes the bar (if any) and writes the summary line to `out`.
    void finish(const Report& report, std::FILE* out);
    // Removes the bar so that an error message starts on a clean line.
    void clear();

  private:
    void draw(const Report& report, bool force);

    std::FILE* err_;
    bool terminal_;
    bool bar_shown_ = false;
    std::chrono::steady_clock::time_point last_draw_{};
};

// "[#####.....] 120/1000 tenants (3 failed)"; `width` cells between the brackets.
std::string progress_bar(std::size_t done, std::size_t total, std::size_t failed, std::size_t width = 30);
// The line printed for one failed tenant.
std::string failure_line(const TenantRef& tenant, const std::string& message);
// The final line: versions, counters and time.
std::string summary_line(const Report& report);

}  // namespace mtapi::migrate
