#!lua
-- Record resume positions only if Redis still holds the data set they describe.
-- KEYS[1] the epoch marker; KEYS[2..n] position keys (all under the topic's hash tag).
-- ARGV[1] the epoch the caller applied its batch under; ARGV[2..n] the positions.
-- Returns 1 when written, 0 when the epoch differs (Redis lost its data since: the caller
-- must replay, and a position written now would skip what was lost).
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
for i = 2, #KEYS do
  redis.call('SET', KEYS[i], ARGV[i])
end
return 1
