/**
 * @module tollbooth/redis/scripts
 *
 * The Lua of the counters: one function, `consume`, that applies the settle operations queued
 * for an account and then runs an admission (one round trip per request: the settles ride
 * along with the account's next admission). Loaded as a Redis Functions library (`LIBRARY`,
 * Redis 7+), so its helpers are defined once and not on every call, or run as the script
 * `CONSUME` (EVALSHA) where the server has no Functions. Its numbers come in one argument of
 * packed doubles (`struct.unpack`, no decimal text to parse per call), and its states keep
 * theirs packed too. It mirrors
 * `src/limits/{rolling-window,gcra,hold}.ts` operation for operation (same IEEE doubles, same
 * order of additions), so Redis and the in-memory store give the same figures; `scripts.test.ts` checks that on random sequences.
 *
 * What a call costs Redis (`bench/redis-script-cost.ts`) is mostly its Lua, and with many
 * requests in flight mostly Lua's garbage collector: a hold counter's holds are one string,
 * so every copy of them is garbage as long as all of them. A call copies them as few times as
 * it can: a release riding along with its account's admission is joined to the admission's
 * hold in one write (`pend_flush`), and an admission one of whose holds stands for its record
 * writes no record.
 *
 * Counter states are a letter, then the moment the counter expires by the caller's clock (its
 * PX plus the call's `now`; infinity when it has no TTL), then its figures, all little-endian
 * doubles (`struct.pack`, no decimal text to parse or print):
 * - window `v` (`V` when rebuilt): then `<idx><n>` per bucket, oldest first
 * - gcra `f`: then `<level><at>`
 * - hold `i` (`I` when rebuilt): then `<used><sum><minExp><maxExp>`, then as text
 *   `\n#<id>\n<amount>\n<expiresAt>` per hold (numbers with `%.17g`, in insertion order, ids
 *   escaped by the caller so they hold no newline; `#` marks an id, so a plain search from the
 *   end of the header finds it). `sum` is the holds' total when every amount is an integer,
 *   else NaN; with it and `minExp > now`, an admission or a release reads no hold.
 *
 * A counter whose expiry has not moved is written with `KEEPTTL` (Redis 7+), not a new `PX`.
 * The text forms of earlier versions are still read (`w,<idx>,<n>…`, `g,<level>,<at>`,
 * `h\n<used>\n<sum>\n<minExp>\n<maxExp>` then the holds; `W`, `H` when rebuilt) and written
 * packed the next time they change. An earlier version reads a packed counter as empty.
 *
 * Each counter is read at most once per call and written at most once, at its end. A counter
 * that would be idle is deleted; any other expires at the moment it turns idle plus `slackMs`
 * (the instances' clocks may differ), except all-time windows and holds with a settled total,
 * which never go idle.
 */

/**
 * The library functions the code calls, as locals: each use is then an upvalue, not a lookup
 * in the globals. They are taken on the first call (`bind`), since a Functions library's code
 * sees no globals but \`redis\` while it loads.
 */
const LOCALS = `
local floor, ceil, max, sfind, ssub, sbyte, smatch, sgmatch, sformat, srep, concat, tremove
local unpack, pack, tunpack, tonumber, rcall, keepttl
local function bind()
  floor, ceil, max = math.floor, math.ceil, math.max
  sfind, ssub, sbyte, smatch, sgmatch = string.find, string.sub, string.byte, string.match, string.gmatch
  sformat, srep, concat, tremove = string.format, string.rep, table.concat, table.remove
  unpack, pack, tunpack, tonumber = struct.unpack, struct.pack, _G.unpack, _G.tonumber
  rcall = redis.call
  -- SET's KEEPTTL needs Redis 6; REDIS_VERSION_NUM is there from Redis 7.
  keepttl = redis.REDIS_VERSION_NUM ~= nil
end
`

/**
 * `round_amount(x)`: `roundAmount` of `limits/amount`, the one rounding rule for sums of
 * amounts (9 decimals below 1e6, then 15 significant digits, unchanged from 1e15), in the
 * same double operations, so the figures agree to the bit. `Math.round`'s tie (toward +inf)
 * is `floor(y)` plus one when `y - floor(y) >= 0.5` (that difference is exact). `floor` is
 * the name `math.floor` goes by where the text is put.
 */
export const roundAmountLua = (floor: string) => `local function round_amount(x)
  local a = x
  if a < 0 then a = -a end
  local s = 1e9
  if not (a < 1e6) then
    if not (a < 1e15) then return x end
    s = 1e8
    local top = 1e7
    while a >= top do
      top = top * 10
      s = s / 10
    end
  end
  local y = x * s
  local r = ${floor}(y)
  if y - r >= 0.5 then r = r + 1 end
  return r / s + 0
end
`

/** Numbers as text (a hold's, and the text forms of earlier versions): `num` reads, `fmt` writes exactly. */
const NUMBERS = `
local INF = 1 / 0
${roundAmountLua('floor')}local function num(s)
  if s == 'inf' then return INF elseif s == '-inf' then return -INF end
  return tonumber(s)
end
-- The text of the integers 0 to 1023, each printed once (a hold's amount, mostly).
local INTS = {}
local function fmt(x)
  -- Integers (most figures) print exactly with %d, the same text as %.17g below 1e15 (but -0,
  -- left to %.17g), and faster.
  if x == floor(x) and x < 1e15 and x > -1e15 and (x ~= 0 or 1 / x > 0) then
    if x >= 0 and x < 1024 then
      local t = INTS[x]
      if not t then
        t = sformat('%d', x)
        INTS[x] = t
      end
      return t
    end
    return sformat('%d', x)
  end
  if x == INF then return 'inf' elseif x == -INF then return '-inf' end
  return sformat('%.17g', x)
end
-- The text of the TTLs written (PX), each printed once: they mostly repeat from call to call
-- (a hold's is its ttlMs plus the slack, a record's its ttlMs), and Redis prints a number
-- argument anew on every call (fpconv, ~2,000 instructions). At most 256 kept.
local PXS, npxs = {}, 0
local function pxtext(px)
  local t = PXS[px]
  if t then return t end
  if px ~= floor(px) then return px end
  if npxs >= 256 then PXS, npxs = {}, 0 end
  t = sformat('%d', px)
  PXS[px], npxs = t, npxs + 1
  return t
end
-- The reply's figures (see ADMIT), kept from call to call.
local OUT = {}
-- The struct format of n little-endian doubles, built once per n.
local DOUBLES = {}
local function doubles(n)
  local f = DOUBLES[n]
  if not f then
    f = '<' .. srep('d', n)
    DOUBLES[n] = f
  end
  return f
end
`

/** The call's key cache: each key read once (`get`) and written once at the end (`commit`). */
const KEY_CACHE = `
-- Every key is read once per call, all at its start (one MGET), and written at most once, at
-- its end (\`get\` / \`put\` / \`commit\`): a settle and the admission that carries it may touch
-- the same counter. A key's entries sit at its first place in KEYS (\`slot\`): \`orig\` as read,
-- \`cur\` as the call leaves it, \`pxs\` its PX once written (-1: none) and \`ats\` the expiry
-- its new value keeps. The last three are tables kept from call to call (entries past #KEYS
-- are left over from an earlier call, never read); each entry starts as \`orig\`'s, so a key
-- whose \`pxs\` entry still equals its \`orig\` one was not written.
-- \`slot\` is kept from call to call too, the previous call's keys taken out of it first: a new
-- table each call grew its hash part three times for five keys, garbage for Lua's collector.
-- The first \`nk\` keys are read (\`nkeys\`): a record's list after them is only appended to.
local keys, orig
local nkeys = 0
local slot, cur, pxs, ats = {}, {}, {}, {}
local function load_keys(KEYS, nk)
  if keys then
    for i = 1, nkeys do slot[keys[i]] = nil end
  end
  keys, nkeys = KEYS, nk
  if nk == 0 then
    orig = {}
    return
  end
  orig = rcall('MGET', tunpack(KEYS, 1, nk))
  for i = 1, nk do
    local k, v = KEYS[i], orig[i]
    if not slot[k] then slot[k] = i end
    cur[i], pxs[i], ats[i] = v, v, v
  end
end
local function get(key)
  return cur[slot[key]]
end
-- A counter's expiry, written inline where a counter is (no call each): its PX, max(1,
-- ceil(ms)) + slack (false: none), and the moment it stands for by the caller's clock, now +
-- PX (infinity: none), which the counter's value keeps (its first double after the letter).
-- value false deletes the key; px false keeps it with no expiry. at: the expiry the value
-- keeps (nil for a record): when the counter had the same one, its TTL is left as it is.
-- While an admission's checks run, their writes are only noted (\`stage\`, a table kept from
-- call to call, \`nstage\` entries of it used): they are made when every check has passed.
-- stage true: a lone check's (see SETTLE_PHASE), whose one write is kept in one_v, one_px,
-- one_at (nstage 4 once made).
local stage, nstage, STAGE = nil, 0, {}
local one_v, one_px, one_at
local function put(key, value, px, at)
  if stage then
    if stage == true then
      one_v, one_px, one_at, nstage = value, px or -1, at or false, 4
      return
    end
    stage[nstage + 1], stage[nstage + 2], stage[nstage + 3], stage[nstage + 4] = key, value, px or -1, at or false
    nstage = nstage + 4
    return
  end
  local j = slot[key]
  cur[j], pxs[j], ats[j] = value, px or -1, at or false
end
-- The expiry kept in the value a reader (gcra_scaled, window_live) last unpacked, when it
-- read it anyway; false: a form with none (text). The lone check (SETTLE_PHASE) sets it to nil
-- before it runs, and passes it to \`write\`.
local read_at = nil
-- One key's write: v false deletes it, px -1 keeps no expiry; \`was\` is the value read and
-- wasAt its expiry when known (nil: read here).
local function write(key, v, px, at, was, wasAt)
  if v == false then
    if was then rcall('DEL', key) end
  elseif px == -1 then
    rcall('SET', key, v)
  else
    -- The same expiry as the packed state read (v, V, f, i, I) had: its TTL kept.
    local keep = false
    if keepttl and at and was then
      if wasAt ~= nil then
        keep = at == wasAt
      else
        local l = sbyte(was, 1)
        keep = (l == 118 or l == 86 or l == 102 or l == 105 or l == 73) and at == unpack('<d', was, 2)
      end
    end
    if keep then
      rcall('SET', key, v, 'KEEPTTL')
    else
      rcall('SET', key, v, 'PX', pxtext(px))
    end
  end
end
local function commit()
  for j = 1, nkeys do
    local px, was = pxs[j], orig[j]
    if px ~= was then write(keys[j], cur[j], px, ats[j], was) end
  end
end
`

/** Rolling windows: the state read, counted into and written. */
const WINDOW = `
-- rolling window (limits/rolling-window.ts)
-- The live buckets, and whether the window was rebuilt (\`V\`, \`W\` in the text form; see
-- Rebuild in storage/types).
local function window_live(raw, first)
  local idx, n = {}, {}
  read_at = false
  if not raw then return idx, n, false end
  local l = sbyte(raw, 1)
  if l == 118 or l == 86 then
    local m = (#raw - 9) / 8
    local k = 0
    read_at = nil
    if m == 2 then
      -- One bucket (the common case): read with no table between.
      local at, b, c = unpack('<ddd', raw, 2)
      read_at = at
      if b >= first then idx[1], n[1] = b, c end
    elseif m > 0 then
      local x = { unpack(DOUBLES[m] or doubles(m), raw, 10) }
      for j = 1, m, 2 do
        local b = x[j]
        if b >= first then
          k = k + 1
          idx[k], n[k] = b, x[j + 1]
        end
      end
    end
    return idx, n, l == 86
  end
  -- The text form of versions before the packed one (w, W).
  if l ~= 119 and l ~= 87 then return idx, n, false end
  -- One pattern match per bucket, no list of parts built first.
  local k = 0
  for i, c in sgmatch(raw, ',([^,]*),([^,]*)') do
    local b = tonumber(i)
    if b >= first then
      k = k + 1
      idx[k], n[k] = b, tonumber(c)
    end
  end
  return idx, n, l == 87
end
-- A negative cost takes units back from bucket \`current\`, or the first after it when it has
-- none, never an older one nor below zero (rolling-window's add).
local function window_add(idx, n, current, cost)
  local last = #idx
  if cost < 0 then
    for k = 1, last do
      if idx[k] >= current then
        local v = n[k] + cost
        if v < 0 then v = 0 end
        n[k] = v
        return
      end
    end
    return
  end
  if last >= 1 and idx[last] >= current then
    n[last] = n[last] + cost
  else
    idx[last + 1] = current
    n[last + 1] = cost
  end
end
-- A TTL of px ms from now, and the moment it stands for (which the value keeps). A TTL of a
-- minute or more (every one, with the default slack) is rounded up to end on a whole second,
-- at most 1/60 longer: a counter written many times a second then has the same moment each
-- time, and its TTL is kept (\`KEEPTTL\` in \`commit\`), not written anew (\`PX\`, about 6,600
-- instructions more a write; bench/NOTES.md, session 21).
local function ttl_at(px, now)
  local at = now + px
  if px >= 60000 then
    -- ceil(x), exactly, as x + (-x) % 1 (no library call: see gcra_scaled)
    local s = at / 1000
    local up = (s + (-s) % 1) * 1000
    local d = up - at
    return px + (d + (-d) % 1), up
  end
  return px, at
end
-- A counter's TTL (ms) and the time it lapses, for a counter idle in idleIn ms (nil: never,
-- false TTL and an infinite time).
local function expiry(idleIn, slack, now)
  if not idleIn then return false, INF end
  return ttl_at(max(1, ceil(idleIn)) + slack, now)
end
local function window_write(key, idx, n, now, windowMs, bucketMs, span, slack, rebuilt)
  if #idx == 0 and not rebuilt then
    put(key, false)
    return
  end
  local idleIn = nil
  if windowMs ~= 0 then
    if #idx == 0 then idleIn = windowMs else idleIn = (idx[#idx] + span + 1) * bucketMs - now end
  end
  local px, at = expiry(idleIn, slack, now)
  local l = 'v'
  if rebuilt then l = 'V' end
  if #idx == 1 then
    put(key, pack('<c1ddd', l, at, idx[1], n[1]), px, at)
    return
  end
  local x = { at }
  for k = 1, #idx do
    x[2 * k], x[2 * k + 1] = idx[k], n[k]
  end
  put(key, l .. pack(DOUBLES[#x] or doubles(#x), tunpack(x)), px, at)
end
local function window_geometry(now, windowMs, bucketMs)
  if windowMs == 0 then return 0, 0 end
  return floor(now / bucketMs), ceil(windowMs / bucketMs)
end
`

/** GCRA in unit-milliseconds: the state read and written. */
const GCRA = `
-- GCRA (limits/gcra.ts), in unit-milliseconds: levels scaled by periodMs
-- The level at t and t itself: the later of now and the stored time (a stored time never
-- moves back, gcraTime in gcra.ts).
local function gcra_scaled(raw, now, limit, periodMs)
  read_at = false
  if not raw then return 0, now end
  local lv, at
  if sbyte(raw, 1) == 102 then
    read_at, lv, at = unpack('<ddd', raw, 2)
  else
    -- The text form of versions before the packed one.
    local l, a = smatch(raw, '^g,([^,]*),(.*)$')
    if not l then return 0, now end
    lv, at = tonumber(l), tonumber(a)
  end
  local t = now
  if at > t then t = at end
  -- round(lv * periodMs), as Math.round; the level drained since at. floor(x) is written x -
  -- x % 1 and max() as a comparison here and below: each call of a library function costs
  -- Redis about 360 instructions (bench/NOTES.md, session 22).
  local x = lv * periodMs
  local f = x % 1
  local r = x - f
  if f >= 0.5 then r = r + 1 end
  if t > at then r = r - (t - at) * limit end
  -- (<= so that -0 is 0, as max(0, r) gives)
  if r <= 0 then r = 0 end
  return r, t
end
local function gcra_write(key, scaled, t, now, limit, periodMs, slack)
  if scaled <= 0 then
    put(key, false)
  else
    -- max(1, ceil(u)): u + (-u) % 1 is ceil(u), exactly
    local u = scaled / limit + 1 + (t - now)
    u = u + (-u) % 1
    if u < 1 then u = 1 end
    local px, at = ttl_at(u + slack, now)
    put(key, pack('<c1ddd', 'f', at, scaled / periodMs, t), px, at)
  end
end
`

/** Hold counters: the header, the holds, and how long a counter is kept. */
const HOLD = `
-- holds (limits/hold.ts). The header keeps what an admission and a release need without
-- reading the holds: \`sum\`, the live holds' total when every amount is an integer (integers
-- add exactly in any order, so it equals hold()'s in-order sum), else ''; \`minExp\` and
-- \`maxExp\`, bounds on the holds' expiries (a release leaves them: a stale bound only sends
-- the next call down the full path, or keeps an idle key a little longer).
local function integral(x)
  return x == floor(x) and x < 9e15 and x > -9e15
end
-- The header: used, sum (nil when unknown), minExp, maxExp, where the holds start, and
-- whether the counter was rebuilt (\`I\` instead of \`i\`, \`H\` instead of \`h\` in the text
-- form; see Rebuild in storage/types). No state: zeros and an empty body.
-- The last packed header written (hold_put) or read, by its whole value: a release and the
-- admission after it on one counter read the header the release wrote.
local head_raw, head_used, head_sum, head_mn, head_mx, head_rebuilt
local function hold_head(raw)
  if not raw then return 0, 0, INF, -INF, nil, false end
  if raw == head_raw then return head_used, head_sum, head_mn, head_mx, 42, head_rebuilt end
  local l = sbyte(raw, 1)
  if l == 105 or l == 73 then
    local _, used, sum, mn, mx = unpack('<ddddd', raw, 2)
    if sum ~= sum then sum = nil end
    head_raw, head_used, head_sum, head_mn, head_mx, head_rebuilt = raw, used, sum, mn, mx, l == 73
    return used, sum, mn, mx, 42, l == 73
  end
  -- The text form of versions before the packed one.
  local _, e, t, u, sm, mn, mx = sfind(raw, '^([hH])\\n([^\\n]*)\\n([^\\n]*)\\n([^\\n]*)\\n([^\\n]*)')
  if not e then return 0, 0, INF, -INF, nil, false end
  local sum = nil
  if sm ~= '' then sum = tonumber(sm) end
  return tonumber(u), sum, num(mn), num(mx), e + 1, t == 'H'
end
-- How long a hold counter is kept: false deletes it now, nil keeps it with no expiry. With a
-- keepUntil (a period's credits), until then and its last hold; without, while it has a
-- settled total or was rebuilt, else until its last hold.
local function hold_idle_in(used, rebuilt, hasHolds, mx, keep, now)
  if keep then
    local e = keep
    if hasHolds and mx > e then e = mx end
    if e <= now then return false end
    return e - now
  end
  if used ~= 0 or rebuilt then return nil end
  if not hasHolds then return false end
  return mx - now
end
-- A hold counter written (its header packed, sum NaN when unknown, then its holds) for
-- hold_idle_in's answer. Its holds come in pieces, b1, b2 and b3, joined to the header in one
-- concatenation: each copy of the holds is a string as long as all of them for Lua's GC to
-- collect, and with many requests in flight those copies are most of what a call costs.
local function hold_put(key, used, sum, mn, mx, b1, b2, b3, rebuilt, idleIn, slack, now)
  if idleIn == false then
    put(key, false)
    return
  end
  local px, at = expiry(idleIn, slack, now)
  local l = 'i'
  if rebuilt then l = 'I' end
  local v = pack('<c1ddddd', l, at, used, sum or 0 / 0, mn, mx) .. b1 .. b2 .. b3
  head_raw, head_used, head_sum, head_mn, head_mx, head_rebuilt = v, used, sum, mn, mx, rebuilt
  put(key, v, px, at)
end
-- A release on the fast path whose counter a hold check of the same call reads next (the
-- settle that rides along with its account's admission) is kept pending, its holds as the two
-- pieces around the released one, not joined: the hold check joins them once with its own hold
-- (\`check_hold\`), where joining them first would copy every hold twice more. Anything else
-- that reads the counter, and the call's end, writes it first (\`pend_flush\`), outside the
-- admission's staged writes: a settle applies whatever the admission's outcome. \`pend_folded\`:
-- a staged write of the admission includes it (then that write, if made, replaces it).
local pend_key, pend_used, pend_sum, pend_mn, pend_mx, pend_b1, pend_b2, pend_rebuilt
local pend_keep, pend_now, pend_slack, pend_folded
-- The count of the call's settle op keys: the KEYS after them are its checks'.
local call_nops = 0
local function pend_flush()
  local key = pend_key
  if not key then return end
  pend_key = nil
  local has = pend_b1 ~= '' or pend_b2 ~= ''
  local staged = stage
  stage = nil
  hold_put(key, pend_used, pend_sum, pend_mn, pend_mx, pend_b1, pend_b2, '', pend_rebuilt,
    hold_idle_in(pend_used, pend_rebuilt, has, pend_mx, pend_keep, pend_now), pend_slack, pend_now)
  stage = staged
end
-- Whether a check of the call (after its settle ops) reads key.
local function checked(key)
  for j = call_nops + 1, nkeys do
    if keys[j] == key then return true end
  end
  return false
end
-- The full path: every hold read, the expired ones dropped, in insertion order.
local function hold_live(raw, now)
  local s = { used = 0, ids = {}, amounts = {}, expires = {}, text = {} }
  local used, _, _, _, from, rebuilt = hold_head(raw)
  s.used, s.rebuilt = used, rebuilt
  if not from then return s end
  for id, a, e in sgmatch(ssub(raw, from), '\\n#([^\\n]*)\\n([^\\n]*)\\n([^\\n]*)') do
    local exp = tonumber(e)
    if exp > now then
      local amount = tonumber(a)
      local k = #s.ids + 1
      s.ids[k], s.amounts[k], s.expires[k] = id, amount, exp
      -- Kept as stored, not formatted again.
      s.text[k] = '\\n#' .. id .. '\\n' .. a .. '\\n' .. e
    end
  end
  return s
end
local function hold_write(key, s, now, slack, keep)
  local parts = {}
  local sum, mn, mx = 0, INF, -INF
  for k = 1, #s.ids do
    local a, e = s.amounts[k], s.expires[k]
    parts[k] = s.text[k] or ('\\n#' .. s.ids[k] .. '\\n' .. fmt(a) .. '\\n' .. fmt(e))
    if sum then
      if integral(a) then sum = sum + a else sum = nil end
    end
    if e < mn then mn = e end
    if e > mx then mx = e end
  end
  local idleIn = hold_idle_in(s.used, s.rebuilt, #s.ids > 0, mx, keep, now)
  hold_put(key, s.used, sum, mn, mx, concat(parts), '', '', s.rebuilt, idleIn, slack, now)
end
`

/** Settle operations on one counter, never refusing (the first part of CONSUME below). */
const SETTLE_OP = `
-- t 1: release hold id (a charge, b 1 only when still held, c keepUntil or NaN);
-- t 2: add to a window (a windowMs, b bucketMs, c cost); t 3: add to a GCRA limit (a limit,
-- b windowMs, c cost); t 8: renew hold id (a ttlMs, c keepUntil or NaN) while it is live (renewHold in
-- limits/hold.ts: a hold gone is not made again).
local function settle_op(key, t, id, a, b, c, now, slack)
  if pend_key == key then pend_flush() end
  local raw = cur[slot[key]]
  if t == 1 then
    -- Only when the hold is still there (a retried settle must not charge twice).
    local ifHeld = b == 1
    local keep = nil
    if c == c then keep = c end
    local used, sum, mn, mx, from, rebuilt = hold_head(raw)
    if sum and mn > now then
      -- No hold expired and the total known: the hold's text cut out, nothing else read.
      -- The holds before it (b1) and after it (b2) go to hold_put as they are.
      local b1, b2 = '', ''
      local at = nil
      if from then at = sfind(raw, '\\n#' .. id .. '\\n', from, true) end
      if ifHeld and not at then return end
      if a ~= 0 then used = round_amount(used + a) end
      if from then
        if at then
          -- The amount after the id's line, the expiry after it, up to the next hold or the end.
          local p = at + #id + 3
          local q = sfind(raw, '\\n', p, true)
          sum = sum - tonumber(ssub(raw, p, q - 1))
          local e = sfind(raw, '\\n', q + 1, true)
          if at > from then b1 = ssub(raw, from, at - 1) end
          if e then b2 = ssub(raw, e) end
        else
          b1 = ssub(raw, from)
        end
      end
      local hasHolds = b1 ~= '' or b2 ~= ''
      if not hasHolds then sum, mn, mx = 0, INF, -INF end
      if checked(key) then
        pend_flush()
        pend_key, pend_used, pend_sum, pend_mn, pend_mx, pend_b1, pend_b2, pend_rebuilt = key, used, sum, mn, mx, b1, b2, rebuilt
        pend_keep, pend_now, pend_slack, pend_folded = keep, now, slack, false
        return
      end
      local idleIn = hold_idle_in(used, rebuilt, hasHolds, mx, keep, now)
      hold_put(key, used, sum, mn, mx, b1, b2, '', rebuilt, idleIn, slack, now)
      return
    end
    local s = hold_live(raw, now)
    local kept = { used = s.used, rebuilt = s.rebuilt, ids = {}, amounts = {}, expires = {}, text = {} }
    for k = 1, #s.ids do
      if s.ids[k] ~= id then
        local n = #kept.ids + 1
        kept.ids[n], kept.amounts[n], kept.expires[n], kept.text[n] = s.ids[k], s.amounts[k], s.expires[k], s.text[k]
      end
    end
    if ifHeld and #kept.ids == #s.ids then return end
    if a ~= 0 then kept.used = round_amount(kept.used + a) end
    hold_write(key, kept, now, slack, keep)
  elseif t == 8 then
    local s = hold_live(raw, now)
    local upto = now + a
    for k = 1, #s.ids do
      if s.ids[k] == id then
        if s.expires[k] >= upto then return end
        s.expires[k], s.text[k] = upto, nil
        local keep = nil
        if c == c then keep = c end
        hold_write(key, s, now, slack, keep)
        return
      end
    end
  elseif t == 2 then
    local current, span = window_geometry(now, a, b)
    local idx, n, rebuilt = window_live(raw, current - span)
    window_add(idx, n, current, c)
    window_write(key, idx, n, now, a, b, span, slack, rebuilt)
  else
    local scaled, t2 = gcra_scaled(raw, now, a, b)
    gcra_write(key, scaled + c * b, t2, now, a, b, slack)
  end
end
`

/**
 * A check of a cancelled admission taken back (`limits/revert`): a hold dropped with no
 * charge, a window's cost out of the bucket of `at`, a GCRA cost less what drained since `at`.
 * A counter's marks stay (rebuilt, a hold's keepUntil).
 */
const REVERT_OP = `
-- t 5: a hold (id; c its keepUntil or NaN); t 6: a window (a windowMs, b bucketMs, c cost);
-- t 7: a GCRA limit (a limit, b windowMs, c cost).
local function revert_op(key, t, id, a, b, c, now, at, slack)
  if t == 5 then
    -- Only if still held: dropping a hold that is gone changes nothing (no empty counter
    -- written); c is the hold check's keepUntil, which the counter keeps.
    settle_op(key, 1, id, 0, 1, c, now, slack)
    return
  end
  if pend_key == key then pend_flush() end
  local raw = get(key)
  if t == 6 then
    local windowMs, bucketMs, cost = a, b, c
    local current, span = window_geometry(now, windowMs, bucketMs)
    local idx, n, rebuilt = window_live(raw, current - span)
    local bucket = 0
    if windowMs ~= 0 then bucket = floor(at / bucketMs) end
    -- A count whose bucket has left the window is gone already (see revert in limits/counters).
    if bucket < current - span then return end
    for k = 1, #idx do
      if idx[k] >= bucket then
        if n[k] - cost > 0 then
          n[k] = n[k] - cost
        else
          tremove(idx, k)
          tremove(n, k)
        end
        break
      end
    end
    window_write(key, idx, n, now, windowMs, bucketMs, span, slack, rebuilt)
  else
    -- Measured at the stored time when it is ahead of now (gcraRemove in limits/revert.ts):
    -- the time never moves back, and what drained up to it is not given back.
    local limit, windowMs, cost = a, b, c
    local scaled, t2 = gcra_scaled(raw, now, limit, windowMs)
    local back = max(0, cost * windowMs - max(0, t2 - at) * limit)
    gcra_write(key, max(0, scaled - back), t2, now, limit, windowMs, slack)
  end
end
`

/** An admission's record as a line (used by ADMIT and by the lone check in SETTLE_PHASE). */
const RECORD_LINE = `
-- The admission's record as a line of its second's list (fold -1 in CALL): its key's name
-- and a newline, the list kept twice the record's TTL and a second from its first line.
local function record_line(markKey, markTtl, list)
  local line = markKey .. '\\n'
  if rcall('APPEND', list, line) == #line then
    rcall('PEXPIRE', list, pxtext(2 * max(1, ceil(markTtl)) + 1000))
  end
end
`

/**
 * The settle operations queued before the admission, applied in order and never refusing: a
 * cancel (4) followed by its revert ops, or one release or add. Opens `consume`, defining
 * `blob`, `pos` (the next record), `si` (the next string argument), `nOps`, `markTtl`, `now`
 * and `slack` for the admission after it. A lone window or GCRA check with nothing to settle is
 * answered here whole.
 */
const SETTLE_PHASE = `
local function consume(KEYS, ARGV)
if not rcall then bind() end
stage = nil
local blob = ARGV[1]
local now, slack, nOps, markTtl, fold, pos = unpack('<ddddd', blob)
-- fold -1: the admission's record goes to the list that is the last key (recordBucket in
-- counter-calls.ts), not read.
local nk = #KEYS
if fold < 0 then nk = nk - 1 end
-- A lone window or GCRA check with nothing to settle and no record or a line for it (a key
-- with one rate limit or one quota and no credits: the peers' job) is run here by the same
-- check_window / check_gcra as ADMIT runs, its write made at once: no key table to fill and
-- walk, no staged list, no call (62,900 → 45,200 instructions a call with the arithmetic
-- written inline in GCRA: bench/NOTES.md, session 22).
if nOps == 0 and (nk == 1 and markTtl ~= markTtl or nk == 2 and fold < 0) then
  local t, limit, a, b, c, rb = unpack('<dddddd', blob, pos)
  if rb == 0 and (t == 1 or t == 2) then
    -- KEYS: the counter, then (nk 2) the record and its list. Answered as ADMIT answers.
    local key = KEYS[1]
    local raw
    if nk == 2 then
      local r = rcall('MGET', key, KEYS[2])
      raw = r[1]
      -- A cancel of this admission came first: nothing is counted.
      if r[2] == 'x' then return pack('<dddddd', 0, 0, 0, 0, 0, 1000) end
    else
      raw = rcall('GET', key)
    end
    stage, nstage, read_at = true, 0, nil
    local ok, used, remaining, resetMs, retryMs
    if t == 1 then
      ok, used, remaining, resetMs, retryMs = check_window(key, raw, limit, a, b, c, nil, now, slack)
    else
      ok, used, remaining, resetMs, retryMs = check_gcra(key, raw, limit, a, b, now, slack)
    end
    stage = nil
    if not ok then return pack('<dddddd', 0, 0, used, remaining, resetMs, retryMs) end
    -- The check's one write (put while staged), or none.
    if nstage > 0 then write(key, one_v, one_px, one_at, raw, read_at) end
    if nk == 2 then record_line(KEYS[2], markTtl, KEYS[3]) end
    return pack('<dddddd', 1, 1, used, remaining, resetMs, retryMs)
  end
end
load_keys(KEYS, nk)
pend_key, call_nops = nil, nOps
local si = 2
local i = 1
while i <= nOps do
  local t, opNow, a, b, c
  t, opNow, a, b, c, pos = unpack('<ddddd', blob, pos)
  if t == 4 then
    -- a cancel: a ttlMs, b the count of revert ops that follow
    local m = get(KEYS[i])
    if m ~= 'x' then put(KEYS[i], 'x', max(1, ceil(a))) end
    -- c: the revert op (1-based) whose hold stands for the record (0: none; recordHold in
    -- counter-calls.ts). With no record, the admission was applied if that hold is there and
    -- the record would still be (its admission's time plus a, by the callers' clock).
    -- c -1: the record is a line of its second's list, the key after the revert ops' (read
    -- with them), looked for while the record would still be kept, as above.
    local applied = m == 'c'
    if not m and c < 0 then
      local _, at = unpack('<dd', blob, pos)
      if ceil(at + a) > opNow then
        -- Its line: the key's name and a newline, at the list's start or after a newline (the
        -- list is not copied: it may hold a busy account's second of admissions).
        local list = cur[slot[KEYS[i + b + 1]]]
        local line = KEYS[i] .. '\\n'
        local from = 1
        applied = false
        while list do
          local p = sfind(list, line, from, true)
          if not p then break end
          if p == 1 or sbyte(list, p - 1) == 10 then
            applied = true
            break
          end
          from = p + 1
        end
      end
    end
    if not m and c > 0 then
      local p, s = pos, si
      for j = 1, c do
        local tj, at, _
        tj, at, _, _, _, p = unpack('<ddddd', blob, p)
        if tj == 5 then
          if j == c and ceil(at + a) > opNow then
            local hk = KEYS[i + j]
            if pend_key == hk then pend_flush() end
            local raw = cur[slot[hk]]
            local _, _, _, _, from = hold_head(raw)
            applied = from ~= nil and sfind(raw, '\\n#' .. ARGV[s] .. '\\n', from, true) ~= nil
          end
          s = s + 1
        end
      end
    end
    for j = i + 1, i + b do
      local tj, at, aj, bj, cj
      tj, at, aj, bj, cj, pos = unpack('<ddddd', blob, pos)
      local id = nil
      if tj == 5 then
        id = ARGV[si]
        si = si + 1
      end
      if applied then revert_op(KEYS[j], tj, id, aj, bj, cj, opNow, at, slack) end
    end
    i = i + 1 + b
    if c < 0 then i = i + 1 end
  elseif t == 9 then
    -- a release once per record (its KEY, then the counter's): with the record's tombstone
    -- there nothing is done; else the hold dropped if there, a charged whether or not it was,
    -- and the tombstone kept b ms.
    local id = ARGV[si]
    si = si + 1
    if get(KEYS[i]) ~= 'x' then
      put(KEYS[i], 'x', max(1, ceil(b)))
      settle_op(KEYS[i + 1], 1, id, a, 0, c, opNow, slack)
    end
    i = i + 2
  else
    local id = nil
    if t == 1 or t == 8 then
      id = ARGV[si]
      si = si + 1
    end
    settle_op(KEYS[i], t, id, a, b, c, opNow, slack)
    i = i + 1
  end
end
`

/**
 * A window check (`rollingWindow` in limits/rolling-window.ts): its figures, and its write
 * staged (`put` while `stage` is set) when it passes. `seed`: the base of a rebuild
 * (limits/counters), written at once.
 */
const CHECK_WINDOW = `
local function check_window(key, raw, limit, windowMs, bucketMs, cost, seed, now, slack)
  local ok, used, remaining, resetMs, retryMs
  local allTime = windowMs == 0
  local current, span = window_geometry(now, windowMs, bucketMs)
  local idx, n, rebuilt = window_live(raw, current - span)
  if seed then
    -- Rebuilt: written now, whatever the admission's outcome, with the larger count.
    local had = 0
    for k = 1, #n do had = had + n[k] end
    window_add(idx, n, current, max(0, seed - had))
    rebuilt = true
    local staged = stage
    stage = nil
    window_write(key, idx, n, now, windowMs, bucketMs, span, slack, true)
    stage = staged
  end
  local sum = 0
  for k = 1, #n do sum = sum + n[k] end
  if allTime then resetMs = INF
  elseif #idx == 0 then resetMs = 0
  else resetMs = (idx[1] + span + 1) * bucketMs - now end
  if sum + cost > limit then
    ok, used, remaining, retryMs = false, sum, max(0, limit - sum), INF
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
    window_write(key, idx, n, now, windowMs, bucketMs, span, slack, rebuilt)
  end
  return ok, used, remaining, resetMs, retryMs
end
`

/** A GCRA check (`gcra` in limits/gcra.ts), as `check_window`. */
const CHECK_GCRA = `
local function check_gcra(key, raw, limit, windowMs, cost, now, slack)
  local ok, remaining, resetMs, retryMs
  local capacity = limit * windowMs
  local drained, t = gcra_scaled(raw, now, limit, windowMs)
  local ahead = t - now
  local need = cost
  if cost <= 0 then need = 1 end
  need = need * windowMs
  if drained + need > capacity then
    ok, retryMs = false, max(1, ceil((drained + need - capacity) / limit)) + ahead
    remaining = max(0, floor((capacity - drained) / windowMs))
    resetMs = ceil(drained / limit) + ahead
  else
    local level = drained + cost * windowMs
    ok, retryMs = true, 0
    -- max(0, floor(q)) and ceil(u), inline as in gcra_scaled
    local q = (capacity - level) / windowMs
    remaining = q - q % 1
    if remaining <= 0 then remaining = 0 end
    local u = level / limit
    resetMs = u + (-u) % 1 + ahead
    gcra_write(key, level, t, now, limit, windowMs, slack)
  end
  return ok, limit - remaining, remaining, resetMs, retryMs
end
`

/**
 * A hold check (`holdTotal`/`addHold` in limits/hold.ts), as `check_window`. With no hold
 * expired and the total known from the header, the new hold is appended and nothing else read.
 */
const CHECK_HOLD = `
local function check_hold(key, raw, limit, amount, ttlMs, id, keep, seed, now, slack)
  local ok, used, remaining, retryMs
  if pend_key == key then
    -- The release before it in this call, still in pieces (see pend_flush): on the fast path
    -- the new hold is joined to them, and the staged write includes the release.
    local needle = '\\n#' .. id .. '\\n'
    local sum = pend_sum
    if not seed and sum and pend_mn > now and not sfind(pend_b1, needle, 1, true) and not sfind(pend_b2, needle, 1, true) then
      local settled = pend_used
      local total = round_amount(settled + sum)
      local after = round_amount(total + amount)
      if after > limit then
        return false, total, max(0, round_amount(limit - total)), 0, 1000
      end
      local exp = now + ttlMs
      local s2 = nil
      if integral(amount) then s2 = sum + amount end
      local hi, lo = pend_mx, pend_mn
      if exp > hi then hi = exp end
      if exp < lo then lo = exp end
      local idleIn = hold_idle_in(settled, pend_rebuilt, true, hi, keep, now)
      hold_put(key, settled, s2, lo, hi, pend_b1, pend_b2, '\\n#' .. id .. '\\n' .. fmt(amount) .. '\\n' .. fmt(exp), pend_rebuilt, idleIn, slack, now)
      pend_folded = true
      return true, after, round_amount(limit - after), 0, 0
    end
    pend_flush()
    raw = cur[slot[key]]
  end
  local settled, sum, mn, mx, from, rebuilt = hold_head(raw)
  if not seed and sum and mn > now and not (from and sfind(raw, '\\n#' .. id .. '\\n', from, true)) then
    local total = round_amount(settled + sum)
    local after = round_amount(total + amount)
    if after > limit then
      return false, total, max(0, round_amount(limit - total)), 0, 1000
    end
    do
      local exp = now + ttlMs
      local body = ''
      if from then body = ssub(raw, from) end
      local s2 = nil
      if integral(amount) then s2 = sum + amount end
      local hi = mx
      if exp > hi then hi = exp end
      local lo = mn
      if exp < lo then lo = exp end
      local idleIn = hold_idle_in(settled, rebuilt, true, hi, keep, now)
      hold_put(key, settled, s2, lo, hi, body, '', '\\n#' .. id .. '\\n' .. fmt(amount) .. '\\n' .. fmt(exp), rebuilt, idleIn, slack, now)
    end
    return true, after, round_amount(limit - after), 0, 0
  end
  local s = hold_live(raw, now)
  if seed then
    -- Rebuilt: written now, whatever the admission's outcome, with the larger of the two
    -- (an unmarked counter may hold settles made since the loss, then mostly in the base
    -- too, or be a whole count kept from before rebuilds).
    s.used, s.rebuilt = max(s.used, seed), true
    local staged = stage
    stage = nil
    hold_write(key, s, now, slack, keep)
    stage = staged
  end
  -- The settled total, then the live holds in insertion order, as holdTotal() adds them.
  local total = s.used
  for k = 1, #s.amounts do total = total + s.amounts[k] end
  total = round_amount(total)
  local after = round_amount(total + amount)
  if after > limit then
    return false, total, max(0, round_amount(limit - total)), 0, 1000
  end
  local found = false
  for k = 1, #s.ids do
    if s.ids[k] == id then
      s.amounts[k], s.expires[k], found = amount, now + ttlMs, true
      s.text[k] = nil
    end
  end
  if not found then
    local k = #s.ids + 1
    s.ids[k], s.amounts[k], s.expires[k] = id, amount, now + ttlMs
  end
  hold_write(key, s, now, slack, keep)
  return true, after, round_amount(limit - after), 0, 0
end
`

/**
 * The admission (`admitStep` in limits/counters.ts): a tombstone of its record refuses it;
 * else every check is evaluated, and only when all pass are their writes and the record
 * applied. Then every key written is committed.
 */
const ADMIT = `
-- The reply's figures, n of them so far (OUT, a table kept from call to call).
local out = OUT
out[1] = 1
local n = 1
local lastCheck = nk
local markKey = nil
if markTtl == markTtl then
  markKey = KEYS[nk]
  lastCheck = lastCheck - 1
  if cur[slot[markKey]] == 'x' then
    -- A cancel of this admission came first: nothing is counted.
    for k = nOps + 1, lastCheck do
      out[1], out[n + 1], out[n + 2], out[n + 3], out[n + 4], out[n + 5] = 0, 0, 0, 0, 0, 1000
      n = n + 5
    end
    pend_flush()
    commit()
    return pack(DOUBLES[n] or doubles(n), tunpack(out, 1, n))
  end
end
stage, nstage = STAGE, 0
for i = nOps + 1, lastCheck do
  local key = KEYS[i]
  local t, limit, a, b, c, rb, base
  t, limit, a, b, c, rb, base, pos = unpack('<ddddddd', blob, pos)
  local id = nil
  if t == 3 then
    id = ARGV[si]
    si = si + 1
  end
  local raw = cur[slot[key]]
  if pend_key == key and t ~= 3 then
    pend_flush()
    raw = cur[slot[key]]
  end
  local ok, used, remaining, resetMs, retryMs
  -- Rebuild: seed is the base to add when the counter was not rebuilt; ask answers missing.
  local seed = nil
  if rb ~= 0 and raw then
    local l = sbyte(raw, 1)
    if l == 86 or l == 73 or l == 87 or l == 72 then rb = 0 end
  end
  if rb == 2 then seed = base end
  if rb == 1 then
    ok, used, remaining, resetMs, retryMs = -1, 0, 0, 0, 0
  elseif t == 1 then
    ok, used, remaining, resetMs, retryMs = check_window(key, raw, limit, a, b, c, seed, now, slack)
  elseif t == 2 then
    ok, used, remaining, resetMs, retryMs = check_gcra(key, raw, limit, a, b, now, slack)
  else
    local keep = nil
    if c == c then keep = c end
    ok, used, remaining, resetMs, retryMs = check_hold(key, raw, limit, a, b, id, keep, seed, now, slack)
  end
  if ok == -1 then out[1], ok = 0, -1
  elseif ok then ok = 1 else out[1], ok = 0, 0 end
  out[n + 1], out[n + 2], out[n + 3], out[n + 4], out[n + 5] = ok, used, remaining, resetMs, retryMs
  n = n + 5
end
if out[1] == 1 then
  stage = nil
  for k = 1, nstage, 4 do
    local j = slot[STAGE[k]]
    cur[j], pxs[j], ats[j] = STAGE[k + 1], STAGE[k + 2], STAGE[k + 3]
  end
  -- No record when a hold of the admission stands for it (fold, the check's number); fold -1:
  -- a line of its second's list, kept twice the record's TTL and a second from the list's
  -- first line (its lines come within a second and the callers' clock skew of each other).
  if markKey then
    if fold == 0 then put(markKey, 'c', max(1, ceil(markTtl)))
    elseif fold < 0 then record_line(markKey, markTtl, KEYS[nk + 1]) end
  end
  -- The release a staged hold included is written with it.
  if pend_folded then pend_key = nil end
end
stage = nil
pend_flush()
commit()
return pack(DOUBLES[n] or doubles(n), tunpack(out, 1, n))
end
`

/** What `consume(KEYS, ARGV)` takes and answers. */
const CALL = `-- KEYS[1..nOps]  the counter of settle op i; then KEYS[nOps + i] the counter of check i,
--            then the admission's record when it has one, then (fold -1) the list its record
--            goes to (all of one call share the {accountId} hash tag)
-- ARGV[1]  every number of the call, little-endian doubles (struct '<d'): read in order
--   header: now (ms since the epoch, from the caller's clock; a GCRA state keeps the later of
--            it and its stored time), slackMs (kept past the moment a counter turns idle),
--            nOps (settle op records first), markTtl (NaN: no record; else the admission's
--            record is the last KEY, written 'c' for markTtl ms when the admission passes, and
--            a tombstone 'x' there, a cancel that came first, refuses it), fold (0, or the
--            check whose hold stands for the record: then no record is written; or -1: the
--            record is its key's name and a newline appended to the list, the last KEY, not
--            read, kept 2 * markTtl + 1 s from its first line)
--   then per settle op: type, now (its settle's clock reading), a, b, c where
--            type 1 (release hold): a charge, b 1 only when still held, c keepUntil or NaN
--            type 2 (add to a window): a windowMs, b bucketMs, c cost
--            type 3 (add to a GCRA limit): a limit, b windowMs, c cost
--            type 8 (renew a hold while it is live): a ttlMs, c keepUntil or NaN
--            type 9 (release a hold once per record; its KEY the record, then the hold
--              counter's): a charge, b the tombstone's ttlMs, c keepUntil or NaN; with the
--              record 'x' nothing is done, else the hold dropped if there, a charged, and
--              the record becomes 'x'
--            type 4 (cancel an admission; its KEY the admission's record): a ttlMs, b the
--              count of revert ops that follow, c 0 or the revert op whose hold stands for
--              the record, or -1: the record is a line of the list that is the KEY after the
--              revert ops'; each revert op has at (the admission's time) in place of now, and
--              is applied only when the record is 'c' (or, with no record, c's hold is there
--              or the list has the record's line, and at + a has not passed); the record
--              becomes the tombstone 'x' unless it already was one
--            type 5 (revert a hold): c keepUntil or NaN; 6 (a window): a windowMs,
--              b bucketMs, c cost; 7 (a GCRA limit): a limit, b windowMs, c cost
--   then per check: type, limit, a, b, c, rebuild, base where
--            type 1 (window): a windowMs, b bucketMs, c cost
--            type 2 (gcra):   a windowMs, b cost
--            type 3 (hold):   a amount, b ttlMs, c keepUntil or NaN
--            rebuild (windows and holds, see Rebuild in storage/types): 0 none, 1 answer
--            missing unless rebuilt, 2 rebuild with base unless rebuilt
-- ARGV[2..]  the hold ids of ops of type 1, 5 and 8 and of checks of type 3, in order (escaped
--            by the caller: no newline)
-- Returns little-endian doubles: allowed (1 | 0), then per check allowed (1 | 0 | -1
--   missing), used, remaining, resetMs, retryAfterMs. A refused admission (missing included)
--   writes no record.
`

/** The helpers and `consume`: defined once per load as a library, once per call as a script. */
const LIBRARY_BODY = `${LOCALS}${NUMBERS}${KEY_CACHE}${WINDOW}${GCRA}${HOLD}${SETTLE_OP}${REVERT_OP}${CHECK_WINDOW}${CHECK_GCRA}${CHECK_HOLD}${RECORD_LINE}${SETTLE_PHASE}${ADMIT}`

/** FNV-1a of the text, in hex: the library's version, so two versions can be loaded at once. */
function version(text: string): string {
  let h = 0x811c9dc5
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  return (h >>> 0).toString(16).padStart(8, '0')
}

const VERSION = version(LIBRARY_BODY)

/**
 * The name of the counter function in the library: admissions (and settles carried with one)
 * call it; {@link SETTLE_FUNCTION}, the same code, is called for settles sent on their own,
 * so a MONITOR tells the two apart.
 */
export const CONSUME_FUNCTION = `tollbooth_consume_${VERSION}`
export const SETTLE_FUNCTION = `tollbooth_settle_${VERSION}`

/**
 * The counters as a Redis Functions library (Redis 7+: `FUNCTION LOAD`, then `FCALL`): its
 * helpers are defined once at load, not on every call. Named by a hash of its code, so
 * instances of two tollbooth versions can share a Redis while one replaces the other.
 */
export const LIBRARY = `#!lua name=tollbooth_${VERSION}
${CALL}${LIBRARY_BODY}
redis.register_function('${CONSUME_FUNCTION}', consume)
redis.register_function('${SETTLE_FUNCTION}', consume)
`

/**
 * The same counters as one script, for servers without Functions (EVALSHA): settle
 * operations queued since the account's last call (applied first, never refusing), then an
 * admission that evaluates every check and counts all of them only if all pass. Either part
 * may be empty: a settle sent on its own has no checks.
 */
export const CONSUME: string = `${CALL}${LIBRARY_BODY}
return consume(KEYS, ARGV)
`

/**
 * A marker set once until it expires (`CounterStore.claim`): the value is its expiry by the
 * caller's clock, as every counter here is judged by it; Redis drops the key by its own clock
 * (`PX`, with the slack) once that has passed.
 *
 * Call: `1, key, now, expiresAt, px`. Returns 1 when this call set it, 0 when it was set.
 */
export const CLAIM = `local v = redis.call('GET', KEYS[1])
if v and (tonumber(v) or 0) > tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
`
