-- wrk script: PUT a 4 KiB body to a fresh path every time (no path is ever reused or deleted).
local prefix = os.getenv("BENCH_PREFIX") or "/"
local run = os.getenv("BENCH_RUN") or "0"
local token = os.getenv("BENCH_AUTH")
local body = string.rep("0123456789abcdef", 256)
local headers = {["Content-Type"] = "application/octet-stream"}
if token and token ~= "" then headers["Authorization"] = "Bearer " .. token end
local next_id = 0
local counter = 0
local tid = 0

setup = function(thread)
  next_id = next_id + 1
  thread:set("tid", next_id)
end

init = function(args)
  tid = wrk.thread:get("tid")
end

request = function()
  counter = counter + 1
  return wrk.format("PUT", prefix .. "p" .. run .. "-" .. tid .. "-" .. counter, headers, body)
end
