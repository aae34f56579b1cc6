-- wrk script of bench/fhir/run.
--
--   wrk ... -s bench/fhir/observations.lua URL -- PATIENTS_FILE TOKENS_FILE
--     each request is GET /fhir/Observation?patient=ID with Authorization: Bearer TOKEN,
--     the patient and the token picked at random (per request) from the files written by
--     `kith-bench fhir-db` (--patients-out: the id is a line's first field; --tokens-out:
--     one token a line)
--   wrk ... -s bench/fhir/observations.lua URL
--     (no arguments) each request is a plain GET of URL's path, e.g. /healthz
--
-- Either way every response's status is looked at, and `done` prints one line
--   RESULT requests=… seconds=… requests_per_second=… p50_ms=… p90_ms=… p99_ms=… max_ms=…
--          mean_ms=… non200=… connect_errors=… read_errors=… write_errors=… timeouts=… bytes=…
-- where non200 counts every answer other than 200 (wrk's own "Non-2xx or 3xx" line would
-- let a 3xx through). A `response` hook makes wrk hand every response to Lua, which costs
-- the client some time; both kinds of run pay it alike.

local threads = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("number", counter)
  table.insert(threads, thread)
end

local ids = {}
local tokens = {}
local plain = nil
non200 = 0
statuses = ""

function init(args)
  math.randomseed(os.time() * 1000 + number * 7919)
  if #args == 0 then
    plain = wrk.format()
    return
  end
  for line in io.lines(args[1]) do
    local id = line:match("^(%S+)")
    if id then ids[#ids + 1] = id end
  end
  for line in io.lines(args[2]) do
    local token = line:match("^(%S+)")
    if token then tokens[#tokens + 1] = token end
  end
  if #ids == 0 or #tokens == 0 then
    error("observations.lua: no patient ids in " .. args[1] .. " or no tokens in " .. args[2])
  end
end

function request()
  if plain then return plain end
  local id = ids[math.random(#ids)]
  local token = tokens[math.random(#tokens)]
  return wrk.format("GET", "/fhir/Observation?patient=" .. id, { ["Authorization"] = "Bearer " .. token })
end

local seen = {}

function response(status, headers, body)
  if status ~= 200 then
    non200 = non200 + 1
    if not seen[status] then
      seen[status] = true
      statuses = statuses .. (statuses == "" and "" or ",") .. status
    end
  end
end

function done(summary, latency, requests)
  local bad = 0
  local codes = {}
  for _, thread in ipairs(threads) do
    bad = bad + thread:get("non200")
    local list = thread:get("statuses")
    if list ~= "" then codes[#codes + 1] = list end
  end
  local seconds = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d seconds=%.2f requests_per_second=%.1f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f mean_ms=%.3f non200=%d statuses=%s connect_errors=%d read_errors=%d write_errors=%d timeouts=%d bytes=%d\n",
    summary.requests, seconds, summary.requests / seconds,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, latency.mean / 1000, bad, (#codes > 0 and table.concat(codes, ",") or "-"),
    e.connect, e.read, e.write, e.timeout, summary.bytes))
end
