// The cross-tenant suite (SPEC §1, §3): what one tenant's token can learn about, or do to, another
// tenant's data through the API. Tenants A and B each hold rows of every resource; with A's
// tokens:
//   - every route that takes an id, with each of B's ids, answers 404 exactly as for an id that
//     does not exist (no existence oracle), and B's data is untouched (seen through B's token);
//   - no list, under any filter, shows a row of B (and the other way round);
//   - a trip cannot name B's vehicle or driver (422 naming the field, as for a missing one);
//   - nothing but the token picks the tenant (tenant-looking headers and parameters are ignored
//     or refused);
//   - 8 threads mixing A's and B's requests on shared keep-alive connections for 20 s never get
//     an answer that carries an id of the other tenant, and never a 5xx.
//
// The suite is driven by one table, resources() below: a resource added to the API is one line
// there (its path, a valid body, a valid PATCH, its list filters), and every check covers it.

#include <algorithm>
#include <atomic>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <cstdio>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "fleet_support.hpp"

namespace mtapi::fleettest {
namespace {

// ============================================================================= the resources

// A tenant's ids by resource name ("vehicles" → its vehicles' ids, newest last).
using Ids = std::map<std::string, std::vector<std::string>>;

struct Resource {
    std::string name;  // below /api/v1/
    // The i-th sample row's POST body; `own` holds the ids the tenant has so far (rows of the
    // resources above this one in the table), for the references a body makes.
    std::function<json::object(const Ids& own, std::size_t i)> sample;
    std::string patch;  // a valid PATCH body
    // List queries: "" is the plain list; {mine:R} and {theirs:R} expand to one query per id of
    // resource R of the caller's tenant and of the other tenant.
    std::vector<std::string> filters;

    std::string path() const { return "/api/v1/" + name; }
};

template <std::size_t N>
std::string_view nth(const char* const (&values)[N], std::size_t i) {
    return values[i % N];
}

const char* const kRoles[] = {"dispatcher", "viewer"};
const char* const kVehicleStatuses[] = {"active", "maintenance", "retired"};
const char* const kDriverStatuses[] = {"active", "inactive"};
const char* const kTripStatuses[] = {"planned", "in_progress", "completed", "cancelled"};

// Every resource a tenant token reaches by id. References point upwards: a row may only refer
// to resources listed before it.
const std::vector<Resource>& resources() {
    static const std::vector<Resource> table = {
        {"users",
         [](const Ids&, std::size_t i) { return user_body(nth(kRoles, i)); },
         R"({"name":"Renamed","role":"viewer"})",
         {""}},
        {"vehicles",
         [](const Ids&, std::size_t i) { return vehicle_body(nth(kVehicleStatuses, i)); },
         R"({"model":"Patched","vin":null})",
         {"", "status=active", "status=maintenance", "status=retired"}},
        {"drivers",
         [](const Ids&, std::size_t i) { return driver_body(nth(kDriverStatuses, i)); },
         R"({"name":"Patched","phone":null})",
         {"", "status=active", "status=inactive"}},
        {"trips",
         [](const Ids& own, std::size_t i) {
             const auto& v = own.at("vehicles");
             const auto& d = own.at("drivers");
             return trip_body(v[i % v.size()], d[(i / 2) % d.size()], nth(kTripStatuses, i));
         },
         R"({"status":"cancelled","distance_km":null})",
         {"", "status=planned", "status=in_progress", "status=completed", "status=cancelled",
          "vehicle_id={mine:vehicles}", "driver_id={mine:drivers}", "vehicle_id={theirs:vehicles}",
          "driver_id={theirs:drivers}", "status=planned&vehicle_id={theirs:vehicles}",
          "vehicle_id={mine:vehicles}&driver_id={theirs:drivers}"}},
    };
    return table;
}

// Rows of each resource per tenant: enough for every status of every filter.
constexpr std::size_t kRows = 4;

// The queries of `filter` for a caller owning `mine` while `theirs` belongs to the other tenant.
std::vector<std::string> expand(const std::string& filter, const Ids& mine, const Ids& theirs) {
    for (const auto& [marker, ids] :
         {std::pair{std::string("{mine:"), &mine}, std::pair{std::string("{theirs:"), &theirs}}) {
        auto at = filter.find(marker);
        if (at == std::string::npos) continue;
        auto end = filter.find('}', at);
        const std::string resource = filter.substr(at + marker.size(), end - at - marker.size());
        std::vector<std::string> out;
        for (const auto& id : ids->at(resource))
            for (auto& q : expand(filter.substr(0, at) + id + filter.substr(end + 1), mine, theirs))
                out.push_back(std::move(q));
        return out;
    }
    return {filter};
}

// ============================================================================= the tenants

struct World {
    FleetTenant tenant;
    Ids ids;                                    // every row, the tenant admin included
    std::map<std::string, std::string> tokens;  // role → a token of a user with that role

    Api api(const std::string& role = "admin") const { return Api(tenant.api().port(), tokens.at(role)); }
    std::set<std::string> all_ids() const {
        std::set<std::string> out;
        for (const auto& [name, ids] : ids)
            out.insert(ids.begin(), ids.end());
        out.insert(tenant.info.id);
        return out;
    }
};

// A tenant with kRows rows of every resource, and a logged-in user of every role.
World populate(std::string_view prefix) {
    World w;
    w.tenant = new_tenant(prefix);
    w.ids["users"].push_back(w.tenant.info.admin_id);
    w.tokens["admin"] = w.tenant.token;
    Api api = w.tenant.api();
    for (const auto& r : resources()) {
        for (std::size_t i = 0; i < kRows; ++i) {
            json::object body = r.sample(w.ids, i);
            json::object created = api.create(r.path(), body);
            w.ids[r.name].push_back(text(created, "id"));
            if (body.contains("password") && !w.tokens.contains(text(body, "role")))
                w.tokens[text(body, "role")] = idtest::token_of(
                    idtest::tenant_login(api.port(), w.tenant.info.slug, text(body, "email"), text(body, "password")));
        }
    }
    return w;
}

// Everything B's own token shows of B: every list in full and every row by id.
std::map<std::string, std::string> snapshot(const World& w) {
    std::map<std::string, std::string> out;
    Api api = w.api();
    for (const auto& r : resources()) {
        std::string list;
        for (const auto& item : api.list_all(r.path()))
            list += to_json(item) + "\n";
        out[r.path()] = list;
        for (const auto& id : w.ids.at(r.name)) {
            Response one = api.get(r.path() + "/" + id);
            out[r.path() + "/" + id] = std::to_string(one.status) + " " + one.body;
        }
    }
    return out;
}

// Which ids of `forbidden` appear in `body`.
std::vector<std::string> leaked(std::string_view body, const std::set<std::string>& forbidden) {
    std::vector<std::string> out;
    for (auto& id : uuids_in(body))
        if (forbidden.contains(id)) out.push_back(std::move(id));
    return out;
}

class CrossTenant : public idtest::IdentityTest {
  protected:
    void SetUp() override {
        IdentityTest::SetUp();
        a_ = populate("iso-a");
        b_ = populate("iso-b");
    }
    World a_;
    World b_;
};

Response call(const Api& api, std::string_view method, const std::string& target, const std::string& patch_body) {
    if (method == "PATCH") return api.send("PATCH", target, patch_body);
    if (method == "DELETE") return api.del(target);
    return api.get(target);
}

// ============================================================================= by id

TEST_F(CrossTenant, another_tenants_ids_answer_404_exactly_like_ids_that_do_not_exist) {
    const auto before = snapshot(b_);
    const std::string b_tenant = b_.tenant.info.id;
    int checked = 0;
    for (const auto& [role, token] : a_.tokens) {
        Api api(a_.tenant.api().port(), token);
        for (const auto& r : resources()) {
            for (const auto& id : b_.ids.at(r.name)) {
                for (const char* method : {"GET", "PATCH", "DELETE"}) {
                    const std::string target = r.path() + "/" + id;
                    const std::string what = role + " of A: " + method + " " + target + " (B's " + r.name + ")";
                    Response foreign = call(api, method, target, r.patch);
                    Response missing = call(api, method, r.path() + "/" + random_uuid(), r.patch);
                    // Reading is a 404 whatever the role; a role that may not write is refused
                    // before any row is looked at, which is just as uninformative.
                    const bool may_write = role == "admin" || (role == "dispatcher" && r.name != "users");
                    const int expected = std::string_view(method) == "GET" || may_write ? 404 : 403;
                    EXPECT_TRUE(is_problem(foreign, expected)) << what;
                    EXPECT_EQ(foreign.status, missing.status) << what;
                    EXPECT_EQ(comparable_problem(foreign), comparable_problem(missing)) << what;
                    EXPECT_EQ(foreign.header("Content-Type"), missing.header("Content-Type")) << what;
                    EXPECT_EQ(text(object_of(foreign), "instance"), target) << what;
                    EXPECT_EQ(foreign.body.find(b_tenant), std::string::npos) << what << ": " << foreign.body;
                    EXPECT_EQ(foreign.body.find("tenant_"), std::string::npos) << what << ": " << foreign.body;
                    ++checked;
                }
            }
        }
    }
    EXPECT_EQ(checked, static_cast<int>(a_.tokens.size() * resources().size() * kRows * 3) +
                           static_cast<int>(a_.tokens.size() * 3))  // B's admin is one more user
        << "every route with an id, every method, every role";
    EXPECT_EQ(snapshot(b_), before) << "B's data changed";
}

// ============================================================================= lists

// Each list page of `path?query` (pages of 7, following next_cursor), as raw bodies.
std::vector<std::string> pages(const Api& api, const std::string& path, const std::string& query) {
    std::vector<std::string> out;
    std::string cursor;
    for (int page = 0; page < 1000; ++page) {
        std::string target = path + "?limit=7" + (query.empty() ? "" : "&" + query);
        if (!cursor.empty()) target += "&cursor=" + cursor;
        Response r = api.get(target);
        EXPECT_EQ(r.status, 200) << target << ": " << describe(r);
        if (r.status != 200) break;
        out.push_back(r.body);
        json::object body = object_of(r);
        const json::value& next = body.at("next_cursor");
        if (!next.is_string()) break;
        cursor = std::string(next.as_string());
    }
    return out;
}

TEST_F(CrossTenant, lists_under_every_filter_show_only_the_callers_rows) {
    int lists = 0;
    for (const auto& [me, other] : {std::pair{&a_, &b_}, std::pair{&b_, &a_}}) {
        const std::set<std::string> forbidden = other->all_ids();
        const std::set<std::string> mine = me->all_ids();
        for (const auto& [role, token] : me->tokens) {
            Api api(me->tenant.api().port(), token);
            for (const auto& r : resources()) {
                for (const auto& filter : r.filters) {
                    for (const auto& query : expand(filter, me->ids, other->ids)) {
                        const std::string what = me->tenant.info.slug + " " + role + ": " + r.path() + "?" + query;
                        std::set<std::string> shown;
                        for (const auto& body : pages(api, r.path(), query)) {
                            EXPECT_EQ(leaked(body, forbidden), std::vector<std::string>{}) << what << ": " << body;
                            const json::object page = test::parse_json_object(body).value();
                            for (const auto& item : page.at("data").as_array())
                                shown.insert(text(item.as_object(), "id"));
                        }
                        for (const auto& id : shown)
                            EXPECT_TRUE(mine.contains(id)) << what << " shows " << id;
                        // The plain list is the tenant's rows, all of them.
                        if (query.empty()) {
                            const auto& own = me->ids.at(r.name);
                            EXPECT_EQ(shown, std::set<std::string>(own.begin(), own.end())) << what;
                        }
                        // Naming the other tenant's vehicle or driver matches nothing.
                        if (filter.find("{theirs:") != std::string::npos) {
                            EXPECT_TRUE(shown.empty()) << what;
                        }
                        ++lists;
                    }
                }
            }
        }
    }
    EXPECT_GT(lists, 100);
}

// The tenant comes from the token only: nothing else in a request (headers a proxy might set, a
// query parameter) moves A's token into B.
TEST_F(CrossTenant, the_tenant_comes_from_the_token_only) {
    const std::uint16_t port = a_.tenant.api().port();
    const std::set<std::string> forbidden = b_.all_ids();
    const std::string b_id = b_.tenant.info.id;
    const std::string b_slug = b_.tenant.info.slug;
    const Headers hints = {{"X-Tenant-Id", b_id},
                           {"X-Tenant", b_slug},
                           {"Tenant-Id", b_id},
                           {"X-Tenant-Slug", b_slug},
                           {"X-Forwarded-Host", b_slug + ".example.com"},
                           {"Host", b_slug + ".example.com"}};
    for (const auto& r : resources()) {
        for (const auto& hint : hints) {
            Headers h = idtest::bearer(a_.tenant.token);
            h.push_back(hint);
            Response list = test::http_request(port, "GET", r.path() + "?limit=100", h, {}, 30s);
            ASSERT_EQ(list.status, 200) << hint.first << ": " << describe(list);
            EXPECT_EQ(leaked(list.body, forbidden), std::vector<std::string>{}) << hint.first << ": " << list.body;
            std::set<std::string> shown;
            const json::object page = object_of(list);
            for (const auto& item : page.at("data").as_array())
                shown.insert(text(item.as_object(), "id"));
            const auto& own = a_.ids.at(r.name);
            EXPECT_EQ(shown, std::set<std::string>(own.begin(), own.end())) << r.path() << " with " << hint.first;

            Response one = test::http_request(port, "GET", r.path() + "/" + b_.ids.at(r.name).front(), h, {}, 30s);
            EXPECT_TRUE(is_problem(one, 404)) << r.path() << " with " << hint.first;
        }
        for (const std::string& query : {"tenant=" + b_slug, "tenant_id=" + b_id})
            EXPECT_TRUE(is_problem(a_.api().get(r.path() + "?" + query), 400)) << r.path() << "?" << query;
    }
}

// ============================================================================= references

TEST_F(CrossTenant, a_trip_cannot_name_another_tenants_vehicle_or_driver) {
    Api api = a_.api();
    const std::string trips = "/api/v1/trips";
    const auto a_trips_before = api.list_all(trips);
    const auto b_before = snapshot(b_);
    const std::string own_trip = trips + "/" + a_.ids.at("trips").front();

    for (const auto& [field, resource] : {std::pair{"vehicle_id", "vehicles"}, std::pair{"driver_id", "drivers"}}) {
        for (const auto& theirs : b_.ids.at(resource)) {
            const std::string what = std::string(field) + " = B's " + theirs;
            json::object body = trip_body(a_.ids.at("vehicles").front(), a_.ids.at("drivers").front());
            body[field] = theirs;
            Response foreign = api.post(trips, body);
            body[field] = random_uuid();
            Response missing = api.post(trips, body);
            EXPECT_TRUE(names_field(foreign, 422, field)) << "POST, " << what;
            EXPECT_EQ(comparable_problem(foreign), comparable_problem(missing)) << "POST, " << what;

            json::object patch;
            patch[field] = theirs;
            foreign = api.patch(own_trip, patch);
            patch[field] = random_uuid();
            missing = api.patch(own_trip, patch);
            EXPECT_TRUE(names_field(foreign, 422, field)) << "PATCH, " << what;
            EXPECT_EQ(comparable_problem(foreign), comparable_problem(missing)) << "PATCH, " << what;
        }
    }
    EXPECT_EQ(api.list_all(trips), a_trips_before) << "A's trips changed";
    EXPECT_EQ(snapshot(b_), b_before) << "B's data changed";
}

// ============================================================================= under load

TEST_F(CrossTenant, twenty_seconds_of_interleaved_traffic_never_crosses_tenants) {
    constexpr int kThreads = 8;
    constexpr auto kDuration = 20s;
    const World* worlds[2] = {&a_, &b_};
    const std::uint16_t port = a_.tenant.api().port();

    // What one thread did and saw, per tenant (0: A, 1: B).
    struct Seen {
        long requests = 0;
        std::map<int, long> statuses;
        std::set<std::string> ids[2];      // every UUID in an answer to that tenant's requests
        std::set<std::string> created[2];  // rows this thread created for that tenant
        std::vector<std::string> unexpected;
    };
    std::vector<Seen> seen(kThreads);
    // Resources the soak creates rows of: not users, whose password hashing is deliberately slow
    // and bounded (a busy hasher answers 503 by design).
    std::vector<const Resource*> writable;
    for (const auto& r : resources())
        if (!r.sample(a_.ids, 0).contains("password")) writable.push_back(&r);
    const auto end = test::Clock::now() + kDuration;

    auto worker = [&](int index) {
        Seen& s = seen[static_cast<std::size_t>(index)];
        std::mt19937 rng(static_cast<unsigned>(index) * 7919u + 1);
        auto pick = [&](std::size_t n) { return static_cast<std::size_t>(rng() % n); };
        KeepAlive conn(port);
        // Rows this thread created and has not deleted yet: (path, id), per tenant.
        std::vector<std::pair<std::string, std::string>> live[2];
        for (long n = 0; test::Clock::now() < end; ++n) {
            const int t = static_cast<int>((n + index) % 2);  // A and B alternate on this connection
            const World& w = *worlds[t];
            const World& other = *worlds[1 - t];
            auto role = w.tokens.begin();
            std::advance(role, static_cast<std::ptrdiff_t>(pick(w.tokens.size())));
            const std::string& reader = role->second;
            const std::string& writer = w.tokens.at(pick(2) == 0 ? "admin" : "dispatcher");

            std::string method = "GET", target, body;
            std::string token = reader;
            int expected = 200;
            const std::size_t op = pick(100);
            if (op < 30) {  // a list, any of its filters, naming the caller's own rows
                const Resource& r = resources()[pick(resources().size())];
                std::vector<std::string> queries;
                for (const auto& f : r.filters)
                    if (f.find("{theirs:") == std::string::npos)
                        for (auto& q : expand(f, w.ids, other.ids))
                            queries.push_back(std::move(q));
                const std::string& q = queries[pick(queries.size())];
                target = r.path() + "?limit=" + std::to_string(1 + pick(30)) + (q.empty() ? "" : "&" + q);
            } else if (op < 55) {  // one of the tenant's rows by id
                const Resource& r = resources()[pick(resources().size())];
                const auto& ids = w.ids.at(r.name);
                target = r.path() + "/" + ids[pick(ids.size())];
            } else if (op < 75 || live[t].empty()) {  // a new row
                const Resource& r = *writable[pick(writable.size())];
                method = "POST";
                target = r.path();
                body = to_json(r.sample(w.ids, pick(kRows)));
                token = writer;
                expected = 201;
            } else if (op < 90) {  // a change to a row this thread created
                const auto& [path, id] = live[t][pick(live[t].size())];
                for (const auto& r : resources())
                    if (r.path() == path) body = r.patch;
                method = "PATCH";
                target = path + "/" + id;
                token = writer;
            } else {  // deleting one (no trip refers to rows made here)
                const std::size_t k = pick(live[t].size());
                method = "DELETE";
                target = live[t][k].first + "/" + live[t][k].second;
                live[t].erase(live[t].begin() + static_cast<std::ptrdiff_t>(k));
                token = writer;
                expected = 204;
            }

            Response r = conn.request(method, target, token, body);
            ++s.requests;
            ++s.statuses[r.status];
            for (auto& id : uuids_in(r.body))
                s.ids[t].insert(std::move(id));
            for (auto& id : uuids_in(r.header("Location")))
                s.ids[t].insert(std::move(id));
            if (r.status == 201) {
                const std::string id = text(object_of(r), "id");
                s.created[t].insert(id);
                live[t].emplace_back(target, id);
            }
            if (r.status != expected && s.unexpected.size() < 20)
                s.unexpected.push_back(w.tenant.info.slug + " " + method + " " + target + " " + body + " → " +
                                       describe(r));
        }
    };
    std::vector<std::thread> threads;
    for (int i = 0; i < kThreads; ++i)
        threads.emplace_back(worker, i);
    for (auto& th : threads)
        th.join();

    // Every id of each tenant: its rows before the soak and every row created during it.
    std::set<std::string> all[2] = {a_.all_ids(), b_.all_ids()};
    long requests = 0;
    long server_errors = 0;
    std::map<int, long> statuses;
    for (const auto& s : seen) {
        requests += s.requests;
        for (const auto& [status, count] : s.statuses) {
            statuses[status] += count;
            if (status == 0 || status >= 500) server_errors += count;
        }
        for (int t = 0; t < 2; ++t)
            all[t].insert(s.created[t].begin(), s.created[t].end());
        for (const auto& u : s.unexpected)
            ADD_FAILURE() << "unexpected answer: " << u;
    }
    std::set<std::string> shown[2];
    for (const auto& s : seen)
        for (int t = 0; t < 2; ++t)
            shown[t].insert(s.ids[t].begin(), s.ids[t].end());
    for (int t = 0; t < 2; ++t) {
        const char* who = t == 0 ? "A" : "B";
        std::vector<std::string> crossed;
        std::set_intersection(shown[t].begin(), shown[t].end(), all[1 - t].begin(), all[1 - t].end(),
                              std::back_inserter(crossed));
        EXPECT_TRUE(crossed.empty()) << crossed.size() << " ids of the other tenant in answers to " << who << ", e.g. "
                                     << crossed.front();
        // The scan itself works: the tenant's own rows were seen.
        for (const auto& id : worlds[t]->ids.at("vehicles"))
            EXPECT_TRUE(shown[t].contains(id)) << who << "'s vehicle " << id << " never showed";
    }
    EXPECT_EQ(server_errors, 0) << "5xx or no answer";

    std::string figures;
    for (const auto& [status, count] : statuses)
        figures += " " + std::to_string(status) + "×" + std::to_string(count);
    RecordProperty("requests", static_cast<int>(requests));
    std::printf("soak: %ld requests in %lld s over %d threads (%.0f/s):%s; rows created A %zu, B %zu\n", requests,
                static_cast<long long>(kDuration.count()), kThreads, static_cast<double>(requests) / kDuration.count(),
                figures.c_str(), all[0].size(), all[1].size());
    EXPECT_GT(requests, 1000) << "too little traffic to mean anything";
}

}  // namespace
}  // namespace mtapi::fleettest
