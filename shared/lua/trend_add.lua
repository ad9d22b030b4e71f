#!lua
-- Add one batch's net deltas of one reaction to its per-minute trending bucket.
-- KEYS[1] the bucket (sorted set article -> net delta); ARGV[1] TTL in seconds;
-- then pairs: article_id, delta. One call per reaction per batch instead of one ZINCRBY
-- round of protocol per article.
local bucket = KEYS[1]
for i = 2, #ARGV, 2 do
  redis.call('ZINCRBY', bucket, ARGV[i + 1], ARGV[i])
end
redis.call('EXPIRE', bucket, ARGV[1])
return (#ARGV - 1) / 2
