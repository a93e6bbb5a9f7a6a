/**
 * @module tollbooth/redis/key-scripts
 *
 * The Lua of the key store (keys.ts). A key's record is a HASH of its own (`j` the JSON without
 * `lastUsedAt`, `u` the `lastUsedAt`), so each script here touches one record, one id index or
 * records of one bucket (one hash tag): every call stays in one Redis Cluster slot. The `OLD_*`
 * scripts read and take apart the layout of versions before December 2026 (everything under
 * `{keys}`).
 *
 * Records are stored as the caller's JSON and compared as text: Lua never decodes them.
 */

/** Writes a record unless one exists under this hash: 1, or 0 when it exists. */
export const KEY_CREATE = `-- KEYS[1]  the record: HASH j (JSON without lastUsedAt), u (lastUsedAt, ms)
-- ARGV[1]  the record as JSON
-- ARGV[2]  lastUsedAt, or '' for null
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'j', ARGV[1])
if ARGV[2] ~= '' then redis.call('HSET', KEYS[1], 'u', ARGV[2]) end
return 1
`

/** Replaces a record's JSON if it still equals what the caller read: 1, 0 (changed), -1 (gone). */
export const KEY_CAS = `-- KEYS[1]  the record: HASH j, u
-- ARGV[1]  the JSON the caller read
-- ARGV[2]  the new JSON
local cur = redis.call('HGET', KEYS[1], 'j')
if not cur then return -1 end
if cur ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'j', ARGV[2])
return 1
`

/** Deletes a record if its JSON still equals what the caller read: 1, 0 (changed), -1 (gone). */
export const KEY_DROP = `-- KEYS[1]  the record: HASH j, u
-- ARGV[1]  the JSON the caller read
local cur = redis.call('HGET', KEYS[1], 'j')
if not cur then return -1 end
if cur ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
`

/**
 * Points an id at a hash in the id index, unless the id points at another hash (other than one
 * the caller found stale): 1 when set, else the hash it points at.
 */
export const KEY_INDEX = `-- KEYS[1]  the id index of the id's bucket: HASH id -> hash
-- ARGV[1]  id
-- ARGV[2]  hash
-- ARGV[3]  a hash the caller found stale (its record gone or another key's), or ''
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur and cur ~= ARGV[2] and cur ~= ARGV[3] then return cur end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
`

/** Removes an id from the id index if it points at this hash: 1, or 0. */
export const KEY_UNINDEX = `-- KEYS[1]  the id index of the id's bucket: HASH id -> hash
-- ARGV[1]  id
-- ARGV[2]  hash
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
return 1
`

/**
 * Lua setting the field `field` of the HASH `hash` to `t` (a time in ms) unless it holds a later
 * time: the `lastUsedAt` update of both layouts. Each argument is a Lua expression.
 */
const keepLater = (hash: string, field: string, t: string) =>
  `local cur = redis.call('HGET', ${hash}, ${field})
    if not cur or tonumber(cur) < tonumber(${t}) then redis.call('HSET', ${hash}, ${field}, ${t}) end`

/** Batched `lastUsedAt` over records of one bucket: keeps the later time; skips gone records. */
export const KEY_TOUCH = `-- KEYS[i]  record i: HASH j, u
-- ARGV[i]  record i's lastUsedAt (ms)
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    ${keepLater('KEYS[i]', "'u'", 'ARGV[i]')}
  end
end
return 1
`

/** The old layout: a key by id or by hash, `{ json, lastUsedAt | false }`, or nil. */
export const OLD_KEY_GET = `-- KEYS[1]  records: HASH id -> key JSON
-- KEYS[2]  lastUsed: HASH id -> lastUsedAt
-- KEYS[3]  byHash: HASH hash -> id
-- ARGV[1]  'id' or 'hash': what ARGV[2] is
-- ARGV[2]  the id or the hash
local id = ARGV[2]
if ARGV[1] == 'hash' then id = redis.call('HGET', KEYS[3], ARGV[2]) end
if not id then return nil end
local json = redis.call('HGET', KEYS[1], id)
if not json then return nil end
return { json, redis.call('HGET', KEYS[2], id) }
`

/** The old layout: batched `lastUsedAt`, keeping the later time; ignores unknown ids. */
export const OLD_KEY_TOUCH = `-- KEYS[1]  records: HASH id -> key JSON
-- KEYS[2]  lastUsed: HASH id -> lastUsedAt
-- ARGV[2i-1], ARGV[2i]  update i: id, lastUsedAt (ms)
for i = 1, #ARGV - 1, 2 do
  local id = ARGV[i]
  if redis.call('HEXISTS', KEYS[1], id) == 1 then
    ${keepLater('KEYS[2]', 'id', 'ARGV[i + 1]')}
  end
end
return 1
`

/**
 * The old layout: deletes a key moved to the new one, with its index entries, if its JSON still
 * equals what was moved: 1, or 0.
 */
export const OLD_KEY_UNRECORD = `-- KEYS[1]  records: HASH id -> key JSON
-- KEYS[2]  lastUsed: HASH id -> lastUsedAt
-- KEYS[3]  byHash: HASH hash -> id
-- KEYS[4]  the account's index (ZSET)
-- ARGV[1]  id
-- ARGV[2]  the key's hash
-- ARGV[3]  the JSON that was moved
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[3] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
if redis.call('HGET', KEYS[3], ARGV[2]) == ARGV[1] then redis.call('HDEL', KEYS[3], ARGV[2]) end
redis.call('ZREM', KEYS[4], ARGV[1])
return 1
`
