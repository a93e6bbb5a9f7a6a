/**
 * @module tollbooth/redis/eviction
 *
 * Managed Redis (ElastiCache, Azure Cache, Redis Cloud) often runs with `maxmemory` and an
 * eviction policy (`volatile-lru`, `allkeys-lru`, …) by default: under memory pressure Redis
 * then deletes keys to make room, and tollbooth's are its state, not a cache. An evicted
 * counter restarts from zero (a spent quota or rate limit admits again, a credit hold is
 * handed back), an evicted `Idempotency-Key` or billing marker applies twice, and under an
 * `allkeys-*` policy a key record or recorded usage goes too. So, as job queues do, the
 * storage reads the server's `maxmemory_policy` (from `INFO memory`, which managed services
 * allow where they block `CONFIG`) once connected, and again after each reconnect (a failover
 * may reach a server configured otherwise), and warns (`TOLLBOOTH_REDIS_EVICTION`) unless it
 * is `noeviction` or `maxmemory` is 0 (no limit: nothing is evicted, whatever the policy). A
 * server that refuses INFO is left unchecked.
 */

import { warnOnce } from '../../src/internal.js'
import type { RedisClient } from './store.js'

/** The eviction policy in an `INFO memory` reply; undefined when it names none. */
export function evictionPolicy(info: string): string | undefined {
  return /^maxmemory_policy:(\S+)/m.exec(info)?.[1]
}

/**
 * Warns once unless `info` (an `INFO memory` reply) shows the `noeviction` policy, or
 * `maxmemory:0`: no limit, so Redis evicts nothing whatever its policy (the default of a
 * self-hosted Redis). A reply without `maxmemory` is judged by its policy alone.
 */
function check(info: string): void {
  const policy = evictionPolicy(info)
  if (policy === undefined || policy === 'noeviction') return
  const limit = /^maxmemory:(\d+)/m.exec(info)?.[1]
  if (limit === '0') return
  warnOnce(
    'TOLLBOOTH_REDIS_EVICTION',
    `the Redis server's maxmemory-policy is ${policy}${limit === undefined ? '' : ` (with maxmemory ${limit})`}: under memory pressure it deletes tollbooth's counters, credit holds and markers (and under allkeys-* its key records and usage), so spent limits admit again; set maxmemory-policy noeviction (a parameter group on ElastiCache, a setting on managed services)`,
  )
}

const watched = new WeakSet<RedisClient>()

/**
 * Checks the eviction policy of every server `client` talks to (each master of a cluster)
 * now if it is ready, and whenever it becomes ready again. Nothing here fails: a reply
 * refused (INFO not allowed) or lost leaves the server unchecked.
 */
export function watchEviction(client: RedisClient): void {
  // One listener per client, however many storages share it.
  if (watched.has(client)) return
  watched.add(client)
  const run = () => {
    const nodes = 'nodes' in client ? client.nodes('master') : [client]
    for (const n of nodes) n.info('memory').then(check, () => {})
  }
  client.on('ready', run)
  if (client.status === 'ready') run()
}
