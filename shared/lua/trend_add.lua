#!lua
-- Add one batch's net deltas of one reaction to the trending buckets of the minute.
-- KEYS the minute's buckets (sorted sets article -> net delta): its hourly and 5-minute
-- rollups and its own, under one hash tag; ARGV[1] TTL in seconds; then pairs: article_id,
-- delta. One call per reaction per batch instead of one ZINCRBY round of protocol per
-- article, and every bucket of the minute moves in the same step.
for k = 1, #KEYS do
  local bucket = KEYS[k]
  for i = 2, #ARGV, 2 do
    redis.call('ZINCRBY', bucket, ARGV[i + 1], ARGV[i])
  end
  redis.call('EXPIRE', bucket, ARGV[1])
end
return (#ARGV - 1) / 2
