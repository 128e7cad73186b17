-- Shared part of bench/wrk/fleet_*.lua (loaded with dofile, not given to wrk itself).
--
-- The first script argument names a targets file written by bench/fleet.sh: one line per tenant,
-- "<access token> <vehicle id> <vehicle id> ...". fleet_load() reads it into
-- { { token = "...", ids = { ... } }, ... }. Every wrk thread gets a number (tid, 1-based) in
-- setup(), so that threads start at different places and make different plates.
--
-- done() comes from summary.lua: one "BENCH requests=... rps=... p99_ms=..." line at the end, the
-- format bench/lib.sh reads. No response() callback, as there: it would hand every response to
-- Lua and make wrk the bottleneck; wrk counts statuses >= 400 as errors by itself.

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "summary.lua")

local threads = 0
function setup(thread)
   threads = threads + 1
   thread:set("tid", threads)
end

function fleet_load(path)
   local file = assert(io.open(path, "r"), "cannot open targets file " .. tostring(path))
   local tenants = {}
   for line in file:lines() do
      local t = { ids = {} }
      for word in line:gmatch("%S+") do
         if t.token == nil then t.token = word else t.ids[#t.ids + 1] = word end
      end
      if t.token ~= nil then tenants[#tenants + 1] = t end
   end
   file:close()
   assert(#tenants > 0, "no tenants in " .. path)
   return tenants
end

function fleet_auth(tenant, extra)
   local h = { ["Authorization"] = "Bearer " .. tenant.token }
   for k, v in pairs(extra or {}) do h[k] = v end
   return h
end
