-- wrk script: POST /api/v1/vehicles with every field, the tenants' tokens in turn.
--
--   wrk ... -s bench/wrk/fleet_post.lua http://host:port -- TARGETS_FILE TAG
--
-- Plates must be unique per tenant: each is TAG (unique per run of this script, given by
-- bench/fleet.sh), the thread number and the thread's request counter, e.g. "r2a-1-4711". A
-- plate holds at most 20 characters: TAG has at most 6.

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "fleet_common.lua")

local headers = {}
local tag = "w"
local counter = 0

function init(args)
   for t, tenant in ipairs(fleet_load(args[1])) do
      headers[t] = fleet_auth(tenant, { ["Content-Type"] = "application/json" })
   end
   tag = args[2] or tag
   assert(#tag <= 6, "TAG must have at most 6 characters")
   counter = 0
end

function request()
   counter = counter + 1
   local t = ((tid or 1) + counter) % #headers + 1
   local body = string.format('{"plate":"%s-%d-%d","vin":"WVWZZZ1JZXW%06d","make":"Volvo","model":"FH16",'
      .. '"year":2024,"status":"active","odometer_km":%d}', tag, tid or 1, counter, counter % 1000000, counter)
   return wrk.format("POST", "/api/v1/vehicles", headers[t], body)
end
