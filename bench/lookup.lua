-- wrk script: GET a random one of BENCH_FILES files laid out as bench/scale.py creates them:
-- BENCH_PREFIX/dDDD/fFFFFF, BENCH_PER_DIRECTORY files a directory.
local files = tonumber(os.getenv("BENCH_FILES") or "1000")
local per = tonumber(os.getenv("BENCH_PER_DIRECTORY") or "1000")
local prefix = os.getenv("BENCH_PREFIX") or "/v1/files"
local token = os.getenv("BENCH_AUTH")
local headers = {}
if token and token ~= "" then headers["Authorization"] = "Bearer " .. token end

init = function(args)
  math.randomseed(os.time() + (wrk.thread:get("id") or 0))
end

setup = function(thread)
  thread:set("id", math.random(1, 1000000))
end

request = function()
  local i = math.random(0, files - 1)
  return wrk.format("GET", string.format("%s/d%03d/f%05d", prefix, math.floor(i / per), i % per), headers)
end
