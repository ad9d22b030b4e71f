-- GET the tallies of a front page: a random set of ids in one bulk request.
-- args: article count, ids per request, article id prefix
local articles, per_request, prefix = 10000, 50, "bench-a"

init = function(args)
  articles = tonumber(args[1] or articles)
  per_request = tonumber(args[2] or per_request)
  prefix = args[3] or prefix
  math.randomseed(os.time() + (tonumber(tostring({}):sub(8)) or 0))
end

request = function()
  local ids = {}
  for i = 1, per_request do ids[i] = prefix .. math.random(articles) end
  return wrk.format("GET", "/v1/reactions?ids=" .. table.concat(ids, ","))
end
