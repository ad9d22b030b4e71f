#!lua
-- Apply one chunk of one article's events, in partition order, exactly once.
-- KEYS[1] counts hash  {reaction -> count, "@fence" -> "partition:offset"}
-- KEYS[2] readers hash {user -> "reaction" | "reaction|client_ts" | "|client_ts"}
-- ARGV[1] partition; ARGV[2] the events, one line each: offset TAB op ("s"/"c") TAB user TAB
-- reaction TAB client_ts ("" = none) NEWLINE. (One argument, not five per event: encoding
-- thousands of arguments costs the client more than the whole script costs Redis.)
-- Returns one string of three lines: "applied TAB noop TAB duplicate TAB stale",
-- "reaction TAB delta ..." and "user TAB reaction TAB client_ts ...".
-- The last line restates, after the whole chunk, the state of every reader one of whose events
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

-- Count changes are summed here and written once per reaction at the end of the chunk.
local function bump(reaction, by)
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

-- Readers are read with one HMGET and written back with one HSET and one HDEL: per-event
-- redis.call()s would cost more than the rules themselves.
local events, users, state, dirty, dirty_order = {}, {}, {}, {}, {}
for offset_s, op, user, reaction, cts in string.gmatch(ARGV[2], '(%d+)\t(%a)\t([^\t]+)\t([^\t]*)\t(%d*)\n') do
  events[#events + 1] = {offset_s, op, user, reaction, cts}
  if state[user] == nil then
    state[user] = false
    users[#users + 1] = user
  end
end
if #users > 0 then
  local values = redis.call('HMGET', readers, unpack(users))
  for i, user in ipairs(users) do state[user] = values[i] end
end

local function store(user, value)
  state[user] = value
  if not dirty[user] then
    dirty[user] = true
    dirty_order[#dirty_order + 1] = user
  end
end

for _, e in ipairs(events) do
  local offset_s, op, user, reaction, cts = e[1], e[2], e[3], e[4], e[5]
  local offset = tonumber(offset_s)
  local ts = nil
  if cts ~= '' then ts = tonumber(cts) end
  local cur_reaction, cur_ts = parse(state[user])
  local older = ts ~= nil and cur_ts ~= nil and ts < cur_ts
  if offset <= last then
    duplicate = duplicate + 1
    -- A stale event replayed after a crash may have lost its corrective (the crash came
    -- between this apply and the corrective's acknowledgement): restate again; it is a no-op.
    if older then needs_corrective(user) end
  else
    top = offset_s
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
          if state[user] then store(user, false) end
        elseif target ~= cur_reaction then
          store(user, target)
        end
      elseif target ~= cur_reaction or tonumber(new_ts) ~= cur_ts then
        store(user, target .. '|' .. new_ts)
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
    local n = redis.call('HINCRBY', counts, reaction, by)
    if n <= 0 then
      -- Never negative (a safeguard: a decrement always follows an increment for that
      -- reader), and a zero count is dropped rather than stored.
      redis.call('HDEL', counts, reaction)
      by = by - n
    end
    if by ~= 0 then
      deltas[#deltas + 1] = reaction
      deltas[#deltas + 1] = string.format('%d', by)
    end
  end
end

local corrective = {}
for _, user in ipairs(restate_order) do
  local value = state[user]
  local reaction = parse(value)
  corrective[#corrective + 1] = user
  corrective[#corrective + 1] = reaction
  corrective[#corrective + 1] = string.sub(value, string.find(value, '|', 1, true) + 1)
end
return string.format('%d\t%d\t%d\t%d\n', applied, noop, duplicate, stale)
  .. table.concat(deltas, '\t') .. '\n' .. table.concat(corrective, '\t')
