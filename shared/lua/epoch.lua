#!lua
-- Create the epoch marker of a Redis that has none (a new one, or one that lost its data)
-- and, in the same step, the replay targets: readers must never see the epoch without them.
-- KEYS[1] the epoch marker, KEYS[2] the replay targets (hash partition -> offset), under the
-- topic's hash tag; ARGV[1] a new epoch id; then pairs: partition, the offset its log ends
-- at now (only partitions holding records). Returns the epoch marker, new or not.
if redis.call('SET', KEYS[1], ARGV[1], 'NX') then
  for i = 2, #ARGV, 2 do
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
  end
end
return redis.call('GET', KEYS[1])
