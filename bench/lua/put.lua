-- PUT a random reaction of a random reader on a random article.
-- args: article count, reader count, article id prefix
local articles, readers, prefix = 10000, 1000000, "bench-a"
local reactions = {"like", "dislike", "love", "funny", "angry", "sad", "wow"}
local headers = {["Content-Type"] = "application/json"}
local ts = 0

init = function(args)
  articles = tonumber(args[1] or articles)
  readers = tonumber(args[2] or readers)
  prefix = args[3] or prefix
  math.randomseed(os.time() + (tonumber(tostring({}):sub(8)) or 0))
  ts = os.time() * 1000
end

request = function()
  ts = ts + 1
  local path = "/v1/articles/" .. prefix .. math.random(articles) ..
    "/reactions/r" .. math.random(readers)
  local body = '{"reaction":"' .. reactions[math.random(#reactions)] ..
    '","client_ts":' .. ts .. '}'
  return wrk.format("PUT", path, headers, body)
end
