/**
 * @module tollbooth/redis/scripts
 *
 * The Lua of the counters: admission (`CONSUME`, one round trip per request), settle
 * operations (`SETTLE`). They mirror `src/limits/{rolling-window,gcra,hold}.ts` operation for
 * operation (same IEEE doubles, same order of additions), so Redis and the in-memory store
 * give the same figures; `scripts.test.ts` checks that on random sequences.
 *
 * Counter states are strings, every number written with `%.17g` so it reads back exactly
 * (Lua's `tostring` keeps only 14 digits):
 * - window `w,<idx>,<n>,<idx>,<n>…` (buckets oldest first)
 * - gcra `g,<level>,<at>`
 * - hold `h\n<used>\n<id>\n<amount>\n<expiresAt>…` (holds in insertion order, ids escaped by
 *   the caller so they hold no newline)
 *
 * A counter that would be idle is deleted; any other gets a PEXPIRE at the moment it turns
 * idle plus `slackMs` (the instances' clocks may differ), except all-time windows and holds
 * with a settled total, which never go idle.
 */

const HELPERS = `
local INF = math.huge
local function num(s)
  if s == 'inf' then return INF elseif s == '-inf' then return -INF end
  return tonumber(s)
end
local function fmt(x)
  -- Integers (most figures) print exactly with %d, the same text as %.17g below 1e15 (but -0,
  -- left to %.17g), and faster.
  if x == math.floor(x) and x < 1e15 and x > -1e15 and (x ~= 0 or 1 / x > 0) then
    return string.format('%d', x)
  end
  if x == INF then return 'inf' elseif x == -INF then return '-inf' end
  return string.format('%.17g', x)
end
local function split(s, sep)
  local out, pos = {}, 1
  while true do
    local i = string.find(s, sep, pos, true)
    if not i then
      out[#out + 1] = string.sub(s, pos)
      return out
    end
    out[#out + 1] = string.sub(s, pos, i - 1)
    pos = i + #sep
  end
end
local function expire(key, value, ms, slack)
  if ms == nil then
    redis.call('SET', key, value)
  else
    redis.call('SET', key, value, 'PX', math.max(1, math.ceil(ms)) + slack)
  end
end

-- rolling window (limits/rolling-window.ts)
local function window_live(raw, first)
  local idx, n = {}, {}
  if not raw then return idx, n end
  local p = split(raw, ',')
  if p[1] ~= 'w' then return idx, n end
  local k = 2
  while k < #p and tonumber(p[k]) < first do k = k + 2 end
  while k < #p do
    idx[#idx + 1] = tonumber(p[k])
    n[#n + 1] = tonumber(p[k + 1])
    k = k + 2
  end
  return idx, n
end
local function window_add(idx, n, current, cost)
  local last = #idx
  if last >= 1 and idx[last] >= current then
    n[last] = n[last] + cost
  else
    idx[last + 1] = current
    n[last + 1] = cost
  end
end
local function window_write(key, idx, n, now, windowMs, bucketMs, span, slack)
  if #idx == 0 then
    redis.call('DEL', key)
    return
  end
  local parts = { 'w' }
  for k = 1, #idx do
    parts[#parts + 1] = fmt(idx[k])
    parts[#parts + 1] = fmt(n[k])
  end
  local idleIn = nil
  if windowMs ~= 0 then idleIn = (idx[#idx] + span + 1) * bucketMs - now end
  expire(key, table.concat(parts, ','), idleIn, slack)
end
local function window_geometry(now, windowMs, bucketMs)
  if windowMs == 0 then return 0, 0 end
  return math.floor(now / bucketMs), math.ceil(windowMs / bucketMs)
end

-- GCRA (limits/gcra.ts), in unit-milliseconds: levels scaled by periodMs
local function round(x)
  local f = math.floor(x)
  if x - f >= 0.5 then return f + 1 end
  return f
end
local function gcra_scaled(raw, now, limit, periodMs)
  if not raw then return 0 end
  local p = split(raw, ',')
  if p[1] ~= 'g' then return 0 end
  return math.max(0, round(tonumber(p[2]) * periodMs) - math.max(0, now - tonumber(p[3])) * limit)
end
local function gcra_write(key, scaled, now, limit, periodMs, slack)
  if scaled <= 0 then
    redis.call('DEL', key)
  else
    expire(key, 'g,' .. fmt(scaled / periodMs) .. ',' .. fmt(now), scaled / limit + 1, slack)
  end
end

-- holds (limits/hold.ts): read and drop the expired ones
local function hold_live(raw, now)
  local s = { used = 0, ids = {}, amounts = {}, expires = {} }
  local held = 0
  if not raw then return s, held end
  local p = split(raw, '\\n')
  if p[1] ~= 'h' then return s, held end
  s.used = tonumber(p[2])
  -- The stored text of each kept hold too: written back as it was, not formatted again (with
  -- many concurrent holds, string.format was most of a call's time).
  s.text = {}
  for k = 3, #p - 2, 3 do
    local exp = tonumber(p[k + 2])
    if exp > now then
      local amount = tonumber(p[k + 1])
      s.ids[#s.ids + 1] = p[k]
      s.amounts[#s.amounts + 1] = amount
      s.expires[#s.expires + 1] = exp
      s.text[#s.ids] = p[k] .. '\\n' .. p[k + 1] .. '\\n' .. p[k + 2]
      held = held + amount
    end
  end
  return s, held
end
-- The common case in O(one pass of string.find), with nothing rebuilt: sums the live holds in
-- order (as hold_live), notes where hold \`id\` is, and keeps the stored text of the holds
-- as it is. Returns nil when a hold has expired: the caller then takes hold_live's path,
-- which drops it.
local function hold_scan(raw, now, id)
  local st = { used = 0, held = 0, last = now, lastOther = now, body = '', usedText = '0' }
  if not raw then return st end
  local _, hdr, usedText = string.find(raw, '^h\\n([^\\n]*)')
  if not hdr then return st end
  st.used, st.usedText, st.body = tonumber(usedText), usedText, string.sub(raw, hdr + 1)
  -- Where hold \`id\` starts, if stored: no id is captured below, only compared by position.
  local at = string.find(raw, '\\n' .. id .. '\\n', hdr + 1, true)
  local pos = hdr + 1
  while true do
    local a, b, amount, expText = string.find(raw, '^\\n[^\\n]*\\n([^\\n]*)\\n([^\\n]*)', pos)
    if not a then break end
    local exp = tonumber(expText)
    if exp <= now then return nil end
    st.held = st.held + tonumber(amount)
    if exp > st.last then st.last = exp end
    if a == at then
      st.from, st.to = a - hdr, b - hdr
    elseif exp > st.lastOther then
      st.lastOther = exp
    end
    pos = b + 1
  end
  -- The id's text found inside another field (a numeric id equal to an amount, say): the
  -- full path decides.
  if at and not st.from then return nil end
  return st
end
local function hold_write(key, s, now, slack)
  if s.used == 0 and #s.ids == 0 then
    redis.call('DEL', key)
    return
  end
  local parts = { 'h', fmt(s.used) }
  local last = now
  local text = s.text or {}
  for k = 1, #s.ids do
    parts[#parts + 1] = text[k] or (s.ids[k] .. '\\n' .. fmt(s.amounts[k]) .. '\\n' .. fmt(s.expires[k]))
    if s.expires[k] > last then last = s.expires[k] end
  end
  local idleIn = nil
  if s.used == 0 then idleIn = last - now end
  expire(key, table.concat(parts, '\\n'), idleIn, slack)
end
`

/**
 * Admission: evaluates every check, counts all of them only if all pass.
 * Call: `numkeys, ...keys, now, slackMs, ...5 args per check`.
 */
export const CONSUME = `-- KEYS[i]  the counter of check i (all of one request share the {accountId} hash tag)
-- ARGV[1]  now: milliseconds since the epoch, from the caller's clock
-- ARGV[2]  slackMs: kept past the moment a counter turns idle (clock skew between instances)
-- ARGV[3 + 5(i-1)] .. ARGV[7 + 5(i-1)]  check i: type, limit, a, b, c where
--            type 'w' (window): a windowMs, b bucketMs, c cost
--            type 'g' (gcra):   a windowMs, b cost, c unused
--            type 'h' (hold):   a amount, b ttlMs, c holdId
-- Returns { allowed ('1' | '0'), then per check: allowed, used, remaining, resetMs,
--   retryAfterMs }, numbers as '%.17g' strings ('inf' for infinity).
${HELPERS}
local now = tonumber(ARGV[1])
local slack = tonumber(ARGV[2])
local out = { '1' }
local writes = {}
for i = 1, #KEYS do
  local b = 3 + (i - 1) * 5
  local t, limit = ARGV[b], num(ARGV[b + 1])
  local raw = redis.call('GET', KEYS[i])
  local ok, used, remaining, resetMs, retryMs
  if t == 'w' then
    local windowMs, bucketMs, cost = num(ARGV[b + 2]), num(ARGV[b + 3]), num(ARGV[b + 4])
    local allTime = windowMs == 0
    local current, span = window_geometry(now, windowMs, bucketMs)
    local idx, n = window_live(raw, current - span)
    local sum = 0
    for k = 1, #n do sum = sum + n[k] end
    if allTime then resetMs = INF
    elseif #idx == 0 then resetMs = 0
    else resetMs = (idx[1] + span + 1) * bucketMs - now end
    if sum + cost > limit then
      ok, used, remaining, retryMs = false, sum, math.max(0, limit - sum), INF
      if not allTime then
        local freed = 0
        for k = 1, #idx do
          freed = freed + n[k]
          if sum - freed + cost <= limit then
            retryMs = (idx[k] + span + 1) * bucketMs - now
            break
          end
        end
      end
    else
      if cost > 0 then window_add(idx, n, current, cost) end
      ok, used, remaining, retryMs = true, sum + cost, limit - sum - cost, 0
      if allTime then resetMs = INF
      elseif #idx == 0 then resetMs = 0
      else resetMs = (idx[1] + span + 1) * bucketMs - now end
      writes[i] = function()
        window_write(KEYS[i], idx, n, now, windowMs, bucketMs, span, slack)
      end
    end
  elseif t == 'g' then
    local windowMs, cost = num(ARGV[b + 2]), num(ARGV[b + 3])
    local capacity = limit * windowMs
    local drained = gcra_scaled(raw, now, limit, windowMs)
    local need = cost
    if cost <= 0 then need = 1 end
    need = need * windowMs
    if drained + need > capacity then
      ok, retryMs = false, math.max(1, math.ceil((drained + need - capacity) / limit))
      remaining = math.max(0, math.floor((capacity - drained) / windowMs))
      resetMs = math.ceil(drained / limit)
    else
      local level = drained + cost * windowMs
      ok, retryMs = true, 0
      remaining = math.max(0, math.floor((capacity - level) / windowMs))
      resetMs = math.ceil(level / limit)
      writes[i] = function() gcra_write(KEYS[i], level, now, limit, windowMs, slack) end
    end
    used = limit - remaining
  else
    local amount, ttlMs, id = num(ARGV[b + 2]), num(ARGV[b + 3]), ARGV[b + 4]
    local st = hold_scan(raw, now, id)
    if st and not st.from then
      -- A new hold on a counter with none expired: appended to the stored text.
      local total = st.used + st.held
      resetMs = 0
      if total + amount > limit then
        ok, used, remaining, retryMs = false, total, math.max(0, limit - total), 1000
      else
        ok, used, remaining, retryMs = true, total + amount, limit - total - amount, 0
        writes[i] = function()
          local exp = now + ttlMs
          local last = st.last
          if exp > last then last = exp end
          local idleIn = nil
          if st.used == 0 then idleIn = last - now end
          local text = 'h\\n' .. st.usedText .. st.body .. '\\n' .. id .. '\\n' .. fmt(amount) .. '\\n' .. fmt(exp)
          expire(KEYS[i], text, idleIn, slack)
        end
      end
    else
    local s, held = hold_live(raw, now)
    local total = s.used + held
    resetMs = 0
    if total + amount > limit then
      ok, used, remaining, retryMs = false, total, math.max(0, limit - total), 1000
    else
      local found = false
      for k = 1, #s.ids do
        if s.ids[k] == id then
          s.amounts[k], s.expires[k], found = amount, now + ttlMs, true
          s.text[k] = nil
        end
      end
      if not found then
        s.ids[#s.ids + 1] = id
        s.amounts[#s.amounts + 1] = amount
        s.expires[#s.expires + 1] = now + ttlMs
      end
      ok, used, remaining, retryMs = true, total + amount, limit - total - amount, 0
      writes[i] = function() hold_write(KEYS[i], s, now, slack) end
    end
    end
  end
  if not ok then out[1] = '0' end
  out[#out + 1] = ok and '1' or '0'
  out[#out + 1] = fmt(used)
  out[#out + 1] = fmt(remaining)
  out[#out + 1] = fmt(resetMs)
  out[#out + 1] = fmt(retryMs)
end
if out[1] == '1' then
  for i = 1, #KEYS do writes[i]() end
end
return out
`

/**
 * Settle operations, applied in order, never refusing.
 * Call: `numkeys, ...keys, now, slackMs, ...4 args per op`.
 */
export const SETTLE = `-- KEYS[i]  the counter of op i
-- ARGV[1]  now: milliseconds since the epoch
-- ARGV[2]  slackMs: kept past the moment a counter turns idle
-- ARGV[3 + 4(i-1)] .. ARGV[6 + 4(i-1)]  op i: type, a, b, c where
--            type 'r' (release a hold): a holdId, b charge, c unused
--            type 'w' (add to a window): a windowMs, b bucketMs, c cost
--            type 'g' (add to a GCRA limit): a limit, b windowMs, c cost
-- Returns the number of ops applied.
${HELPERS}
local now = tonumber(ARGV[1])
local slack = tonumber(ARGV[2])
for i = 1, #KEYS do
  local b = 3 + (i - 1) * 4
  local t = ARGV[b]
  local raw = redis.call('GET', KEYS[i])
  local st = nil
  if t == 'r' then st = hold_scan(raw, now, ARGV[b + 1]) end
  if st then
    -- A release with no hold expired: the hold's text cut out, the rest kept as stored.
    local used = st.used + num(ARGV[b + 2])
    local body = st.body
    local last = st.last
    if st.from then
      body = string.sub(body, 1, st.from - 1) .. string.sub(body, st.to + 1)
      last = st.lastOther
    end
    if used == 0 and body == '' then
      redis.call('DEL', KEYS[i])
    else
      local idleIn = nil
      if used == 0 then idleIn = last - now end
      expire(KEYS[i], 'h\\n' .. fmt(used) .. body, idleIn, slack)
    end
  elseif t == 'r' then
    local id, charge = ARGV[b + 1], num(ARGV[b + 2])
    local s = hold_live(raw, now)
    local kept = { used = s.used, ids = {}, amounts = {}, expires = {}, text = {} }
    for k = 1, #s.ids do
      if s.ids[k] ~= id then
        kept.ids[#kept.ids + 1] = s.ids[k]
        kept.amounts[#kept.amounts + 1] = s.amounts[k]
        kept.expires[#kept.expires + 1] = s.expires[k]
        kept.text[#kept.ids] = s.text[k]
      end
    end
    kept.used = kept.used + charge
    hold_write(KEYS[i], kept, now, slack)
  elseif t == 'w' then
    local windowMs, bucketMs, cost = num(ARGV[b + 1]), num(ARGV[b + 2]), num(ARGV[b + 3])
    local current, span = window_geometry(now, windowMs, bucketMs)
    local idx, n = window_live(raw, current - span)
    window_add(idx, n, current, cost)
    window_write(KEYS[i], idx, n, now, windowMs, bucketMs, span, slack)
  else
    local limit, windowMs, cost = num(ARGV[b + 1]), num(ARGV[b + 2]), num(ARGV[b + 3])
    local scaled = gcra_scaled(raw, now, limit, windowMs) + cost * windowMs
    gcra_write(KEYS[i], scaled, now, limit, windowMs, slack)
  end
end
return #KEYS
`
