#!lua
-- Add one batch's net deltas of one reaction to the trending buckets of the minute.
-- KEYS the minute's buckets (sorted sets article -> net delta): its hourly and 5-minute
-- rollups and its own, under one hash tag; ARGV[1] TTL in seconds; ARGV[2] the most articles
-- a bucket keeps (those with the lowest net delta go first); then pairs: article_id, delta.
-- One call per reaction per batch instead of one ZINCRBY round of protocol per article, and
-- every bucket of the minute moves in the same step.
local keep = tonumber(ARGV[2])
for k = 1, #KEYS do
  local bucket = KEYS[k]
  for i = 3, #ARGV, 2 do
    redis.call('ZINCRBY', bucket, ARGV[i + 1], ARGV[i])
  end
  local over = redis.call('ZCARD', bucket) - keep
  if over > 0 then redis.call('ZREMRANGEBYRANK', bucket, 0, over - 1) end
  redis.call('EXPIRE', bucket, ARGV[1])
end
return (#ARGV - 2) / 2
