#!lua
-- Record resume positions only if Redis still holds the data set they describe, and end
-- the replay of each partition whose position reaches its replay target.
-- KEYS[1] the epoch marker; KEYS[2] the replay targets (hash partition -> offset); KEYS[3..]
-- position keys (all under the topic's hash tag).
-- ARGV[1] the epoch the caller applied its batch under; then the positions, in the order of
-- their keys; then the partitions of those keys, in the same order.
-- Returns 1 when written, 0 when the epoch differs (Redis lost its data since: the caller
-- must replay, and a position written now would skip what was lost).
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local n = #KEYS - 2
for i = 1, n do
  redis.call('SET', KEYS[i + 2], ARGV[i + 1])
end
if redis.call('EXISTS', KEYS[2]) == 1 then
  for i = 1, n do
    local partition = ARGV[n + 1 + i]
    local target = redis.call('HGET', KEYS[2], partition)
    if target and tonumber(ARGV[i + 1]) >= tonumber(target) then
      redis.call('HDEL', KEYS[2], partition)
    end
  end
end
return 1
