-- POST /v1/votes by the readers of a tokens file in the file's order, from a start line,
-- wrapping at its end: with distinct readers every vote is a new reader's until the file is
-- used up; when readers repeat in the file, its order decides how often the verified-token
-- cache sees them again. Run with one wrk thread (one walk). args: tokens file
-- (`reader_id<TAB>token` lines), start line (1-based), article count, article id prefix
local articles, prefix = 10000, "bench-a"
local reactions = {"like", "dislike", "love", "funny", "angry", "sad", "wow"}
local tokens = {}
local position = 1
local ts = 0

init = function(args)
  local path = args[1] or error("the first argument is the tokens file")
  for line in io.lines(path) do
    local token = line:match("^[^\t]+\t(%S+)$")
    if token then tokens[#tokens + 1] = "Bearer " .. token end
  end
  if #tokens == 0 then error("no tokens in " .. path) end
  position = ((tonumber(args[2] or 1) - 1) % #tokens) + 1
  articles = tonumber(args[3] or articles)
  prefix = args[4] or prefix
  math.randomseed(os.time() + (tonumber(tostring({}):sub(8)) or 0))
  ts = os.time() * 1000
end

request = function()
  ts = ts + 1
  local token = tokens[position]
  position = position % #tokens + 1
  local body = '{"article_id":"' .. prefix .. math.random(articles) ..
    '","reaction":"' .. reactions[math.random(#reactions)] .. '","client_ts":' .. ts .. '}'
  return wrk.format("POST", "/v1/votes", {
    ["Content-Type"] = "application/json",
    ["Authorization"] = token,
  }, body)
end
