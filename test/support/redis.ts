/**
 * @module test/support/redis
 *
 * For tollbooth's own tests (not exported): a connection to the test Redis (`REDIS_URL`,
 * default `redis://127.0.0.1:6379`) with fail-fast options, a fresh key prefix per test and
 * its cleanup (`prefixPerTest`), and the Redis Cluster slot of a key. With
 * `TOLLBOOTH_REQUIRE_SERVICES=1` an unreachable Redis fails the suite instead of skipping it.
 */

import { Redis, type RedisOptions } from 'ioredis'
import { afterEach } from 'vitest'
import { redisStorage } from '../../adapters/redis/index.js'

export const REDIS_URL = process.env['REDIS_URL'] ?? 'redis://127.0.0.1:6379'

/** The client options the README recommends: a Redis outage gives fast errors, never a hang. */
export const FAIL_FAST: RedisOptions = {
  maxRetriesPerRequest: 1,
  enableOfflineQueue: false,
  autoResendUnfulfilledCommands: false,
  connectTimeout: 2000,
  commandTimeout: 2000,
}

/**
 * Resolves once `client` is ready: at once if it already is (a `once('ready')` registered after
 * the event never fires: a fault test's hook timed out that way on a loaded machine).
 */
export function ready(client: Pick<Redis, 'status' | 'once'>): Promise<void> {
  if (client.status === 'ready') return Promise.resolve()
  return new Promise((resolve) => client.once('ready', () => resolve()))
}

/**
 * Connects (and waits for `ready`); null when Redis is unreachable, unless services are
 * required, then it throws.
 */
export async function connectRedis(
  url = REDIS_URL,
  options: RedisOptions = {},
): Promise<Redis | null> {
  const client = new Redis(url, { ...FAIL_FAST, lazyConnect: true, ...options })
  client.on('error', () => {})
  try {
    await client.connect()
    await client.ping()
    return client
  } catch (err) {
    client.disconnect()
    if (process.env['TOLLBOOTH_REQUIRE_SERVICES'] === '1')
      throw new Error(
        `Redis is required (TOLLBOOTH_REQUIRE_SERVICES=1) but ${url} is unreachable`,
        {
          cause: err,
        },
      )
    return null
  }
}

/** A key prefix no other test uses. */
export function testPrefix(tag = 'test'): string {
  return `tbtest:${tag}:${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}:`
}

/** Deletes every key under `prefix` (SCAN + DEL); returns how many. */
export async function deletePrefix(client: Redis, prefix: string): Promise<number> {
  let cursor = '0'
  let n = 0
  do {
    const [next, keys] = await client.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000)
    cursor = next
    if (keys.length > 0) n += await client.del(...keys)
  } while (cursor !== '0')
  return n
}

/**
 * Fresh key prefixes for the tests of the suite it is called in: `newPrefix(tag)` gives one, and
 * every prefix given is deleted after its test, whatever the outcome.
 */
export function prefixPerTest(client: Redis): (tag: string) => string {
  const used: string[] = []
  afterEach(async () => {
    for (const p of used.splice(0)) await deletePrefix(client, p)
  })
  return (tag) => {
    const p = testPrefix(tag)
    used.push(p)
    return p
  }
}

/** A storage fixture for the conformance suite: own prefix, cleaned up after the test. */
export function redisFixture(client: Redis) {
  return async () => {
    const prefix = testPrefix('conf')
    const storage = redisStorage({ client, keyPrefix: prefix })
    return {
      storage,
      cleanup: async () => {
        await storage.close?.()
        await deletePrefix(client, prefix)
      },
    }
  }
}

/** The Redis Cluster slot of a key (CRC16/XMODEM of its hash tag, mod 16384). */
export function keySlot(key: string): number {
  const open = key.indexOf('{')
  let tagged = key
  if (open !== -1) {
    const close = key.indexOf('}', open + 1)
    if (close > open + 1) tagged = key.slice(open + 1, close)
  }
  let crc = 0
  for (const byte of Buffer.from(tagged)) {
    crc ^= byte << 8
    for (let i = 0; i < 8; i++)
      crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff
  }
  return crc % 16384
}

/**
 * Resolves once the change feed of `storage` has delivered every message published before
 * this call: a marker published now arrives after them (one channel, in order). A test that
 * counts a warm instance's commands waits for it, or a key's or account's change published
 * by its setup may reach the caches (and empty an entry) during the count.
 */
export async function feedDelivered(storage: {
  changes?: {
    publish(message: string): Promise<void>
    subscribe(listener: (message: string) => void): Promise<() => void>
  }
}): Promise<void> {
  const changes = storage.changes!
  const marker = `test-marker:${Math.random().toString(36).slice(2)}`
  let heard!: () => void
  const arrived = new Promise<void>((resolve) => {
    heard = resolve
  })
  const off = await changes.subscribe((m) => {
    if (m === marker) heard()
  })
  await changes.publish(marker)
  await arrived
  off()
}
