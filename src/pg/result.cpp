#include "pg/result.hpp"

#include <libpq-fe.h>

#include <charconv>
#include <cstdlib>

#include "pg/error.hpp"

namespace mtapi::pg {

Result::~Result() {
    if (res_ != nullptr) PQclear(res_);
}

Result& Result::operator=(Result&& o) noexcept {
    if (this != &o) {
        if (res_ != nullptr) PQclear(res_);
        res_ = std::exchange(o.res_, nullptr);
    }
    return *this;
}

int Result::rows() const {
    return res_ == nullptr ? 0 : PQntuples(res_);
}

int Result::columns() const {
    return res_ == nullptr ? 0 : PQnfields(res_);
}

bool Result::is_null(int row, int col) const {
    return PQgetisnull(res_, row, col) != 0;
}

std::string_view Result::text(int row, int col) const {
    return {PQgetvalue(res_, row, col), static_cast<std::size_t>(PQgetlength(res_, row, col))};
}

std::optional<std::string_view> Result::opt_text(int row, int col) const {
    if (is_null(row, col)) return std::nullopt;
    return text(row, col);
}

std::int64_t Result::int64(int row, int col) const {
    auto t = text(row, col);
    std::int64_t v = 0;
    auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
    if (ec != std::errc() || p != t.data() + t.size())
        throw Error(ErrorKind::data_exception, "column is not an integer");
    return v;
}

bool Result::boolean(int row, int col) const {
    return text(row, col) == "t";
}

std::string_view Result::column_name(int col) const {
    return PQfname(res_, col);
}

int Result::column_index(std::string_view name) const {
    for (int c = 0; c < columns(); ++c)
        if (column_name(c) == name) return c;
    return -1;
}

std::int64_t Result::affected() const {
    const char* t = PQcmdTuples(res_);
    return (t == nullptr || *t == '\0') ? 0 : std::strtoll(t, nullptr, 10);
}

}  // namespace mtapi::pg
