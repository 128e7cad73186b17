-- mtapi token bucket: one atomic decision on one bucket (embedded in the binary at build time;
-- run with EVALSHA, and with EVAL after NOSCRIPT).
--
-- KEYS[1]  the bucket: a hash {t = tokens in micro-tokens, ts = time of the last update in
--          microseconds of Redis's clock}; mtapi names it rl:{<bucket id>}
-- ARGV[1]  capacity in tokens (integer, 1 .. 10^9)
-- ARGV[2]  refill rate in tokens per second (>= 0; 0 = no refill)
-- ARGV[3]  tokens to take: n >= 0 takes up to n tokens (a batch of requests, plus any tokens the
--          caller reserves ahead: as many as there are whole tokens are granted)
-- ARGV[4]  milliseconds a bucket without refill keeps its state after its last accepted request
-- ARGV[5]  tokens to give back first (>= 0; never beyond capacity): a refund, or the unused rest
--          of an expired reservation
--
-- Returns {granted (0..n), remaining whole tokens, ms until full, ms until a refused token could
-- be taken (0 when all n were granted)}.
--
-- Arithmetic: Lua numbers are doubles, exact for integers below 2^53. Tokens are integers in
-- micro-tokens (at most 10^15), times integers in microseconds, and a rate of r tokens per
-- second is r micro-tokens per microsecond. The elapsed time is clamped to the time the bucket
-- needs to fill *before* it is multiplied by the rate, so the product stays within the missing
-- tokens (plus one microsecond's worth) however long the bucket sat idle; it is then floored
-- and capped at capacity. The clock is Redis's own (TIME), the same for every mtapi instance.

local key = KEYS[1]
local cap = tonumber(ARGV[1]) * 1000000
local rate = tonumber(ARGV[2])
local cost = tonumber(ARGV[3]) * 1000000
local idle_ms = tonumber(ARGV[4])
local give = tonumber(ARGV[5]) * 1000000

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])

local state = redis.call('HMGET', key, 't', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = cap
  ts = now
end
if tokens > cap then tokens = cap end -- the capacity was lowered
if tokens < 0 then tokens = 0 end

-- Redis's clock can step back (a failover to a replica, a clock adjustment): no negative
-- refill, and the later timestamp is kept so no interval is credited twice.
local elapsed = now - ts
if elapsed < 0 then elapsed = 0 end
if now > ts then ts = now end

if rate > 0 and tokens < cap then
  local fill_us = math.ceil((cap - tokens) / rate)
  if elapsed > fill_us then elapsed = fill_us end
  tokens = math.min(cap, tokens + math.floor(elapsed * rate))
end

if give > 0 then tokens = math.min(cap, tokens + give) end

local want = 0
local granted = 0
if cost > 0 then
  want = cost / 1000000
  granted = math.min(want, math.floor(tokens / 1000000))
  tokens = tokens - granted * 1000000
end

local full_ms = 0
if tokens < cap then
  if rate > 0 then
    full_ms = math.ceil((cap - tokens) / rate / 1000)
  else
    full_ms = -1 -- never by refill
  end
end

if granted > 0 or give > 0 then
  redis.call('HSET', key, 't', string.format('%.0f', tokens), 'ts', string.format('%.0f', ts))
  -- Expire once the bucket is full again (plus a margin): a missing key reads as a full bucket,
  -- so idle tenants cost no memory. A bucket without refill lives idle_ms after its last write.
  if full_ms >= 0 then
    redis.call('PEXPIRE', key, full_ms + 1000)
  else
    redis.call('PEXPIRE', key, idle_ms)
    full_ms = idle_ms
  end
end

local wait_ms = 0
if granted < want then
  -- The refused ones wait for the next whole token.
  if rate > 0 then
    wait_ms = math.ceil((1000000 - tokens) / rate / 1000)
  else
    wait_ms = redis.call('PTTL', key)
    if wait_ms <= 0 then wait_ms = idle_ms end
    full_ms = wait_ms
  end
end

return {granted, math.floor(tokens / 1000000), full_ms, wait_ms}
