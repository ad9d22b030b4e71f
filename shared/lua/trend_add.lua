#!lua
-- Add one batch's net deltas of one reaction to the trending buckets of a minute.
-- KEYS the minute's buckets (sorted sets article -> net delta): its hourly and 5-minute
-- rollups and its own, under one hash tag; ARGV[1] TTL in seconds, counted from that minute
-- (a bucket's TTL is only ever raised: a late vote of an older minute must not cut short
-- the rollup it shares with newer ones); ARGV[2] the most articles a bucket keeps (those
-- with the lowest net delta go first); then pairs: article_id, delta.
-- One call per reaction per minute of a batch instead of one ZINCRBY round of protocol per
-- article, and every bucket of the minute moves in the same step.
local ttl = tonumber(ARGV[1])
local keep = tonumber(ARGV[2])
for k = 1, #KEYS do
  local bucket = KEYS[k]
  for i = 3, #ARGV, 2 do
    redis.call('ZINCRBY', bucket, ARGV[i + 1], ARGV[i])
  end
  local over = redis.call('ZCARD', bucket) - keep
  if over > 0 then redis.call('ZREMRANGEBYRANK', bucket, 0, over - 1) end
  if redis.call('TTL', bucket) < ttl then redis.call('EXPIRE', bucket, ttl) end
end
return (#ARGV - 2) / 2
