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
-- TB_AUTH (environment): the Authorization header of every request
local auth = os.getenv("TB_AUTH")
-- TB_SEQ0 (environment): unique events, as tb_load -U: the k-th request
-- moves its event timestamps (10-digit whole seconds) SEQ0 + k seconds
-- into the past, so a body sent again is new events rather than identical
-- ones the module would deduplicate (and so not insert)
local seq0 = tonumber(os.getenv("TB_SEQ0") or "")
local parts, k = {}, 0

function init(args)
  local list = args[1]
  if list then
    for path in io.lines(list) do
      local f = assert(io.open(path, "rb"))
      local body = f:read("*a")
      f:close()
      n = n + 1
      reqs[n] = wrk.format("POST", nil,
                           { ["Content-Type"] = "application/json",
                             ["Authorization"] = auth }, body)
      if seq0 then
        -- the body cut around each timestamp's whole seconds
        local chunks, vals, pos = {}, {}, 1
        for s, v, e in body:gmatch('"timestamp":()(%d%d%d%d%d%d%d%d%d%d)()') do
          chunks[#chunks + 1] = body:sub(pos, s - 1)
          vals[#vals + 1] = tonumber(v)
          pos = e
        end
        chunks[#chunks + 1] = body:sub(pos)
        parts[n] = { chunks = chunks, vals = vals }
      end
    end
    i = ((tid or 0) * 97) % n
  else
    n = 1
    reqs[1] = wrk.format(nil, nil, { ["Authorization"] = auth })
  end
end

function request()
  i = i % n + 1
  if seq0 and parts[i] then
    local c, v, t = parts[i].chunks, parts[i].vals, {}
    k = k + 1
    for j = 1, #v do
      t[2 * j - 1] = c[j]
      t[2 * j] = string.format("%010d", v[j] - seq0 - k)
    end
    t[#t + 1] = c[#c]
    return wrk.format("POST", nil,
                      { ["Content-Type"] = "application/json",
                        ["Authorization"] = auth }, table.concat(t))
  end
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
