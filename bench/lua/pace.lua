-- Appended to a scenario script (bench/wrk.py, `per_second`) to send at a steady rate
-- instead of as fast as answers come: the thread's requests are slotted on a schedule of
-- `pace_per_s` a second from its first, and wrk asks delay() before sending each one. A
-- late request goes at once, so a stall is caught up and the rate over a run holds; a
-- service slower than the rate is at saturation, which the achieved rate shows.
local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } pace_timespec;
int clock_gettime(int clock_id, pace_timespec *tp);
]]
local CLOCK_MONOTONIC = 1
local clock = ffi.new("pace_timespec")
local first_ms, slots = nil, 0

local function now_ms()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, clock)
  return tonumber(clock.tv_sec) * 1000 + tonumber(clock.tv_nsec) / 1e6
end

delay = function()
  local now = now_ms()
  first_ms = first_ms or now
  slots = slots + 1
  return math.max(0, math.floor(first_ms + slots * 1000 / pace_per_s - now))
end
