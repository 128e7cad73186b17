#include "pg/error.hpp"

namespace mtapi::pg {

ErrorKind kind_of_sqlstate(const std::string& s, const std::string& message) {
    if (s == "23505") return ErrorKind::unique_violation;
    if (s == "23503") return ErrorKind::foreign_key_violation;
    if (s == "23514") return ErrorKind::check_violation;
    if (s == "23502") return ErrorKind::not_null_violation;
    if (s == "40001") return ErrorKind::serialization_failure;
    if (s == "40P01") return ErrorKind::deadlock;
    if (s == "42501") return ErrorKind::insufficient_privilege;
    if (s == "42P01" || s == "42703" || s == "3F000" || s == "42883") return ErrorKind::undefined_object;
    if (s == "57014") return ErrorKind::query_canceled;
    if (s == "57P01" || s == "57P02" || s == "57P03") return ErrorKind::connection;
    if (s.size() == 5 && s.compare(0, 2, "08") == 0) return ErrorKind::connection;
    if (s.size() == 5 && s.compare(0, 2, "22") == 0) return ErrorKind::data_exception;
    if (s == "0A000" && message.find("cached plan must not change result type") != std::string::npos)
        return ErrorKind::cached_plan_changed;
    return ErrorKind::other;
}

const char* kind_name(ErrorKind kind) {
    switch (kind) {
        case ErrorKind::connection:
            return "connection";
        case ErrorKind::unavailable:
            return "unavailable";
        case ErrorKind::timeout:
            return "timeout";
        case ErrorKind::unique_violation:
            return "unique_violation";
        case ErrorKind::foreign_key_violation:
            return "foreign_key_violation";
        case ErrorKind::check_violation:
            return "check_violation";
        case ErrorKind::not_null_violation:
            return "not_null_violation";
        case ErrorKind::serialization_failure:
            return "serialization_failure";
        case ErrorKind::deadlock:
            return "deadlock";
        case ErrorKind::insufficient_privilege:
            return "insufficient_privilege";
        case ErrorKind::undefined_object:
            return "undefined_object";
        case ErrorKind::query_canceled:
            return "query_canceled";
        case ErrorKind::data_exception:
            return "data_exception";
        case ErrorKind::cached_plan_changed:
            return "cached_plan_changed";
        case ErrorKind::other:
            return "other";
    }
    return "other";
}

}  // namespace mtapi::pg
