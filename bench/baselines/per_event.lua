#!lua
-- The per-event Redis work of the aggregator's apply, for one event and without batching:
-- read the fence and the reader, move the reader's vote in the counts, store the reader and
-- the fence. redis-benchmark runs it pipelined as the raw Redis limit for draining.
-- KEYS[1] counts hash, KEYS[2] readers hash; ARGV[1] user, ARGV[2] reaction
local fence = redis.call('HGET', KEYS[1], '@fence')
local current = redis.call('HGET', KEYS[2], ARGV[1])
if current then redis.call('HINCRBY', KEYS[1], current, -1) end
redis.call('HINCRBY', KEYS[1], ARGV[2], 1)
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[1], '@fence', '0:' .. (fence and 1 or 0))
return 1
