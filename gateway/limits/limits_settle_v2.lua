-- limits_settle_v2: replace one admitted reservation's estimates by what the request really used,
-- free its concurrency slot and add it to the day's ledger, exactly once per reservation id: the
-- first call records the id as settled, and a retried call finds it there and changes nothing.
--
-- KEYS (one hash tag, one cluster slot):
--   1 settled ZSET (reservation id -> settled at; kept for ARGV[18] seconds of the caller's time)
--   2 tpm ZSET, 3 tpm HASH, 4 tpm STRING (as in limits_admit_v2)
--   5 leases ZSET, 6 reserved HASH (reservation id -> "micros period")
--   7 budget bucket HASH of the current period
--   8 budget bucket HASH of the period in force one lease ago (may equal 7): a reservation still
--     held was admitted in one of these two, since a lease is shorter than any period
--   9 ledger HASH of the day, 10 ledger days ZSET
--   11 model tpm ZSET, 12 model tpm HASH, 13 model tpm STRING (only when ARGV[19] is '1')
-- ARGV: 1 now, 2 reservation id, 3 tpm tracked ('1'/'0'), 4 leases tracked, 5 budget tracked,
--       6 cache hit, 7 current period id, 8 its bucket's ttl seconds ('' = never expires),
--       9 previous period id, 10 its bucket's ttl, 11 model, 12 input tokens, 13 output tokens,
--       14 cost micros, 15 saved micros, 16 day (YYYY-MM-DD), 17 window seconds,
--       18 seconds a settled id is remembered, 19 model tpm tracked ('1'/'0')
-- Returns 1 when settled now, 0 when it had been settled already.

local now, id = tonumber(ARGV[1]), ARGV[2]
local remember = tonumber(ARGV[18])
local function num(x) return string.format('%.17g', x) end

redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', num(now - remember))
if redis.call('ZSCORE', KEYS[1], id) then return 0 end
redis.call('ZADD', KEYS[1], num(now), id)
redis.call('EXPIRE', KEYS[1], math.ceil(remember) + 60)

local model = ARGV[11]
local input_tokens, output_tokens = tonumber(ARGV[12]), tonumber(ARGV[13])
local cost, saved = tonumber(ARGV[14]), tonumber(ARGV[15])
local cache_hit = ARGV[6] == '1'

local function int(x) return string.format('%d', x) end

redis.call('HINCRBY', KEYS[9], model .. '|requests', 1)
redis.call('HINCRBY', KEYS[9], model .. '|saved_micros', int(saved))
redis.call('ZADD', KEYS[10], 0, ARGV[16])
-- A cache hit took a request slot only: nothing else to give back or charge.
if cache_hit then return 1 end

redis.call('HINCRBY', KEYS[9], model .. '|input_tokens', int(input_tokens))
redis.call('HINCRBY', KEYS[9], model .. '|output_tokens', int(output_tokens))
redis.call('HINCRBY', KEYS[9], model .. '|cost_micros', int(cost))

-- Real tokens replace the estimate at the admit's timestamp, larger or smaller; an entry that has
-- already left the window stays out of it.
local function replace_tokens(zset, hash, total)
  local estimate = tonumber(redis.call('HGET', hash, id))
  local at = tonumber(redis.call('ZSCORE', zset, id))
  if estimate and at and at > now - tonumber(ARGV[17]) then
    local real = input_tokens + output_tokens
    redis.call('HSET', hash, id, int(real))
    redis.call('INCRBY', total, int(real - estimate))
  end
end
if ARGV[3] == '1' then replace_tokens(KEYS[2], KEYS[3], KEYS[4]) end
if ARGV[19] == '1' then replace_tokens(KEYS[11], KEYS[12], KEYS[13]) end

local expiry = false
if ARGV[4] == '1' then
  expiry = tonumber(redis.call('ZSCORE', KEYS[5], id))
  redis.call('ZREM', KEYS[5], id)
end

if ARGV[5] == '1' then
  local bucket, ttl = KEYS[7], ARGV[8]
  local held = redis.call('HGET', KEYS[6], id)
  if held then
    redis.call('HDEL', KEYS[6], id)
    local micros, held_period = string.match(held, '^(%-?%d+) (.*)$')
    local live = expiry and expiry > now
    if live and held_period == ARGV[9] and held_period ~= ARGV[7] then bucket, ttl = KEYS[8], ARGV[10] end
    -- A live reservation is released where it was made (this period or, a lease ago, the last), and
    -- its cost goes there too, so spent + reserved there stays within budget. A dead one (its lease
    -- ran out, nothing dropped it yet) is released as an admit would: only this period's counts.
    if held_period == ARGV[7] or (live and held_period == ARGV[9]) then
      redis.call('HINCRBY', bucket, 'reserved', int(-tonumber(micros)))
    end
  end
  -- Without a live reservation the cost still counts, in the current period.
  redis.call('HINCRBY', bucket, 'spent', int(cost))
  if ttl ~= '' then redis.call('EXPIRE', bucket, ttl) end
end
return 1
