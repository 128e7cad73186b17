#pragma once
// Helpers turning validated body fields into columns to write.

#include <optional>
#include <string>
#include <vector>

#include "api/json_body.hpp"
#include "api/v1/resource.hpp"

namespace mtapi::api::v1 {

// Adds a column for a field that is present (value or null). `nullable`: null clears it; else
// null is an error. On create, a `required` field must be present.
template <class T>
void add_column(std::vector<Column>& cols, BodyFields& f, const char* name, const Optional<T>& field, bool create,
                bool required, bool nullable, const char* cast = "") {
    if (!field.present) {
        if (create && required) f.error(name, "is required");
        return;
    }
    if (field.invalid) return;  // the reader recorded why
    if (field.is_null() && (!nullable || required)) {
        f.error(name, "must not be null");
        return;
    }
    std::optional<std::string> text;
    if (field.value) {
        if constexpr (std::is_same_v<T, std::string>)
            text = *field.value;
        else
            text = std::to_string(*field.value);
    }
    cols.push_back({name, std::move(text), cast});
}

}  // namespace mtapi::api::v1
