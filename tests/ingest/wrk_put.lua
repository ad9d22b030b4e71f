-- wrk script for the ingest write path: PUTs with random article and reader ids.
--   wrk -t2 -c64 -d15s -s tests/ingest/wrk_put.lua http://127.0.0.1:PORT
-- wrk prints "Non-2xx or 3xx responses" when any answer was not a 202.
-- Raise REACTIONS_RATE_LIMIT_IP on the service first: wrk is a single client address.
local reactions = {"like", "dislike", "love", "funny", "angry", "sad", "wow"}

request = function()
  local article = "bench-" .. math.random(1, 5000)
  local reader = "r" .. math.random(1, 10000000)
  local body = '{"reaction":"' .. reactions[math.random(1, #reactions)] .. '"}'
  return wrk.format("PUT", "/v1/articles/" .. article .. "/reactions/" .. reader,
    {["Content-Type"] = "application/json"}, body)
end
