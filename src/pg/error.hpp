#pragma once
// Typed PostgreSQL failures. SQLSTATE classes that callers act on get their own kind; the raw
// SQLSTATE, constraint and column stay available for mapping to API answers (e.g. 409 naming
// the field). Messages from the server are for logs, never for clients.

#include <stdexcept>
#include <string>

namespace mtapi::pg {

enum class ErrorKind {
    connection,              // lost or could not connect (08xxx, 57P01..57P03, socket errors)
    unavailable,             // pool cannot hand out a connection now (backing off, queue full)
    timeout,                 // operation deadline passed; the connection was dropped
    unique_violation,        // 23505
    foreign_key_violation,   // 23503
    check_violation,         // 23514
    not_null_violation,      // 23502
    serialization_failure,   // 40001
    deadlock,                // 40P01
    insufficient_privilege,  // 42501
    undefined_object,        // 42P01 undefined_table, 42703 undefined_column, 3F000 invalid_schema_name
    query_canceled,          // 57014
    data_exception,          // class 22 (bad input for a type, out of range, …)
    cached_plan_changed,     // 0A000 "cached plan must not change result type"
    other,
};

class Error : public std::runtime_error {
  public:
    Error(ErrorKind kind, std::string message, std::string sqlstate = {}, std::string constraint = {},
          std::string column = {})
        : std::runtime_error(std::move(message)),
          kind_(kind),
          sqlstate_(std::move(sqlstate)),
          constraint_(std::move(constraint)),
          column_(std::move(column)) {}

    ErrorKind kind() const { return kind_; }
    const std::string& sqlstate() const { return sqlstate_; }
    const std::string& constraint() const { return constraint_; }
    const std::string& column() const { return column_; }

    // True for failures of the link rather than of the statement: the caller may retry elsewhere.
    bool is_connection_problem() const {
        return kind_ == ErrorKind::connection || kind_ == ErrorKind::unavailable || kind_ == ErrorKind::timeout;
    }

  private:
    ErrorKind kind_;
    std::string sqlstate_;
    std::string constraint_;
    std::string column_;
};

ErrorKind kind_of_sqlstate(const std::string& sqlstate, const std::string& message);
const char* kind_name(ErrorKind kind);

}  // namespace mtapi::pg
