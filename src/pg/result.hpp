#pragma once
// RAII over a PGresult. Values are in PostgreSQL's text format (see ARCHITECTURE.md: text keeps
// timestamps and numerics exact and lets JSON built by the server pass through untouched).

#include <cstdint>
#include <optional>
#include <string_view>
#include <utility>

struct pg_result;

namespace mtapi::pg {

class Result {
  public:
    Result() = default;
    explicit Result(pg_result* res) : res_(res) {}
    ~Result();
    Result(Result&& o) noexcept : res_(std::exchange(o.res_, nullptr)) {}
    Result& operator=(Result&& o) noexcept;
    Result(const Result&) = delete;
    Result& operator=(const Result&) = delete;

    int rows() const;
    int columns() const;
    bool is_null(int row, int col) const;
    // The value as text; empty for NULL (check is_null when it matters). Valid while *this lives.
    std::string_view text(int row, int col) const;
    std::optional<std::string_view> opt_text(int row, int col) const;
    std::int64_t int64(int row, int col) const;  // throws pg::Error(data_exception) if not an integer
    bool boolean(int row, int col) const;
    std::string_view column_name(int col) const;
    int column_index(std::string_view name) const;  // -1 when absent
    // Rows touched by INSERT/UPDATE/DELETE.
    std::int64_t affected() const;

    bool empty() const { return rows() == 0; }
    pg_result* get() const { return res_; }

  private:
    pg_result* res_ = nullptr;
};

}  // namespace mtapi::pg
