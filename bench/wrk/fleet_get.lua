-- wrk script: GET /api/v1/vehicles/{id}, requests spread over the tenants and their vehicles.
--
--   wrk ... -s bench/wrk/fleet_get.lua http://host:port -- TARGETS_FILE
--
-- Every (tenant, vehicle) pair of the targets file (see fleet_common.lua) becomes one request,
-- formatted once in init(); the tenants alternate and the vehicles of each come in a random order
-- (seeded by the thread number), and each thread cycles through the list from its own starting
-- point. Formatting every request up front keeps wrk's per-request Lua work to a table lookup.

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "fleet_common.lua")

local requests = {}
local next_index = 1

function init(args)
   local tenants = fleet_load(args[1])
   math.randomseed(1000 + (tid or 1))
   local order = {}
   local longest = 0
   for t, tenant in ipairs(tenants) do
      assert(#tenant.ids > 0, "tenant " .. t .. " has no vehicle ids")
      local ids = {}
      for i, id in ipairs(tenant.ids) do ids[i] = id end
      for i = #ids, 2, -1 do  -- Fisher-Yates
         local j = math.random(i)
         ids[i], ids[j] = ids[j], ids[i]
      end
      order[t] = ids
      if #ids > longest then longest = #ids end
   end
   for i = 1, longest do
      for t, tenant in ipairs(tenants) do
         local ids = order[t]
         local id = ids[(i - 1) % #ids + 1]
         requests[#requests + 1] = wrk.format("GET", "/api/v1/vehicles/" .. id, fleet_auth(tenant))
      end
   end
   next_index = ((tid or 1) - 1) * 997 % #requests + 1
end

function request()
   local r = requests[next_index]
   next_index = next_index % #requests + 1
   return r
end
