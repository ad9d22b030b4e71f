-- New readers, as the widget makes them: POST /v1/readers for a token, then that reader's
-- votes (POST /v1/votes) with it, `votes` of them, before the next new reader. The token a
-- 201 carries goes to whichever connection asks next, as behind a load balancer. Run with
-- one wrk thread. args: votes per reader, article count, article id prefix
local per_reader, articles, prefix = 3, 10000, "bench-n"
local reactions = {"like", "dislike", "love", "funny", "angry", "sad", "wow"}
local ready = {}  -- tokens with votes left: {header, votes left}
local ts = 0
local new_reader = nil

init = function(args)
  per_reader = tonumber(args[1] or per_reader)
  articles = tonumber(args[2] or articles)
  prefix = args[3] or prefix
  math.randomseed(os.time() + (tonumber(tostring({}):sub(8)) or 0))
  ts = os.time() * 1000
  new_reader = wrk.format("POST", "/v1/readers")
end

request = function()
  local reader = ready[#ready]
  if reader == nil then return new_reader end
  reader[2] = reader[2] - 1
  if reader[2] == 0 then ready[#ready] = nil end
  ts = ts + 1
  local body = '{"article_id":"' .. prefix .. math.random(articles) ..
    '","reaction":"' .. reactions[math.random(#reactions)] .. '","client_ts":' .. ts .. '}'
  return wrk.format("POST", "/v1/votes", {
    ["Content-Type"] = "application/json",
    ["Authorization"] = reader[1],
  }, body)
end

response = function(status, headers, body)
  if status == 201 then
    local token = body:match('"token":"([^"]+)"')
    if token then ready[#ready + 1] = {"Bearer " .. token, per_reader} end
  end
end
