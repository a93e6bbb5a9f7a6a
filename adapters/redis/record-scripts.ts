/**
 * @module tollbooth/redis/record-scripts
 *
 * The Lua of the durable records: usage events and their aggregates; account creation,
 * compare-and-set and balance (key records: key-scripts.ts). Each script touches only the keys
 * it is given, all under one hash tag (an account's `{u:<id>}`, `{usage}`) or a single key, so
 * they run on Redis Cluster.
 *
 * Records are stored as the caller's JSON and returned as-is: Lua decodes JSON only to read
 * a field, never re-encodes it (its cjson keeps 14 digits).
 */

import { roundAmountLua } from './scripts.js'

/**
 * The Lua helper `addf(key, field, x)` of the scripts that keep usage totals: a hash field's
 * total plus x, added in doubles and rounded as every other store adds them (`round_amount`,
 * `roundAmount` of `limits/amount`: 30 x 0.1 is 3, as the credits used). HINCRBYFLOAT adds in
 * long double and prints the sum to 17 digits, so many small amounts drifted from the
 * counters' figure.
 */
const ADD_TOTAL = `${roundAmountLua('math.floor')}local function addf(key, field, x)
  local v = round_amount((tonumber(redis.call('HGET', key, field)) or 0) + x)
  redis.call('HSET', key, field, string.format('%.17g', v))
end
`

/**
 * Records one account's usage events; an id already stored is skipped. An admitted event is
 * also added to the account's totals of its hour and its day (HASHes of `r:<pair>` requests and
 * `u:<pair>` units; a pair is the usage category, then NUL and the key category when the key
 * had one), so summaries never read events. Every key is under the account's `{u:<id>}` tag.
 * Returns how many were new, and 1 when the account had events stored before, else 0 (its
 * first events, or Redis lost them: flushed, restarted empty, failed over, evicted).
 */
export const USAGE_RECORD = `-- KEYS[1]  the account's events: HASH id -> event JSON
-- KEYS[2]  the account's index: ZSET id by time (summaries, prune)
-- KEYS[3i], KEYS[3i+1], KEYS[3i+2]  event i's key index (ZSET id by time), the account's
--          totals of its hour and of its day (HASH)
-- ARGV[5i-4] .. ARGV[5i]  event i: id, time (ms), JSON, pair, units ('' when refused:
--          logged, not counted)
${ADD_TOTAL}local n, had = 0, redis.call('EXISTS', KEYS[1])
-- Totals to add, summed per HASH and category first: one HINCRBY and one addf per bucket and
-- category of the batch, not per event.
local add, order = {}, {}
for i = 1, #ARGV / 5 do
  local a, k = 5 * i - 4, 3 * i
  local id, time, units = ARGV[a], ARGV[a + 1], ARGV[a + 4]
  if redis.call('HSETNX', KEYS[1], id, ARGV[a + 2]) == 1 then
    redis.call('ZADD', KEYS[2], time, id)
    redis.call('ZADD', KEYS[k], time, id)
    if units ~= '' then
      local cat = ARGV[a + 3]
      for j = k + 1, k + 2 do
        local h = add[KEYS[j]]
        if not h then
          h = {}
          add[KEYS[j]] = h
          order[#order + 1] = KEYS[j]
        end
        local c = h[cat]
        if not c then
          h[cat] = { 1, tonumber(units) }
        else
          c[1] = c[1] + 1
          c[2] = c[2] + tonumber(units)
        end
      end
    end
    n = n + 1
  end
end
for _, key in ipairs(order) do
  for cat, c in pairs(add[key]) do
    redis.call('HINCRBY', key, 'r:' .. cat, c[1])
    addf(key, 'u:' .. cat, c[2])
  end
end
return { n, had }
`

/**
 * Notes which account each key's events are under (for logs by key) and which accounts have
 * events (for prune), in the small `{usage}` index. Returns 1.
 */
export const USAGE_INDEX = `-- KEYS[1]  HASH key id -> account id
-- KEYS[2]  SET of account ids with events
-- ARGV[2i-1], ARGV[2i]  key id, account id
for i = 1, #ARGV - 1, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  redis.call('SADD', KEYS[2], ARGV[i + 1])
end
return 1
`

/**
 * Totals of hours and days (`KEYS[3..]`) plus the events of sub-hour edge ranges:
 * `{ requests, units, pair, requests, units, … }` as strings (a pair as in USAGE_RECORD).
 */
export const USAGE_SUMMARY = `-- KEYS[1]  the account's index: ZSET id by time
-- KEYS[2]  the account's events: HASH id -> event JSON
-- KEYS[3..]  the account's totals of each whole hour and day of the range (HASH)
-- ARGV[2i-1], ARGV[2i]  edge range i: from (ms, inclusive), to (ms, exclusive)
${roundAmountLua('math.floor')}local requests, units, cats = 0, 0, {}
local function add(cat, r, u)
  local c = cats[cat]
  if not c then
    c = { 0, 0 }
    cats[cat] = c
  end
  requests = requests + r
  units = round_amount(units + u)
  c[1] = c[1] + r
  c[2] = round_amount(c[2] + u)
end
for i = 3, #KEYS do
  local h = redis.call('HGETALL', KEYS[i])
  local r, u = {}, {}
  for j = 1, #h, 2 do
    local f = h[j]
    if string.sub(f, 1, 2) == 'r:' then r[string.sub(f, 3)] = tonumber(h[j + 1])
    else u[string.sub(f, 3)] = tonumber(h[j + 1]) end
  end
  for cat, n in pairs(r) do add(cat, n, u[cat] or 0) end
end
for i = 1, #ARGV - 1, 2 do
  local ids = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[i], '(' .. ARGV[i + 1])
  for _, id in ipairs(ids) do
    local json = redis.call('HGET', KEYS[2], id)
    if json then
      local e = cjson.decode(json)
      if e.code == nil or e.code == cjson.null then
        local cat = e.category
        if cat == nil or cat == cjson.null then cat = 'uncategorized' end
        local kc = e.keyCategory
        if kc ~= nil and kc ~= cjson.null and kc ~= 'uncategorized' then
          cat = cat .. '\\0' .. kc
        end
        add(cat, 1, e.units)
      end
    end
  end
end
local out = { tostring(requests), string.format('%.17g', units) }
for cat, c in pairs(cats) do
  out[#out + 1] = cat
  out[#out + 1] = tostring(c[1])
  out[#out + 1] = string.format('%.17g', c[2])
end
return out
`

/**
 * Deletes one account's events and takes admitted ones out of their totals. Returns how many
 * were deleted.
 */
export const USAGE_PRUNE = `-- KEYS[1]  the account's events: HASH id -> event JSON
-- KEYS[2]  the account's index: ZSET id by time
-- KEYS[3i], KEYS[3i+1], KEYS[3i+2]  event i's key index, hour totals and day totals (as in
--          USAGE_RECORD)
-- ARGV[3i-2], ARGV[3i-1], ARGV[3i]  event i: id, pair (as in USAGE_RECORD), units ('' when
--          not counted)
${ADD_TOTAL}local n = 0
for i = 1, #ARGV / 3 do
  local a, k = 3 * i - 2, 3 * i
  local id, cat, units = ARGV[a], ARGV[a + 1], ARGV[a + 2]
  if redis.call('HDEL', KEYS[1], id) == 1 then
    redis.call('ZREM', KEYS[2], id)
    redis.call('ZREM', KEYS[k], id)
    if units ~= '' then
      for j = k + 1, k + 2 do
        if redis.call('HINCRBY', KEYS[j], 'r:' .. cat, -1) <= 0 then
          redis.call('HDEL', KEYS[j], 'r:' .. cat, 'u:' .. cat)
        else
          addf(KEYS[j], 'u:' .. cat, -tonumber(units))
        end
      end
    end
    n = n + 1
  end
end
return n
`

/**
 * Takes events out of the layout of versions before 2026-12 (everything under `{usage}`), once
 * `upgradeUsageTotals` has recorded them under their account: deletes each event with its index
 * entries, and takes the ones its totals held out of them. Returns how many were deleted.
 */
export const USAGE_UNRECORD_OLD = `-- KEYS[1]  events: HASH id -> event JSON
-- KEYS[2]  all: ZSET id by time
-- KEYS[4i-1], KEYS[4i], KEYS[4i+1], KEYS[4i+2]  event i's account index, key index, hour
--          totals and day totals
-- ARGV[3i-2], ARGV[3i-1], ARGV[3i]  event i: id, pair, units ('' when not in the totals)
${ADD_TOTAL}local n = 0
for i = 1, #ARGV / 3 do
  local a, k = 3 * i - 2, 4 * i - 1
  local id, cat, units = ARGV[a], ARGV[a + 1], ARGV[a + 2]
  if redis.call('HDEL', KEYS[1], id) == 1 then
    redis.call('ZREM', KEYS[2], id)
    redis.call('ZREM', KEYS[k], id)
    redis.call('ZREM', KEYS[k + 1], id)
    if units ~= '' then
      for j = k + 2, k + 3 do
        if redis.call('HINCRBY', KEYS[j], 'r:' .. cat, -1) <= 0 then
          redis.call('HDEL', KEYS[j], 'r:' .. cat, 'u:' .. cat)
        else
          addf(KEYS[j], 'u:' .. cat, -tonumber(units))
        end
      end
    end
    n = n + 1
  end
end
return n
`

/** A page of a key's events, newest first: `{ '1' | '0' (more), json, … }`. */
export const USAGE_LOGS = `-- KEYS[1]  the key's index: ZSET id by time
-- KEYS[2]  the account's events: HASH id -> event JSON
-- ARGV[1]  cursor time, or '' for the first page
-- ARGV[2]  cursor id (the last event of the previous page)
-- ARGV[3]  page size
local function before(a, b)
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end
local start = 0
if ARGV[1] ~= '' then
  start = redis.call('ZCOUNT', KEYS[1], '(' .. ARGV[1], '+inf')
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], ARGV[1])) do
    if not before(m, ARGV[2]) then start = start + 1 end
  end
end
local limit = tonumber(ARGV[3])
local ids = redis.call('ZREVRANGE', KEYS[1], start, start + limit)
local out = { '0' }
if #ids > limit then out[1] = '1' end
for i = 1, math.min(#ids, limit) do
  out[#out + 1] = redis.call('HGET', KEYS[2], ids[i]) or ''
end
return out
`

/** Creates an account unless it exists; returns `{ json, balance }` as stored. */
export const ACCOUNT_ENSURE = `-- KEYS[1]  the account: HASH j (JSON without balance), b (balance)
-- ARGV[1]  JSON
-- ARGV[2]  balance
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'j', ARGV[1], 'b', ARGV[2])
end
return redis.call('HMGET', KEYS[1], 'j', 'b')
`

/** Compare-and-set of an account: `{ status, json, balance }`; status 1, 0 (changed), -1. */
export const ACCOUNT_CAS = `-- KEYS[1]  the account: HASH j (JSON without balance), b (balance)
-- ARGV[1]  the JSON the caller read
-- ARGV[2]  the new JSON
-- ARGV[3]  the new balance, or '' to keep it
-- ARGV[4]  an amount to add to the balance (a period's close takes its overage), or ''
${roundAmountLua('math.floor')}
local cur = redis.call('HGET', KEYS[1], 'j')
if not cur then return { -1 } end
if cur ~= ARGV[1] then return { 0 } end
redis.call('HSET', KEYS[1], 'j', ARGV[2])
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'b', ARGV[3]) end
if ARGV[4] ~= nil and ARGV[4] ~= '' then
  local b = round_amount(tonumber(redis.call('HGET', KEYS[1], 'b')) + tonumber(ARGV[4]))
  redis.call('HSET', KEYS[1], 'b', string.format('%.17g', b))
end
local r = redis.call('HMGET', KEYS[1], 'j', 'b')
return { 1, r[1], r[2] }
`

/** Adds to the balance in one step (double arithmetic rounded as `roundAmount`, as in JavaScript). */
export const ACCOUNT_ADD = `-- KEYS[1]  the account: HASH j (JSON without balance), b (balance)
-- ARGV[1]  the amount to add (may be negative)
${roundAmountLua('math.floor')}
if redis.call('EXISTS', KEYS[1]) == 0 then return nil end
local b = round_amount(tonumber(redis.call('HGET', KEYS[1], 'b')) + tonumber(ARGV[1]))
redis.call('HSET', KEYS[1], 'b', string.format('%.17g', b))
return redis.call('HMGET', KEYS[1], 'j', 'b')
`

/** Fields of the account's HASH one top-up's pruning step asks HSCAN for (`COUNT`). */
export const TOPUP_PRUNE_STEP = 64

/**
 * A top-up under its idempotency key (`AccountStore.topUp`): in the account's HASH, the field
 * `t:<key>` is the account's record of the key (a key is its account's); unless it is live by
 * the caller's clock, the amount is added and the record kept, in this one script. `tn` is the
 * earliest expiry of the records, so the expired ones are looked for only once one is; an
 * account that takes no more keyed top-ups keeps its last ones' records.
 *
 * The search is one HSCAN step a call (`COUNT` {@link TOPUP_PRUNE_STEP}) from where the last
 * call left it (`tc`), deleting the expired records it meets, with `tm` the earliest expiry of
 * the live ones met so far (and of those added meanwhile); `tn` takes it when the walk ends.
 * It read the whole HASH at once (HGETALL), and with keyed top-ups steady over their records'
 * life the earliest one has always expired: every call read every live record (10,000 records,
 * 10,000 fields a call, test/storage/redis-topup-prune.test.ts). A walk of n fields ends within
 * about n / 64 calls, each adding one record: the expired records waiting are a small share of
 * the live ones.
 * Returns nil (no account), `{ 1, amount, read }` (added) or `{ 0, amount, read }` (the
 * record's), `read` the fields its pruning read.
 */
export const TOPUP_APPLY = `-- KEYS[1]  the account: HASH j, b, t:<key> = '<expiresAt> <amount>', tn, tc, tm
-- ARGV[1]  the idempotency key
-- ARGV[2]  amount
-- ARGV[3]  now
-- ARGV[4]  expiresAt
${roundAmountLua('math.floor')}
if redis.call('EXISTS', KEYS[1]) == 0 then return nil end
local now = tonumber(ARGV[3])
local field = 't:' .. ARGV[1]
local v = redis.call('HGET', KEYS[1], field)
if v then
  local e, a = string.match(v, '^(%S+) (%S+)$')
  if e and tonumber(e) > now then return { 0, a, 0 } end
end
local s = redis.call('HMGET', KEYS[1], 'tn', 'tc', 'tm')
local tn, tc, tm = tonumber(s[1] or ''), s[2], tonumber(s[3] or '')
local read = 0
if tc or (tn and tn <= now) then
  local r = redis.call('HSCAN', KEYS[1], tc or '0', 'MATCH', 't:*', 'COUNT', ${TOPUP_PRUNE_STEP})
  local got = r[2]
  read = #got / 2
  for i = 1, #got, 2 do
    local e = tonumber(string.match(got[i + 1], '^(%S+)')) or 0
    if e <= now then
      redis.call('HDEL', KEYS[1], got[i])
    elseif not tm or e < tm then
      tm = e
    end
  end
  if r[1] == '0' then
    -- The walk is over: every record there at its start was met, or added since (in tm).
    tn, tc, tm = tm, nil, nil
    redis.call('HDEL', KEYS[1], 'tc', 'tm', 'tn')
  else
    tc = r[1]
  end
end
local e = tonumber(ARGV[4])
if not tn or e < tn then tn = e end
local b = round_amount(tonumber(redis.call('HGET', KEYS[1], 'b')) + tonumber(ARGV[2]))
redis.call('HSET', KEYS[1], 'b', string.format('%.17g', b), field, ARGV[4] .. ' ' .. ARGV[2],
  'tn', string.format('%.17g', tn))
if tc then
  if not tm or e < tm then tm = e end
  redis.call('HSET', KEYS[1], 'tc', tc, 'tm', string.format('%.17g', tm))
end
return { 1, ARGV[2], read }
`
