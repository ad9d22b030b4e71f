#!lua
-- Apply one batch of one article's events, in partition order, exactly once.
-- KEYS[1] counts hash  {reaction -> count, "@fence" -> "partition:offset"}
-- KEYS[2] readers hash {user -> "reaction" | "reaction|client_ts" | "|client_ts"}
-- ARGV[1] partition; then 5 fields per event: offset, op ("s"/"c"), user, reaction, client_ts ("" = none)
-- Returns {applied, noop, duplicate, stale, {reaction, delta, ...}, {user, reaction, client_ts, ...}}:
-- the last list restates the current state of each reader whose event was stale, so the caller
-- can append a corrective record and keep the compacted log's last record per key the truth.
local counts, readers = KEYS[1], KEYS[2]
local partition = ARGV[1]

-- The fence: events at or below the last applied offset of this partition were applied before
-- (a replay after a crash, or a zombie consumer after a rebalance) and are skipped.
local last = -1
local fence = redis.call('HGET', counts, '@fence')
if fence then
  local p, o = string.match(fence, '^(%d+):(%d+)$')
  if p == partition then last = tonumber(o) end
end

local applied, noop, duplicate, stale = 0, 0, 0, 0
local delta, order, corrective = {}, {}, {}
local top = nil

local function bump(reaction, by)
  local n = redis.call('HINCRBY', counts, reaction, by)
  if n < 0 then redis.call('HSET', counts, reaction, 0) end
  if delta[reaction] == nil then
    delta[reaction] = 0
    order[#order + 1] = reaction
  end
  delta[reaction] = delta[reaction] + by
end

for i = 2, #ARGV, 5 do
  local offset = ARGV[i]
  if tonumber(offset) <= last then
    duplicate = duplicate + 1
  else
    top = offset
    local op, user, reaction, cts = ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
    local current = redis.call('HGET', readers, user)
    local cur_reaction, cur_ts = '', ''
    if current then
      local sep = string.find(current, '|', 1, true)
      if sep then
        cur_reaction = string.sub(current, 1, sep - 1)
        cur_ts = string.sub(current, sep + 1)
      else
        cur_reaction = current
      end
    end
    if cts ~= '' and cur_ts ~= '' and tonumber(cts) < tonumber(cur_ts) then
      -- Last writer wins per reader: an older client event never overrides a newer one.
      stale = stale + 1
      corrective[#corrective + 1] = user
      corrective[#corrective + 1] = cur_reaction
      corrective[#corrective + 1] = cur_ts
    else
      -- An event without client_ts (an operator action) applies in log order and keeps the
      -- newest client_ts seen, so a delayed older client event stays rejected.
      local new_ts = cts
      if new_ts == '' then new_ts = cur_ts end
      local target = ''
      if op == 's' then target = reaction end
      if target == cur_reaction and new_ts == cur_ts then
        noop = noop + 1
      else
        if target ~= cur_reaction then
          if cur_reaction ~= '' then bump(cur_reaction, -1) end
          if target ~= '' then bump(target, 1) end
          applied = applied + 1
        else
          noop = noop + 1
        end
        if target == '' and new_ts == '' then
          redis.call('HDEL', readers, user)
        elseif new_ts == '' then
          redis.call('HSET', readers, user, target)
        else
          redis.call('HSET', readers, user, target .. '|' .. new_ts)
        end
      end
    end
  end
end

if top ~= nil then
  redis.call('HSET', counts, '@fence', partition .. ':' .. top)
end

local deltas = {}
for _, reaction in ipairs(order) do
  if delta[reaction] ~= 0 then
    deltas[#deltas + 1] = reaction
    deltas[#deltas + 1] = delta[reaction]
  end
end
return {applied, noop, duplicate, stale, deltas, corrective}
