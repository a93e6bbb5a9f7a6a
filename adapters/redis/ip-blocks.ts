/**
 * @module tollbooth/redis/ip-blocks
 *
 * The failed-auth guard's counts and blocks on Redis, all under the `{ipblocks}` hash tag so
 * each script touches one slot: `P{ipblocks}:n:<ip>` (a HASH: the window's start `s` and its
 * failures `n`, by the caller's clock), `P{ipblocks}:until` (ZSET, address -> end of its block) and
 * `P{ipblocks}:ips` (ZSET, score 0, for listing by address). Ended blocks leave both ZSETs
 * at the next block made or list read; only addresses that already failed many times in one
 * instance ever get here (the core counts in process first).
 */

import type { IpBlock, IpBlockStore } from '../../src/internal.js'
import type { Ctx } from './store.js'

/** Drops ended blocks (a few per call), for the two scripts that follow. */
const PRUNE = `
local function prune(now)
  local ended = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 64)
  if #ended > 0 then
    redis.call('ZREM', KEYS[2], unpack(ended))
    redis.call('ZREM', KEYS[3], unpack(ended))
  end
end
`

/**
 * KEYS: count, until, ips. ARGV: ip, count, now, limit, windowMs, blockMs.
 * Returns the end of the block in force, or false.
 */
export const IP_FAIL = `${PRUNE}
local ip, count, now = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local ends_at = tonumber(redis.call('ZSCORE', KEYS[2], ip))
if ends_at and ends_at > now then return tostring(ends_at) end
local start = tonumber(redis.call('HGET', KEYS[1], 's'))
local n = count
if start == nil or start + tonumber(ARGV[5]) <= now then
  redis.call('HSET', KEYS[1], 's', ARGV[3], 'n', count)
  -- The window is the caller's clock; the TTL only tidies up, with a minute of slack.
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[5]) + 60000)
else
  n = redis.call('HINCRBY', KEYS[1], 'n', count)
end
if n < tonumber(ARGV[4]) then return false end
redis.call('DEL', KEYS[1])
prune(now)
local ends = now + tonumber(ARGV[6])
redis.call('ZADD', KEYS[2], ends, ip)
redis.call('ZADD', KEYS[3], 0, ip)
return tostring(ends)
`

/**
 * KEYS: -, until, ips. ARGV: now, after (exclusive, '' for the start), limit.
 * Returns address, end, address, end, ...
 */
export const IP_LIST = `${PRUNE}
local now = tonumber(ARGV[1])
prune(now)
local from = ARGV[2] == '' and '-' or '(' .. ARGV[2]
local out = {}
local ips = redis.call('ZRANGEBYLEX', KEYS[3], from, '+', 'LIMIT', 0, tonumber(ARGV[3]))
for _, ip in ipairs(ips) do
  local ends_at = tonumber(redis.call('ZSCORE', KEYS[2], ip))
  if ends_at and ends_at > now then
    out[#out + 1] = ip
    out[#out + 1] = tostring(ends_at)
  end
end
return out
`

/** KEYS: count, until, ips. ARGV: ip, now. Returns 1 when a block was in force. */
export const IP_LIFT = `
local ends_at = tonumber(redis.call('ZSCORE', KEYS[2], ARGV[1]))
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
if ends_at and ends_at > tonumber(ARGV[2]) then return 1 end
return 0
`

export function redisIpBlocks({ client, prefix }: Ctx): IpBlockStore {
  const tag = `${prefix}{ipblocks}`
  const keys = (ip: string) => [`${tag}:n:${ip}`, `${tag}:until`, `${tag}:ips`] as const
  return {
    async fail(ip, count, now, rule) {
      const r = await client.tollboothIpFail(
        3,
        ...keys(ip),
        ip,
        count,
        now,
        rule.limit,
        rule.windowMs,
        rule.blockMs,
      )
      return r === null ? null : Number(r)
    },
    async get(ip, now) {
      const until = await client.zscore(`${tag}:until`, ip)
      return until !== null && Number(until) > now ? { ip, until: Number(until) } : null
    },
    async list(now, { limit, cursor }) {
      // One more than asked, to know whether a next page exists (ended blocks are skipped).
      const flat = await client.tollboothIpList(3, ...keys(''), now, cursor ?? '', limit + 1)
      const data: IpBlock[] = []
      for (let i = 0; i < flat.length; i += 2)
        data.push({ ip: flat[i]!, until: Number(flat[i + 1]) })
      const more = data.length > limit
      if (more) data.length = limit
      return { data, nextCursor: more ? data[data.length - 1]!.ip : null }
    },
    async lift(ip, now) {
      return (await client.tollboothIpLift(3, ...keys(ip), ip, now)) === 1
    },
  }
}
