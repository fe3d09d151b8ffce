-- wrk script: GET or HEAD across BENCH_FILES small files (f0.bin ... f<N-1>.bin) under BENCH_PREFIX.
local n = tonumber(os.getenv("BENCH_FILES") or "1000")
local prefix = os.getenv("BENCH_PREFIX") or "/"
local method = os.getenv("BENCH_METHOD") or "GET"
local token = os.getenv("BENCH_AUTH")
local headers = {}
if token and token ~= "" then headers["Authorization"] = "Bearer " .. token end
local i = 0

request = function()
  i = i + 1
  return wrk.format(method, prefix .. "f" .. (i % n) .. ".bin", headers)
end
