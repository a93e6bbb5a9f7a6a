import { describe, expect, it } from 'vitest'
import { type CachedKey, createKeyCache } from './cache.js'

const entry = (id: string) => ({ record: { id } }) as unknown as CachedKey

describe('key cache memo', () => {
  const opts = { ttlMs: 1000, negativeTtlMs: 100, max: 3, memoizeKeys: true }

  it('serves a remembered key string without its hash, until the entry expires', () => {
    let t = 0
    const c = createKeyCache(opts, () => t)
    expect(c.getByKey('k1', t)).toBeUndefined()
    c.set('h1', entry('a'))
    c.remember('k1', 'h1')
    expect(c.getByKey('k1', t)?.record.id).toBe('a')
    t = 999
    expect(c.getByKey('k1', t)?.record.id).toBe('a')
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
    expect(c.getByKey('k1', t)?.record.id).toBe('b')
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
    expect(c.getByKey('k2b', t)?.record.id).toBe('b')
    expect(c.get('h1')?.record.id).toBe('a')
  })

  it('memoizes nothing with memoizeKeys: false', () => {
    const c = createKeyCache({ ...opts, memoizeKeys: false }, () => 0)
    c.set('h1', entry('a'))
    c.remember('k1', 'h1')
    expect(c.getByKey('k1', 0)).toBeUndefined()
    expect(c.get('h1')?.record.id).toBe('a')
  })
})
