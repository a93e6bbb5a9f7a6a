import { describe, expect, it } from 'vitest'
import { BASE62 } from './base62.js'
import { crc32 } from './crc32.js'
import { CHECKSUM_LENGTH, generateKey, isWellFormedKey, keyStart, RANDOM_LENGTH } from './format.js'

const PREFIX = 'plabs_sk_live_'

describe('key format', () => {
  it('round-trips 10,000 random keys', () => {
    const seen = new Set<string>()
    for (let i = 0; i < 10_000; i++) {
      const key = generateKey(PREFIX)
      expect(key.length).toBe(PREFIX.length + RANDOM_LENGTH + CHECKSUM_LENGTH)
      expect(isWellFormedKey(key, PREFIX)).toBe(true)
      seen.add(key)
    }
    expect(seen.size).toBe(10_000)
  })

  it('refuses every single-character typo', () => {
    for (let n = 0; n < 20; n++) {
      const key = generateKey(PREFIX)
      for (let i = 0; i < key.length; i++) {
        for (const c of BASE62 + '_-') {
          if (c === key[i]) continue
          const typo = key.slice(0, i) + c + key.slice(i + 1)
          expect(isWellFormedKey(typo, PREFIX), typo).toBe(false)
        }
      }
    }
  })

  it('refuses a wrong prefix, a wrong length and characters outside base62', () => {
    const key = generateKey(PREFIX)
    expect(isWellFormedKey(key, 'pdf_live_')).toBe(false)
    expect(isWellFormedKey(key.slice(0, -1), PREFIX)).toBe(false)
    expect(isWellFormedKey(`${key}A`, PREFIX)).toBe(false)
    expect(isWellFormedKey(`${key.slice(0, 20)}é${key.slice(21)}`, PREFIX)).toBe(false)
    expect(isWellFormedKey('', PREFIX)).toBe(false)
  })

  it('spreads random characters over the whole alphabet', () => {
    const counts = new Map<string, number>()
    for (let i = 0; i < 2_000; i++) {
      const body = generateKey('k_').slice(2, 2 + RANDOM_LENGTH)
      for (const c of body) counts.set(c, (counts.get(c) ?? 0) + 1)
    }
    expect(counts.size).toBe(62)
    const expected = (2_000 * RANDOM_LENGTH) / 62
    for (const n of counts.values()) expect(Math.abs(n - expected) / expected).toBeLessThan(0.2)
  })

  it('shows the prefix and four random characters as the start', () => {
    const key = generateKey(PREFIX)
    expect(keyStart(key, PREFIX)).toBe(key.slice(0, PREFIX.length + 4))
  })
})

describe('crc32', () => {
  it('matches the IEEE check value', () => {
    expect(crc32('123456789')).toBe(0xcbf43926)
    expect(crc32('')).toBe(0)
    expect(crc32('The quick brown fox jumps over the lazy dog')).toBe(0x414fa339)
  })
})
