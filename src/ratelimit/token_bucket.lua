-- mtapi token bucket: one atomic decision on one bucket (embedded in the binary at build time;
-- run with EVALSHA, and with EVAL after NOSCRIPT).
--
-- KEYS[1]  the bucket: a hash {t = tokens in micro-tokens, ts = time of the last update in
--          microseconds of Redis's clock, and the reservations window: rc, rp = micro-tokens
--          reserved in the current and the previous window, rw = start of the current window};
--          mtapi names it rl:{<bucket id>}
-- ARGV[1]  capacity in tokens (integer, 1 .. 10^9)
-- ARGV[2]  refill rate in tokens per second (>= 0; 0 = no refill)
-- ARGV[3]  tokens to take: n >= 0 takes up to n tokens (a batch of n requests decided at once:
--          as many as there are whole tokens are granted, in arrival order)
-- ARGV[4]  milliseconds a bucket without refill keeps its state after its last accepted request
-- ARGV[5]  tokens to give back first (>= 0): a refund, or the unspent rest of a reservation
-- ARGV[6]  tokens to reserve ahead for the caller once all n were granted (>= 0)
-- ARGV[7]  milliseconds a reservation counts for the caller (> 0 when ARGV[6] > 0)
--
-- Returns {granted (0..n), remaining whole tokens, ms until full, ms until a refused request
-- could pass (0 when all n were granted), tokens reserved (0..ARGV[6])}.
--
-- Arithmetic: Lua numbers are doubles, exact for integers below 2^53. Tokens are integers in
-- micro-tokens (at most 10^15), times integers in microseconds, and a rate of r tokens per
-- second is r micro-tokens per microsecond. The elapsed time is clamped to the time the bucket
-- needs to fill *before* it is multiplied by the rate, so the product stays within the missing
-- tokens (plus one microsecond's worth) however long the bucket sat idle; it is then floored
-- and capped. The clock is Redis's own (TIME), the same for every mtapi instance.
--
-- Reservations: tokens reserved ahead have left the bucket but may still be spent by the
-- instances holding them. So that the bucket plus what is held never exceeds the capacity (a
-- request-by-request bucket's promise), every token reserved within the last one or two
-- reservation periods (rc + rp: at least as long as any reservation counts) is kept out of the
-- refill: the bucket refills only up to capacity - (rc + rp). Counting spent reserved tokens
-- too errs on the side of fewer tokens, for at most two periods.

local key = KEYS[1]
local cap = tonumber(ARGV[1]) * 1000000
local rate = tonumber(ARGV[2])
local cost = tonumber(ARGV[3]) * 1000000
local idle_ms = tonumber(ARGV[4])
local give = tonumber(ARGV[5]) * 1000000
local reserve = tonumber(ARGV[6]) * 1000000
local period_us = tonumber(ARGV[7]) * 1000

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])

local state = redis.call('HMGET', key, 't', 'ts', 'rc', 'rp', 'rw')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = cap
  ts = now
end
if tokens > cap then tokens = cap end -- the capacity was lowered
if tokens < 0 then tokens = 0 end

-- The reservations window: rotate once a period has passed, forget both after two.
local rc = tonumber(state[3]) or 0
local rp = tonumber(state[4]) or 0
local rw = tonumber(state[5]) or now
if now - rw >= 2 * period_us then
  rc, rp, rw = 0, 0, now
elseif now - rw >= period_us then
  rc, rp, rw = 0, rc, now
end
local top = math.max(0, cap - rc - rp) -- the refill stops here

-- Redis's clock can step back (a failover to a replica, a clock adjustment): no negative
-- refill, and the later timestamp is kept so no interval is credited twice.
local elapsed = now - ts
if elapsed < 0 then elapsed = 0 end
if now > ts then ts = now end

if rate > 0 and tokens < top then
  local fill_us = math.ceil((top - tokens) / rate)
  if elapsed > fill_us then elapsed = fill_us end
  tokens = math.min(top, tokens + math.floor(elapsed * rate))
end

if give > 0 and tokens < top then tokens = math.min(top, tokens + give) end

local want = 0
local granted = 0
if cost > 0 then
  want = cost / 1000000
  granted = math.min(want, math.floor(tokens / 1000000))
  tokens = tokens - granted * 1000000
end

local reserved = 0
if reserve > 0 and granted == want and period_us > 0 then
  reserved = math.min(reserve / 1000000, math.floor(tokens / 1000000))
  tokens = tokens - reserved * 1000000
  rc = rc + reserved * 1000000
end

local full_ms = 0
if tokens < cap then
  if rate > 0 then
    full_ms = math.ceil((cap - tokens) / rate / 1000)
  else
    full_ms = -1 -- never by refill
  end
end

if granted > 0 or give > 0 or reserved > 0 then
  redis.call('HSET', key, 't', string.format('%.0f', tokens), 'ts', string.format('%.0f', ts))
  if rc > 0 or rp > 0 then
    redis.call('HSET', key, 'rc', string.format('%.0f', rc), 'rp', string.format('%.0f', rp), 'rw',
      string.format('%.0f', rw))
  elseif state[3] then
    redis.call('HDEL', key, 'rc', 'rp', 'rw')
  end
  -- Expire once the bucket is full again (plus a margin): a missing key reads as a full bucket,
  -- so idle tenants cost no memory. A bucket without refill lives idle_ms after its last write.
  -- The key outlives every reservation it granted (they count for at most one period).
  if full_ms >= 0 then
    redis.call('PEXPIRE', key, math.max(full_ms + 1000, 2 * period_us / 1000))
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

return {granted, math.floor(tokens / 1000000), full_ms, wait_ms, reserved}
