-- wrk script: one small non-streaming POST /v1/messages per request.
-- The credential comes from the environment: BENCH_AUTH_HEADER (name) and
-- BENCH_AUTH_VALUE (value); BENCH_BODY_FILE optionally replaces the body.
local name = os.getenv("BENCH_AUTH_HEADER") or "x-api-key"
local value = os.getenv("BENCH_AUTH_VALUE") or ""
local body_file = os.getenv("BENCH_BODY_FILE")

wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.headers["anthropic-version"] = "2023-06-01"
wrk.headers[name] = value
if body_file and body_file ~= "" then
  local f = assert(io.open(body_file, "rb"))
  wrk.body = f:read("*a")
  f:close()
else
  wrk.body = '{"model":"claude-sonnet-4-6","max_tokens":16,"messages":[{"role":"user","content":"Hello there, gateway!"}]}'
end

-- BENCH_UNIQUE=1: every request's body differs, also from every earlier run's,
-- so nothing the gateway remembers from an earlier request (the shield's scores)
-- applies. The body must hold the marker @@@@@@@@@@@@ (12 characters), replaced
-- per request by 6 hex digits drawn from /dev/urandom for each thread of each run
-- and a 6-hex-digit counter.
if os.getenv("BENCH_UNIQUE") == "1" then
  local pre, post = wrk.body:match("^(.-)@@@@@@@@@@@@(.*)$")
  assert(pre, "BENCH_UNIQUE=1 needs a body with the marker @@@@@@@@@@@@")
  local f = assert(io.open("/dev/urandom", "rb"))
  local b1, b2, b3 = f:read(3):byte(1, 3)
  f:close()
  local run = string.format("%02x%02x%02x", b1, b2, b3)
  local n = 0
  function request()
    n = n + 1
    return wrk.format(nil, nil, nil, pre .. run .. string.format("%06x", n % 0x1000000) .. post)
  end
end

-- count non-2xx answers so a refused run cannot pass for a fast one
local bad = 0
function response(status, headers, body)
  if status < 200 or status > 299 then bad = bad + 1 end
end

function done(summary, latency, requests)
  io.write(string.format("non2xx_per_thread_last=%d\n", bad))
end
