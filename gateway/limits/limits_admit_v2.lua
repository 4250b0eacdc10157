-- limits_admit_v2: check every limit of one key (and of its model alias) and, only if all pass, take
-- them all.
-- Redis runs a script alone, so every replica sharing these keys sees one order of admits: a limit
-- holds exactly, never "limit x replicas". Time is ARGV[1], never the Redis clock.
--
-- KEYS (one hash tag, one cluster slot):
--   1 rpm ZSET (reservation id -> admitted at)      2 tpm ZSET (reservation id -> admitted at)
--   3 tpm HASH (reservation id -> tokens)           4 tpm STRING (tokens in the window)
--   5 leases ZSET (reservation id -> lease expiry)  6 reserved HASH (reservation id -> "micros period")
--   7 budget bucket HASH of the current period (spent, reserved; micro-dollars)
--   8..11 only with model limits (ARGV[16] or ARGV[17] set): the model alias's rpm ZSET, tpm ZSET,
--   tpm HASH and tpm STRING, as 1..4 but for this key's requests to that alias only
-- ARGV: 1 now, 2 reservation id, 3 rpm, 4 tpm, 5 max_parallel, 6 budget micros ('' = no such limit),
--       7 period id, 8 seconds until the period resets ('' = never), 9 ask tokens, 10 ask micros,
--       11 cache hit ('1'/'0'), 12 window seconds, 13 lease seconds, 14 bucket grace seconds,
--       15 seconds to suggest when every concurrency slot is taken, 16 model rpm, 17 model tpm
-- Returns strings ('' = none): allowed ('1'/'0'), reason, retry_after, remaining_requests,
--   reset_requests, remaining_tokens, reset_tokens, budget remaining micros.

local now = tonumber(ARGV[1])
local id = ARGV[2]
local rpm, tpm, parallel, budget = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local period, until_reset = ARGV[7], tonumber(ARGV[8])
local ask_tokens, ask_micros = tonumber(ARGV[9]), tonumber(ARGV[10])
local cache_hit = ARGV[11] == '1'
local window, lease, grace = tonumber(ARGV[12]), tonumber(ARGV[13]), tonumber(ARGV[14])
local model_rpm, model_tpm = tonumber(ARGV[16]), tonumber(ARGV[17])
local cutoff = now - window

-- redis.call turns Lua numbers into strings with %.14g, which would round epoch seconds.
local function num(x) return string.format('%.17g', x) end
local function int(x) return string.format('%d', x) end

-- Seconds until an entry admitted at `at` leaves the window. Replicas read their clocks before
-- their scripts run, so an entry may be a little younger than this call's `now`: never past the window.
local function leaves(at)
  return math.min(window, tonumber(at) + window - now)
end

-- Seconds until the entry of rank `rank` (oldest first) of a window ZSET leaves the window.
local function leaves_in(key, rank)
  local entry = redis.call('ZRANGE', key, rank, rank, 'WITHSCORES')
  if #entry == 0 then return 0 end
  return leaves(entry[2])
end

local failed = {}  -- {reason, seconds until it could pass, or false for never}

-- RPM: an exact sliding log; the window is (now - window, now]. Returns the count in the window.
local function check_rpm(reason, limit, zset)
  redis.call('ZREMRANGEBYSCORE', zset, '-inf', num(cutoff))
  local count = redis.call('ZCARD', zset)
  if count + 1 > limit then
    -- Once the oldest (count - limit + 1) entries have left, one slot is free.
    failed[#failed + 1] = {reason, limit > 0 and leaves_in(zset, count - limit)}
  end
  return count
end

-- TPM: tokens reserved (then settled) in the window, each at the time of its admit. Returns the
-- tokens in the window.
local function check_tpm(reason, limit, zset, hash, total)
  local tokens = 0
  local expired = redis.call('ZRANGEBYSCORE', zset, '-inf', num(cutoff))
  if #expired > 0 then
    local gone = 0
    for _, member in ipairs(expired) do
      gone = gone + (tonumber(redis.call('HGET', hash, member)) or 0)
      redis.call('HDEL', hash, member)
    end
    redis.call('ZREMRANGEBYSCORE', zset, '-inf', num(cutoff))
    redis.call('DECRBY', total, int(gone))
  end
  if redis.call('ZCARD', zset) == 0 then
    -- Nothing in the window: the total is 0 whatever an expiry left behind.
    redis.call('DEL', hash, total)
  else
    tokens = tonumber(redis.call('GET', total)) or 0
  end
  if not cache_hit and tokens + ask_tokens > limit then
    local retry = false  -- an ask larger than the whole limit never passes
    if ask_tokens <= limit then
      local excess, freed, rank = tokens + ask_tokens - limit, 0, 0
      retry = window
      repeat
        local batch = redis.call('ZRANGE', zset, rank, rank + 99, 'WITHSCORES')
        local found = false
        for i = 1, #batch, 2 do
          freed = freed + (tonumber(redis.call('HGET', hash, batch[i])) or 0)
          if freed >= excess then
            retry, found = leaves(batch[i + 1]), true
            break
          end
        end
        rank = rank + 100
      until found or #batch < 200
    end
    failed[#failed + 1] = {reason, retry}
  end
  return tokens
end

local requests, tokens = 0, 0
if rpm then requests = check_rpm('rpm', rpm, KEYS[1]) end
if tpm then tokens = check_tpm('tpm', tpm, KEYS[2], KEYS[3], KEYS[4]) end

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

-- The model scope: the same windows over this key's requests to one alias, on top of the key's.
local model_requests, model_tokens = 0, 0
if model_rpm then model_requests = check_rpm('model_rpm', model_rpm, KEYS[8]) end
if model_tpm then model_tokens = check_tpm('model_tpm', model_tpm, KEYS[9], KEYS[10], KEYS[11]) end

local function take_request(zset)
  redis.call('ZADD', zset, num(now), id)
  redis.call('EXPIRE', zset, math.ceil(window) + 1)
end

local function take_tokens(zset, hash, total)
  redis.call('ZADD', zset, num(now), id)
  redis.call('HSET', hash, id, int(ask_tokens))
  redis.call('INCRBY', total, int(ask_tokens))
  for _, k in ipairs({zset, hash, total}) do redis.call('EXPIRE', k, math.ceil(window) + 1) end
end

local allowed, reason, retry = #failed == 0, '', ''
if allowed then
  if rpm then
    take_request(KEYS[1])
    requests = requests + 1
  end
  if model_rpm then
    take_request(KEYS[8])
    model_requests = model_requests + 1
  end
  if not cache_hit then
    if tpm then
      take_tokens(KEYS[2], KEYS[3], KEYS[4])
      tokens = tokens + ask_tokens
    end
    if model_tpm then
      take_tokens(KEYS[9], KEYS[10], KEYS[11])
      model_tokens = model_tokens + ask_tokens
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
-- The key-wide windows, else (a key with model limits only) the model's.
if rpm then
  remaining_requests = int(math.max(rpm - requests, 0))
  reset_requests = num(leaves_in(KEYS[1], 0))
elseif model_rpm then
  remaining_requests = int(math.max(model_rpm - model_requests, 0))
  reset_requests = num(leaves_in(KEYS[8], 0))
end
if tpm then
  remaining_tokens = int(math.max(tpm - tokens, 0))
  reset_tokens = num(leaves_in(KEYS[2], 0))
elseif model_tpm then
  remaining_tokens = int(math.max(model_tpm - model_tokens, 0))
  reset_tokens = num(leaves_in(KEYS[9], 0))
end
if budget then budget_left = int(math.max(budget - spent - reserved, 0)) end

return {allowed and '1' or '0', reason, retry, remaining_requests, reset_requests, remaining_tokens,
        reset_tokens, budget_left}
