-- GET the tally of one article (args: 1 and an id) or of a uniformly random one of N.
-- args: article count, article id prefix
local articles, prefix = 10000, "bench-a"

init = function(args)
  articles = tonumber(args[1] or articles)
  prefix = args[2] or prefix
  math.randomseed(os.time() + (tonumber(tostring({}):sub(8)) or 0))
end

request = function()
  local id = prefix
  if articles > 1 then id = prefix .. math.random(articles) end
  return wrk.format("GET", "/v1/articles/" .. id .. "/reactions")
end
