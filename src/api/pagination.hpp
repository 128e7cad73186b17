#pragma once
// Keyset pagination shared by every list: ?limit= (1–100, default 20) and ?cursor=, newest
// first by (created_at, id). A page fetches limit + 1 rows to learn whether there is a next one.

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "http/request.hpp"
#include "util/cursor.hpp"

namespace mtapi::api {

struct PageRequest {
    int limit = 20;
    std::optional<util::CursorPosition> after;
    std::string scope;   // tenant id, or "platform"
    std::string list;    // e.g. "vehicles"
    std::string filter;  // canonical filter text, e.g. "status=active"
};

// Reads limit and cursor, and the list's filters (`filters`: allowed names; values are
// returned in that order). Any other query parameter, a bad limit or a cursor not issued for
// this scope, list and filters → 400.
PageRequest parse_page(const http::RequestContext& ctx, const util::CursorCodec& codec, std::string scope,
                       std::string list, const std::vector<std::string_view>& filters,
                       std::vector<std::optional<std::string>>& filter_values);

// Builds {"data":[…],"next_cursor":…} from rendered items and sets the Link header when there is
// a next page. `last` is the position of the last item shown (when a next page exists).
struct Page {
    std::string body;
    std::optional<std::string> link;
};
Page render_page(const http::RequestContext& ctx, const util::CursorCodec& codec, const PageRequest& req,
                 const std::vector<std::string>& items, const std::optional<util::CursorPosition>& next_after,
                 const std::vector<std::pair<std::string_view, std::optional<std::string>>>& filters);

}  // namespace mtapi::api
