-- POST /v1/votes: a random reaction of a random reader (a token from the file) on a random
-- article. args: tokens file (`reader_id<TAB>token` lines, from `python -m services.ingest
-- mint-tokens`), article count, article id prefix
local articles, prefix = 10000, "bench-a"
local reactions = {"like", "dislike", "love", "funny", "angry", "sad", "wow"}
local tokens = {}
local ts = 0

init = function(args)
  local path = args[1] or error("the first argument is the tokens file")
  for line in io.lines(path) do
    local token = line:match("^[^\t]+\t(%S+)$")
    if token then tokens[#tokens + 1] = "Bearer " .. token end
  end
  if #tokens == 0 then error("no tokens in " .. path) end
  articles = tonumber(args[2] or articles)
  prefix = args[3] or prefix
  math.randomseed(os.time() + (tonumber(tostring({}):sub(8)) or 0))
  ts = os.time() * 1000
end

request = function()
  ts = ts + 1
  local body = '{"article_id":"' .. prefix .. math.random(articles) ..
    '","reaction":"' .. reactions[math.random(#reactions)] .. '","client_ts":' .. ts .. '}'
  return wrk.format("POST", "/v1/votes", {
    ["Content-Type"] = "application/json",
    ["Authorization"] = tokens[math.random(#tokens)],
  }, body)
end
