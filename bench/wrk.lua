-- wrk script for bench/run:
--   wrk -t1 -cN -dS --latency -s bench/wrk.lua URL [-- BODYLIST]
-- With BODYLIST (a file naming one body file a line) every request is a
-- POST of the next body, application/json, each thread starting at its own
-- offset; without it, the plain GET of URL.  Requests are built once, in
-- init, so the script costs wrk one table lookup per request.
-- At the end prints one machine-readable line:
--   TBRESULT requests= seconds= rps= mean_ms= p50_ms= p99_ms= errors= non2xx=

local counter = 0
function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
end

local reqs, n, i = {}, 0, 0

function init(args)
  local list = args[1]
  if list then
    for path in io.lines(list) do
      local f = assert(io.open(path, "rb"))
      local body = f:read("*a")
      f:close()
      n = n + 1
      reqs[n] = wrk.format("POST", nil,
                           { ["Content-Type"] = "application/json" }, body)
    end
    i = ((tid or 0) * 97) % n
  else
    n = 1
    reqs[1] = wrk.format(nil)
  end
end

function request()
  i = i % n + 1
  return reqs[i]
end

function done(summary, latency, requests)
  local e = summary.errors
  local secs = summary.duration / 1e6
  io.write(string.format(
    "TBRESULT requests=%d seconds=%.3f rps=%.1f mean_ms=%.3f p50_ms=%.3f " ..
    "p99_ms=%.3f errors=%d non2xx=%d\n",
    summary.requests, secs, summary.requests / secs, latency.mean / 1000,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    e.connect + e.read + e.write + e.timeout, e.status))
end
