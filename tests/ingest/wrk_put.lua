-- wrk script for the ingest write path: POST /v1/votes with random articles, each vote by a
-- random reader of a tokens file (minted offline, so no issuance limit applies):
--   python -m services.ingest mint-tokens --count 20000 --out tokens.tsv
--   wrk -t2 -c64 -d15s -s tests/ingest/wrk_put.lua http://127.0.0.1:PORT -- tokens.tsv
-- wrk prints "Non-2xx or 3xx responses" when any answer was not a 202.
-- Raise REACTIONS_RATE_LIMIT_IP on the service first: wrk is a single client address.
local reactions = {"like", "dislike", "love", "funny", "angry", "sad", "wow"}
local tokens = {}

init = function(args)
  -- Each thread and each run its own sequence: otherwise every run repeats the same votes.
  math.randomseed(os.time() + (tonumber(tostring({}):sub(8)) or 0))
  local path = args[1] or error("pass the tokens file after --")
  for line in io.lines(path) do
    local token = line:match("^[^\t]+\t(%S+)$")
    if token then tokens[#tokens + 1] = "Bearer " .. token end
  end
  if #tokens == 0 then error("no tokens in " .. path) end
end

request = function()
  local body = '{"article_id":"bench-' .. math.random(1, 5000) .. '","reaction":"' ..
    reactions[math.random(1, #reactions)] .. '"}'
  return wrk.format("POST", "/v1/votes", {
    ["Content-Type"] = "application/json",
    ["Authorization"] = tokens[math.random(1, #tokens)],
  }, body)
end
