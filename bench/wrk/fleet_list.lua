-- wrk script: GET /api/v1/vehicles?limit=20 (first page), the tenants' tokens in turn.
--
--   wrk ... -s bench/wrk/fleet_list.lua http://host:port -- TARGETS_FILE
--
-- One request per tenant of the targets file (see fleet_common.lua), formatted once in init();
-- each thread starts at its own tenant.

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "fleet_common.lua")

local requests = {}
local next_index = 1

function init(args)
   for _, tenant in ipairs(fleet_load(args[1])) do
      requests[#requests + 1] = wrk.format("GET", "/api/v1/vehicles?limit=20", fleet_auth(tenant))
   end
   next_index = ((tid or 1) - 1) % #requests + 1
end

function request()
   local r = requests[next_index]
   next_index = next_index % #requests + 1
   return r
end
