#!lua
-- Apply one chunk of one article's events, in partition order, exactly once.
-- KEYS[1] counts hash  {reaction -> count, "@fence" -> "partition:offset"}
-- KEYS[2] readers hash {user -> "reaction" | "reaction|client_ts" | "|client_ts"}
-- KEYS[3] the apply marks of the article's hash slot {partition -> "count:writer"}
-- ARGV[1] partition; ARGV[2] the events, one line each: offset TAB user TAB reaction ("" = a
-- clear) TAB client_ts ("" = none) TAB bound ("" = none) NEWLINE, where bound is the most a
-- stored client_ts counts for against this event: its server ts plus the allowed client
-- clock skew (its own client_ts comes bounded so). (One argument, not five per event:
-- encoding thousands of arguments costs the client more than the whole script costs Redis.)
-- ARGV[3] the mark the caller expects ("" when never written); ARGV[4] the mark the call
-- leaves: one more call, and the caller's writer id ("count:writer").
-- Returns one string of three lines: "applied TAB noop TAB duplicate TAB stale",
-- "reaction TAB delta ..." and "user TAB reaction TAB client_ts ..."; or, having written
-- nothing, "!" and the mark it found.
--
-- The mark counts the apply calls executed on the slot's articles of this partition, and
-- names who made the last one. A call expecting another mark writes nothing: after a refused
-- call, the same caller's next calls on the slot are refused too (no chunk can apply past a
-- chunk that did not, which would move the fence past its events), and a Redis that went
-- back in time refuses every call until the caller has noticed (services/aggregator/marks.py).
-- The last line restates, after the whole chunk, the state of every reader one of whose events
-- was ignored as stale: the caller appends it to the topic as a corrective record, so the
-- compacted log's last record per (article, reader) stays the truth and a rebuild matches.
--
-- Rules per reader: an event with client_ts strictly older than the stored one is stale
-- (ignored); any other event applies. An event without client_ts (an operator action) always
-- applies, in log order, and moves the stored client_ts one past the previous one, so that a
-- delayed client event (or a corrective emitted before it) cannot undo it. The stored
-- client_ts therefore never decreases, which is what makes a rebuild from any compaction of
-- the log end in the same state as the live view. One stored above the event's bound (set
-- before client clocks were bounded: up to 2^53, where `+ 1` rounds back to itself; or by
-- an event stamped later by a server clock ahead of this event's) counts as that bound when
-- the event is compared with it, and is stored so; after the bound every value stays small
-- enough for `+ 1` to be exact. The bound is the event's own, never the batch's: how the log
-- is cut into batches must not change what a rebuild finds.
--
-- This runs for every event Redis applies, so it is written for the Lua interpreter: events
-- in parallel arrays rather than a table each, no helper functions, one HMGET and one HSET.
local counts, readers, marks = KEYS[1], KEYS[2], KEYS[3]
local partition = ARGV[1]
local find, sub, tonumber = string.find, string.sub, tonumber

local mark = redis.call('HGET', marks, partition) or ''
if mark ~= ARGV[3] then return '!' .. mark end

-- The fence: events at or below the last applied offset of this partition were applied before
-- (a replay after a crash, or a zombie consumer after a rebalance) and are skipped.
local last = -1
local fence = redis.call('HGET', counts, '@fence')
if fence then
  local p, o = string.match(fence, '^(%d+):(%d+)$')
  if p == partition then last = tonumber(o) end
end

local offsets, users, reactions, stamps, bounds = {}, {}, {}, {}, {}
local n = 0
local state, distinct = {}, {}
for offset, user, reaction, cts, bound in
    string.gmatch(ARGV[2], '(%d+)\t([^\t]+)\t([^\t]*)\t(%d*)\t(%d*)\n') do
  n = n + 1
  offsets[n], users[n], reactions[n], stamps[n], bounds[n] = offset, user, reaction, cts, bound
  if state[user] == nil then
    state[user] = false
    distinct[#distinct + 1] = user
  end
end
if n > 0 then
  local values = redis.call('HMGET', readers, unpack(distinct))
  for i = 1, #distinct do state[distinct[i]] = values[i] end
end

local applied, noop, duplicate, stale = 0, 0, 0, 0
local delta, order = {}, {}          -- net count change per reaction, in first-seen order
local dirty, dirty_order = {}, {}    -- readers whose stored value changed
local restate, restate_order = {}, {} -- readers to restate in a corrective
local top = nil

for i = 1, n do
  local user, target, cts = users[i], reactions[i], stamps[i]
  local value = state[user]
  local current, cur_ts = '', nil
  if value then
    local sep = find(value, '|', 1, true)
    if sep then
      current, cur_ts = sub(value, 1, sep - 1), tonumber(sub(value, sep + 1))
    else
      current = value
    end
  end
  local ts = nil
  if cts ~= '' then ts = tonumber(cts) end
  if tonumber(offsets[i]) <= last then
    duplicate = duplicate + 1
    -- A stale event replayed after a crash may have lost its corrective (the crash came
    -- between this apply and the corrective's acknowledgement): restate again; it is a no-op.
    if ts ~= nil and cur_ts ~= nil and ts < cur_ts and not restate[user] then
      restate[user] = true
      restate_order[#restate_order + 1] = user
    end
  else
    top = offsets[i]
    local bound = bounds[i]
    if cur_ts ~= nil and bound ~= '' and cur_ts > tonumber(bound) then
      cur_ts = tonumber(bound)
      value = current .. '|' .. bound
      state[user] = value
      if not dirty[user] then
        dirty[user] = true
        dirty_order[#dirty_order + 1] = user
      end
    end
    if ts ~= nil and cur_ts ~= nil and ts < cur_ts then
      stale = stale + 1
      if not restate[user] then
        restate[user] = true
        restate_order[#restate_order + 1] = user
      end
    else
      if ts == nil and cur_ts ~= nil then
        ts = cur_ts + 1
        cts = string.format('%d', ts)
      end
      local new = value
      if target ~= current then
        if current ~= '' then
          local d = delta[current]
          if d == nil then order[#order + 1] = current; d = 0 end
          delta[current] = d - 1
        end
        if target ~= '' then
          local d = delta[target]
          if d == nil then order[#order + 1] = target; d = 0 end
          delta[target] = d + 1
        end
        applied = applied + 1
        if cts ~= '' then new = target .. '|' .. cts elseif target ~= '' then new = target else new = false end
      else
        noop = noop + 1
        if ts ~= cur_ts then new = target .. '|' .. cts end
      end
      if new ~= value then
        state[user] = new
        if not dirty[user] then
          dirty[user] = true
          dirty_order[#dirty_order + 1] = user
        end
      end
    end
  end
end

local sets, dels = {}, {}
for _, user in ipairs(dirty_order) do
  local value = state[user]
  if value then
    sets[#sets + 1] = user
    sets[#sets + 1] = value
  else
    dels[#dels + 1] = user
  end
end
if #sets > 0 then redis.call('HSET', readers, unpack(sets)) end
if #dels > 0 then redis.call('HDEL', readers, unpack(dels)) end

if top ~= nil then
  redis.call('HSET', counts, '@fence', partition .. ':' .. top)
end

local deltas = {}
for _, reaction in ipairs(order) do
  local by = delta[reaction]
  if by ~= 0 then
    local total = redis.call('HINCRBY', counts, reaction, by)
    if total <= 0 then
      -- Never negative (a safeguard: a decrement always follows an increment for that
      -- reader), and a zero count is dropped rather than stored.
      redis.call('HDEL', counts, reaction)
      by = by - total
    end
    if by ~= 0 then
      deltas[#deltas + 1] = reaction
      deltas[#deltas + 1] = string.format('%d', by)
    end
  end
end

-- Last, so that a call that failed on the way cannot satisfy the next call's expectation.
redis.call('HSET', marks, partition, ARGV[4])

local corrective = {}
for _, user in ipairs(restate_order) do
  local value = state[user]
  local sep = find(value, '|', 1, true)
  corrective[#corrective + 1] = user
  corrective[#corrective + 1] = sub(value, 1, sep - 1)
  corrective[#corrective + 1] = sub(value, sep + 1)
end
return string.format('%d\t%d\t%d\t%d\n', applied, noop, duplicate, stale)
  .. table.concat(deltas, '\t') .. '\n' .. table.concat(corrective, '\t')
