import { describe, expect, it } from 'vitest'
import { type CachedKey, createKeyCache, NEVER, RECENT_DROPS } from './cache.js'

const entry = (id: string) => ({ info: { id } }) as unknown as CachedKey

describe('key cache memo', () => {
  const opts = { ttlMs: 1000, negativeTtlMs: 100, max: 3, memoizeKeys: true, feedDownTtlMs: 200 }

  it('serves a remembered key string without its hash, until the entry expires', () => {
    let t = 0
    const c = createKeyCache(opts, () => t)
    expect(c.getByKey('k1', t)).toBeUndefined()
    c.set('h1', entry('a'))
    c.remember('k1', 'h1')
    expect(c.getByKey('k1', t)?.info.id).toBe('a')
    t = 999
    expect(c.getByKey('k1', t)?.info.id).toBe('a')
    t = 1000
    expect(c.getByKey('k1', t)).toBeUndefined()
  })

  it('remembers a miss for the negative TTL only', () => {
    let t = 0
    const c = createKeyCache(opts, () => t)
    c.set('h0', null)
    c.remember('k0', 'h0')
    expect(c.getByKey('k0', t)).toBeNull()
    t = 100
    expect(c.getByKey('k0', t)).toBeUndefined()
  })

  it('forgets a key string whose entry was deleted, replaced, evicted or cleared', () => {
    const t = 0
    const c = createKeyCache(opts, () => t)
    c.set('h1', entry('a'))
    c.remember('k1', 'h1')
    c.delete('h1')
    expect(c.getByKey('k1', t)).toBeUndefined()
    c.set('h1', entry('a'))
    c.remember('k1', 'h1')
    c.set('h1', entry('b'))
    expect(c.getByKey('k1', t)).toBeUndefined()
    c.remember('k1', 'h1')
    expect(c.getByKey('k1', t)?.info.id).toBe('b')
    for (const h of ['h2', 'h3', 'h4']) c.set(h, entry(h)) // max 3: h1 is evicted
    expect(c.get('h1')).toBeUndefined()
    expect(c.getByKey('k1', t)).toBeUndefined()
    c.remember('k3', 'h3')
    c.clear()
    expect(c.getByKey('k3', t)).toBeUndefined()
  })

  it('stays bounded: a full memo starts over, the LRU keeps its entries', () => {
    const t = 0
    const c = createKeyCache({ ...opts, max: 2 }, () => t)
    c.set('h1', entry('a'))
    c.set('h2', entry('b'))
    c.remember('k1', 'h1')
    c.remember('k2', 'h2')
    c.remember('k2b', 'h2')
    expect(c.getByKey('k1', t)).toBeUndefined()
    expect(c.getByKey('k2b', t)?.info.id).toBe('b')
    expect(c.get('h1')?.info.id).toBe('a')
  })

  it('memoizes nothing with memoizeKeys: false', () => {
    const c = createKeyCache({ ...opts, memoizeKeys: false }, () => 0)
    c.set('h1', entry('a'))
    c.remember('k1', 'h1')
    expect(c.getByKey('k1', 0)).toBeUndefined()
    expect(c.get('h1')?.info.id).toBe('a')
  })
})

describe('drops during a lookup', () => {
  const opts = { ttlMs: 1000, negativeTtlMs: 100, max: 3, memoizeKeys: true, feedDownTtlMs: 200 }

  it('tells a drop of the hash looked up since a generation, any other drop not', () => {
    const c = createKeyCache(opts, () => 0)
    const g = c.generation()
    expect(c.droppedSince('h1', g)).toBe(false)
    c.delete('h2')
    expect(c.droppedSince('h1', g)).toBe(false)
    c.delete('h1')
    expect(c.droppedSince('h1', g)).toBe(true)
    expect(c.droppedSince('h1', c.generation())).toBe(false)
  })

  it('takes more drops than it remembers, or a clear, as a drop of every hash', () => {
    const c = createKeyCache(opts, () => 0)
    let g = c.generation()
    for (let i = 0; i < RECENT_DROPS; i++) c.delete(`other${i}`)
    expect(c.droppedSince('h1', g)).toBe(false)
    c.delete('other')
    expect(c.droppedSince('h1', g)).toBe(true)
    g = c.generation()
    c.clear()
    expect(c.droppedSince('h1', g)).toBe(true)
    g = c.generation()
    c.feed(false)
    c.feed(true)
    expect(c.droppedSince('h1', g)).toBe(true)
  })
})

describe('key cache while the change feed is down', () => {
  const opts = { ttlMs: 1000, negativeTtlMs: 100, max: 10, memoizeKeys: true, feedDownTtlMs: 200 }

  it('serves entries for feedDownTtlMs at most while down, and empties when the feed is back', () => {
    let t = 0
    const c = createKeyCache(opts, () => t)
    c.set('h1', entry('a'))
    c.remember('k1', 'h1')
    t = 150
    c.feed(false)
    // Cached 150 ms ago: still within the shortened bound.
    expect(c.get('h1')?.info.id).toBe('a')
    expect(c.getByKey('k1', t)?.info.id).toBe('a')
    c.set('h2', entry('b'))
    t = 200
    // 200 ms old: a revocation may have been missed; not served (by hash nor by key string).
    expect(c.getByKey('k1', t)).toBeUndefined()
    expect(c.get('h1')).toBeUndefined()
    expect(c.get('h2')?.info.id).toBe('b')
    t = 349
    expect(c.get('h2')?.info.id).toBe('b')
    t = 350
    expect(c.get('h2')).toBeUndefined()
    c.set('h3', entry('c'))
    c.remember('k3', 'h3')
    // Back: everything cached may have missed a message, so nothing is kept.
    c.feed(true)
    expect(c.get('h3')).toBeUndefined()
    expect(c.getByKey('k3', t)).toBeUndefined()
    // Delivering again: the TTL alone bounds new entries.
    c.set('h4', entry('d'))
    t = 350 + 999
    expect(c.get('h4')?.info.id).toBe('d')
  })

  it('never serves longer than ttlMs, even with a larger feedDownTtlMs', () => {
    let t = 0
    const c = createKeyCache({ ...opts, feedDownTtlMs: 5000 }, () => t)
    c.feed(false)
    c.set('h1', entry('a'))
    t = 1000
    expect(c.get('h1')).toBeUndefined()
  })
})

describe("the cache's clock", () => {
  const opts = { ttlMs: 1000, negativeTtlMs: 100, max: 10, memoizeKeys: true, feedDownTtlMs: 200 }
  const DAY = 86_400_000

  it('keeps times as small integers counted from its base, and moves the base with an empty cache', () => {
    const T = Date.UTC(2026, 11, 6)
    let t = T
    const c = createKeyCache(opts, () => t)
    c.set('h1', entry('a'))
    c.remember('k1', 'h1')
    const e = c.get('h1')!
    // Counted from the first time asked for, not from 1970: V8 keeps them in the entry itself.
    expect(e.cachedAt).toBe(0)
    expect(e.expiresAt).toBe(1000)
    t = T + 500.75
    expect(c.getByKey('k1', t)?.info.id).toBe('a')
    // Six days on (a span from the base): the base moves and the cache, counted from the old
    // one, empties; what is cached next counts from the new base and is served as before.
    t = T + 7 * DAY
    expect(c.getByKey('k1', t)).toBeUndefined()
    expect(c.get('h1')).toBeUndefined()
    c.set('h2', entry('b'))
    c.remember('k2', 'h2')
    expect(c.get('h2')!.expiresAt).toBe(1000)
    t += 999
    expect(c.getByKey('k2', t)?.info.id).toBe('b')
    t += 1
    expect(c.getByKey('k2', t)).toBeUndefined()
    // A clock set back as far empties it too.
    c.set('h3', entry('c'))
    c.remember('k3', 'h3')
    t -= 30 * DAY
    expect(c.getByKey('k3', t)).toBeUndefined()
  })

  it('reads a stored lastUsedAt from the base, older than a span as never', () => {
    const T = Date.UTC(2026, 11, 6)
    const c = createKeyCache(false, () => T)
    expect(c.since(T - 5000, T)).toBe(-5000)
    expect(c.since(T + 0.5, T)).toBe(0)
    expect(c.since(null, T)).toBe(NEVER)
    expect(c.since(T - 30 * DAY, T)).toBe(NEVER)
    expect(c.since(T + 30 * DAY, T)).toBe(2 ** 29)
  })

  it("writes lastUsedAt once a resolution, at a key's first use, and after a stored time older than a span", () => {
    const T = Date.UTC(2026, 11, 6)
    const c = createKeyCache(opts, () => T)
    const e = { touchedAt: c.since(T - 30_000, T) } as CachedKey
    expect(c.touch(e, T, 60_000)).toBe(false)
    expect(c.touch(e, T + 30_000, 60_000)).toBe(true)
    expect(c.touch(e, T + 89_999, 60_000)).toBe(false)
    expect(c.touch(e, T + 90_000, 60_000)).toBe(true)
    // Never used, or last used longer ago than the cache can count: due whatever the resolution.
    for (const stored of [null, T - 40 * DAY]) {
      const f = { touchedAt: c.since(stored, T) } as CachedKey
      expect(c.touch(f, T, 365 * DAY)).toBe(true)
      expect(c.touch(f, T + 1, 365 * DAY)).toBe(false)
    }
  })
})
