-- wrk script for bench/load.py, compare.py, soak.py and profile_gateway.py: POSTs one chat completion
-- body, checks each response, and prints a machine-readable summary from done().
--
-- Arguments (after wrk's `--`): BODY_FILE TOKEN MODE [OPTION ...]
--   BODY_FILE  path to the JSON request body
--   TOKEN      bearer token for the Authorization header, or "-" for none
--   MODE       "plain" (a 200 is a success) or "stream" (a 200 whose body ends with `data: [DONE]`)
--   OPTION     any of:
--     unique=NONCE      replace every `@N@` in the body with NONCE-<request number>, so that no two
--                       requests of a run (or of two runs with different nonces) send the same prompt
--     header=NAME: VAL  send this header too (repeatable)
--
-- A request counts as complete when wrk has read the whole response, so for a stream that is the
-- terminating chunk after `[DONE]`. Non-200 responses and streams without `[DONE]` are counted here;
-- socket errors and timeouts come from wrk's own summary.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local file = assert(io.open(args[1], "rb"))
  wrk.method = "POST"
  wrk.body = file:read("*a")
  file:close()
  wrk.headers["Content-Type"] = "application/json"
  if args[2] ~= "-" then
    wrk.headers["Authorization"] = "Bearer " .. args[2]
  end
  stream = args[3] == "stream"
  nonce = nil
  for i = 4, #args do
    local key, value = args[i]:match("^([%w_]+)=(.*)$")
    if key == "unique" then
      nonce = value
    elseif key == "header" then
      local name, header_value = value:match("^([^:]+):%s*(.*)$")
      wrk.headers[name] = header_value
    else
      error("chat.lua: unknown option " .. args[i])
    end
  end
  template = wrk.body
  static_request = wrk.format()
  sent = 0
  non200 = 0
  broken = 0
end

-- wrk decides once, before init(), whether a script builds each request, so this always exists; without
-- `unique` it hands back the same bytes every time.
function request()
  if not nonce then
    return static_request
  end
  sent = sent + 1
  return wrk.format(nil, nil, nil, (template:gsub("@N@", nonce .. "-" .. sent)))
end

function response(status, headers, body)
  if status ~= 200 then
    non200 = non200 + 1
  elseif stream and not string.find(body, "[DONE]", math.max(1, #body - 64), true) then
    broken = broken + 1
  end
end

function done(summary, latency, requests)
  local non200_total, broken_total = 0, 0
  for _, thread in ipairs(threads) do
    non200_total = non200_total + thread:get("non200")
    broken_total = broken_total + thread:get("broken")
  end
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d p50_us=%d p99_us=%d non200=%d broken=%d "
      .. "connect=%d read=%d write=%d timeout=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    non200_total, broken_total, e.connect, e.read, e.write, e.timeout))
end
