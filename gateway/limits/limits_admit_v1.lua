-- limits_admit_v1: check every limit of one key and, only if all pass, take them all.
-- Redis runs a script alone, so every replica sharing these keys sees one order of admits: a limit
-- holds exactly, never "limit x replicas". Time is ARGV[1], never the Redis clock.
--
-- KEYS (one hash tag, one cluster slot):
--   1 rpm ZSET (reservation id -> admitted at)      2 tpm ZSET (reservation id -> admitted at)
--   3 tpm HASH (reservation id -> tokens)           4 tpm STRING (tokens in the window)
--   5 leases ZSET (reservation id -> lease expiry)  6 reserved HASH (reservation id -> "micros period")
--   7 budget bucket HASH of the current period (spent, reserved; micro-dollars)
-- ARGV: 1 now, 2 reservation id, 3 rpm, 4 tpm, 5 max_parallel, 6 budget micros ('' = no such limit),
--       7 period id, 8 seconds until the period resets ('' = never), 9 ask tokens, 10 ask micros,
--       11 cache hit ('1'/'0'), 12 window seconds, 13 lease seconds, 14 bucket grace seconds,
--       15 seconds to suggest when every concurrency slot is taken
-- Returns strings ('' = none): allowed ('1'/'0'), reason, retry_after, remaining_requests,
--   reset_requests, remaining_tokens, reset_tokens, budget remaining micros.

local now = tonumber(ARGV[1])
local id = ARGV[2]
local rpm, tpm, parallel, budget = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local period, until_reset = ARGV[7], tonumber(ARGV[8])
local ask_tokens, ask_micros = tonumber(ARGV[9]), tonumber(ARGV[10])
local cache_hit = ARGV[11] == '1'
local window, lease, grace = tonumber(ARGV[12]), tonumber(ARGV[13]), tonumber(ARGV[14])
local cutoff = now - window

-- redis.call turns Lua numbers into strings with %.14g, which would round epoch seconds.
local function num(x) return string.format('%.17g', x) end
local function int(x) return string.format('%d', x) end

-- Seconds until the entry of rank `rank` (oldest first) of a window ZSET leaves the window.
local function leaves_in(key, rank)
  local entry = redis.call('ZRANGE', key, rank, rank, 'WITHSCORES')
  if #entry == 0 then return 0 end
  return tonumber(entry[2]) + window - now
end

local failed = {}  -- {reason, seconds until it could pass, or false for never}

-- RPM: an exact sliding log; the window is (now - window, now].
local requests = 0
if rpm then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', num(cutoff))
  requests = redis.call('ZCARD', KEYS[1])
  if requests + 1 > rpm then
    -- Once the oldest (requests - rpm + 1) entries have left, one slot is free.
    failed[#failed + 1] = {'rpm', rpm > 0 and leaves_in(KEYS[1], requests - rpm)}
  end
end

-- TPM: tokens reserved (then settled) in the window, each at the time of its admit.
local tokens = 0
if tpm then
  local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', num(cutoff))
  if #expired > 0 then
    local gone = 0
    for _, member in ipairs(expired) do
      gone = gone + (tonumber(redis.call('HGET', KEYS[3], member)) or 0)
      redis.call('HDEL', KEYS[3], member)
    end
    redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', num(cutoff))
    redis.call('DECRBY', KEYS[4], int(gone))
  end
  if redis.call('ZCARD', KEYS[2]) == 0 then
    -- Nothing in the window: the total is 0 whatever an expiry left behind.
    redis.call('DEL', KEYS[3], KEYS[4])
  else
    tokens = tonumber(redis.call('GET', KEYS[4])) or 0
  end
  if not cache_hit and tokens + ask_tokens > tpm then
    local retry = false  -- an ask larger than the whole limit never passes
    if ask_tokens <= tpm then
      local excess, freed, rank = tokens + ask_tokens - tpm, 0, 0
      retry = window
      repeat
        local batch = redis.call('ZRANGE', KEYS[2], rank, rank + 99, 'WITHSCORES')
        local found = false
        for i = 1, #batch, 2 do
          freed = freed + (tonumber(redis.call('HGET', KEYS[3], batch[i])) or 0)
          if freed >= excess then
            retry, found = tonumber(batch[i + 1]) + window - now, true
            break
          end
        end
        rank = rank + 100
      until found or #batch < 200
    end
    failed[#failed + 1] = {'tpm', retry}
  end
end

-- Leases: in-flight reservations (for max_parallel, and to return a dead gateway's budget).
local in_flight = 0
if parallel or budget then
  local dead = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', num(now))
  if #dead > 0 then
    for _, member in ipairs(dead) do
      local held = redis.call('HGET', KEYS[6], member)
      if held then
        local micros, held_period = string.match(held, '^(%-?%d+) (.*)$')
        -- A reservation of an earlier period no longer counts against anything.
        if held_period == period then redis.call('HINCRBY', KEYS[7], 'reserved', int(-tonumber(micros))) end
        redis.call('HDEL', KEYS[6], member)
      end
    end
    redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', num(now))
  end
  in_flight = redis.call('ZCARD', KEYS[5])
  if parallel and not cache_hit and in_flight + 1 > parallel then
    -- Slots come back when a request ends, which nothing here can predict: a short hint.
    failed[#failed + 1] = {'parallel', parallel > 0 and tonumber(ARGV[15])}
  end
end

-- Budget: spent + reserved + ask must stay within the period's budget.
local spent, reserved = 0, 0
if budget then
  local bucket = redis.call('HMGET', KEYS[7], 'spent', 'reserved')
  spent, reserved = tonumber(bucket[1]) or 0, tonumber(bucket[2]) or 0
  if not cache_hit and spent + reserved + ask_micros > budget then
    -- Passes once the period resets, unless the ask alone exceeds the budget or there is no reset.
    failed[#failed + 1] = {'budget', ask_micros <= budget and until_reset or false}
  end
end

local allowed, reason, retry = #failed == 0, '', ''
if allowed then
  if rpm then
    redis.call('ZADD', KEYS[1], num(now), id)
    redis.call('EXPIRE', KEYS[1], math.ceil(window) + 1)
    requests = requests + 1
  end
  if not cache_hit then
    if tpm then
      redis.call('ZADD', KEYS[2], num(now), id)
      redis.call('HSET', KEYS[3], id, int(ask_tokens))
      redis.call('INCRBY', KEYS[4], int(ask_tokens))
      for i = 2, 4 do redis.call('EXPIRE', KEYS[i], math.ceil(window) + 1) end
      tokens = tokens + ask_tokens
    end
    -- No expiry on leases: a dead lease must stay until an admit returns its reserved budget.
    if parallel or budget then redis.call('ZADD', KEYS[5], num(now + lease), id) end
    if budget then
      redis.call('HSET', KEYS[6], id, int(ask_micros) .. ' ' .. period)
      redis.call('HINCRBY', KEYS[7], 'reserved', int(ask_micros))
      if until_reset then redis.call('EXPIRE', KEYS[7], math.ceil(until_reset) + grace) end
      reserved = reserved + ask_micros
    end
  end
else
  -- The binding limit: the one that passes last (never beats any time); ties go to check order.
  local pick = failed[1]
  for i = 2, #failed do
    local f = failed[i]
    if pick[2] and (not f[2] or f[2] > pick[2]) then pick = f end
  end
  reason = pick[1]
  if pick[2] then retry = num(pick[2]) end
end

local remaining_requests, reset_requests, remaining_tokens, reset_tokens, budget_left = '', '', '', '', ''
if rpm then
  remaining_requests = int(math.max(rpm - requests, 0))
  reset_requests = num(leaves_in(KEYS[1], 0))
end
if tpm then
  remaining_tokens = int(math.max(tpm - tokens, 0))
  reset_tokens = num(leaves_in(KEYS[2], 0))
end
if budget then budget_left = int(math.max(budget - spent - reserved, 0)) end

return {allowed and '1' or '0', reason, retry, remaining_requests, reset_requests, remaining_tokens,
        reset_tokens, budget_left}
