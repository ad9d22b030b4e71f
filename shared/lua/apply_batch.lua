#!lua
-- Apply one chunk of one article's events, in partition order, exactly once.
-- KEYS[1] counts hash  {reaction -> count, "@fence" -> "partition:offset"}
-- KEYS[2] readers hash {user -> "reaction" | "reaction|client_ts" | "|client_ts"}
-- ARGV[1] partition; then 5 fields per event: offset, op ("s"/"c"), user, reaction,
-- client_ts ("" = none).
-- Returns {applied, noop, duplicate, stale, {reaction, delta, ...}, {user, reaction, ts, ...}}.
-- The last list restates, after the whole chunk, the state of every reader one of whose events
-- was ignored as stale: the caller appends it to the topic as a corrective record, so the
-- compacted log's last record per (article, reader) stays the truth and a rebuild matches.
--
-- Rules per reader: an event with client_ts strictly older than the stored one is stale
-- (ignored); any other event applies. An event without client_ts (an operator action) always
-- applies, in log order, and moves the stored client_ts one past the previous one, so that a
-- delayed client event (or a corrective emitted before it) cannot undo it. The stored
-- client_ts therefore never decreases, which is what makes a rebuild from any compaction of
-- the log end in the same state as the live view.
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
local delta, order = {}, {}
local restate, restate_order = {}, {}
local top = nil

local function bump(reaction, by)
  local n = redis.call('HINCRBY', counts, reaction, by)
  if n <= 0 then
    -- Never negative (a safeguard: a decrement always follows an increment for that reader),
    -- and a zero count is dropped rather than stored.
    redis.call('HDEL', counts, reaction)
    by = by - n
  end
  if delta[reaction] == nil then
    delta[reaction] = 0
    order[#order + 1] = reaction
  end
  delta[reaction] = delta[reaction] + by
end

local function parse(value)
  if not value then return '', nil end
  local sep = string.find(value, '|', 1, true)
  if not sep then return value, nil end
  return string.sub(value, 1, sep - 1), tonumber(string.sub(value, sep + 1))
end

local function needs_corrective(user)
  if not restate[user] then
    restate[user] = true
    restate_order[#restate_order + 1] = user
  end
end

for i = 2, #ARGV, 5 do
  local offset = tonumber(ARGV[i])
  local op, user, reaction, cts = ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local ts = nil
  if cts ~= '' then ts = tonumber(cts) end
  local cur_reaction, cur_ts = parse(redis.call('HGET', readers, user))
  local older = ts ~= nil and cur_ts ~= nil and ts < cur_ts
  if offset <= last then
    duplicate = duplicate + 1
    -- A stale event replayed after a crash may have lost its corrective (the crash came
    -- between this apply and the corrective's acknowledgement): restate again; it is a no-op.
    if older then needs_corrective(user) end
  else
    top = ARGV[i]
    if older then
      stale = stale + 1
      needs_corrective(user)
    else
      local new_ts = cts
      if ts == nil and cur_ts ~= nil then new_ts = string.format('%d', cur_ts + 1) end
      local target = ''
      if op == 's' then target = reaction end
      if target ~= cur_reaction then
        if cur_reaction ~= '' then bump(cur_reaction, -1) end
        if target ~= '' then bump(target, 1) end
        applied = applied + 1
      else
        noop = noop + 1
      end
      if new_ts == '' then
        if target == '' then
          redis.call('HDEL', readers, user)
        elseif target ~= cur_reaction then
          redis.call('HSET', readers, user, target)
        end
      elseif target ~= cur_reaction or tonumber(new_ts) ~= cur_ts then
        redis.call('HSET', readers, user, target .. '|' .. new_ts)
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

local corrective = {}
for _, user in ipairs(restate_order) do
  local value = redis.call('HGET', readers, user)
  local reaction = parse(value)
  corrective[#corrective + 1] = user
  corrective[#corrective + 1] = reaction
  corrective[#corrective + 1] = string.sub(value, string.find(value, '|', 1, true) + 1)
end
return {applied, noop, duplicate, stale, deltas, corrective}
