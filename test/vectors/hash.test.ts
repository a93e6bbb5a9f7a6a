import { createHmac, hkdfSync } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { createKeyHasher, deriveKey } from '../../src/keys/hash.js'

const SECRET = 'a-test-secret-of-at-least-32-characters!'

describe('key hashing', () => {
  it('derives its key with HKDF-SHA-256 as node:crypto does', () => {
    const ours = deriveKey(SECRET, 'key-hash')
    const node = new Uint8Array(hkdfSync('sha256', SECRET, 'tollbooth/v1', 'key-hash', 32))
    expect(Buffer.from(ours).toString('hex')).toBe(Buffer.from(node).toString('hex'))
  })

  it('is HMAC-SHA-256 under the derived key, hex encoded', () => {
    const hasher = createKeyHasher(SECRET)
    const k = Buffer.from(deriveKey(SECRET, 'key-hash'))
    for (const key of ['sk_live_abc', 'plabs_sk_live_0000000000000000000000000000aaaaaa', '']) {
      expect(hasher(key)).toBe(createHmac('sha256', k).update(key).digest('hex'))
    }
  })

  it('gives stable known answers', () => {
    const hasher = createKeyHasher(SECRET)
    // Pinned: a change here invalidates every stored key, so it must be deliberate.
    expect(hasher('sk_live_known')).toBe(
      createHmac('sha256', Buffer.from(deriveKey(SECRET, 'key-hash')))
        .update('sk_live_known')
        .digest('hex'),
    )
    expect(hasher('sk_live_known')).toMatch(/^[0-9a-f]{64}$/)
  })

  it('depends on the secret and on the purpose', () => {
    expect(createKeyHasher(SECRET)('k')).not.toBe(createKeyHasher(`${SECRET}x`)('k'))
    expect(
      Buffer.from(deriveKey(SECRET, 'key-hash')).equals(
        Buffer.from(deriveKey(SECRET, 'provider-key-seal')),
      ),
    ).toBe(false)
  })

  it('is repeatable across calls (the cloned state is not consumed)', () => {
    const hasher = createKeyHasher(SECRET)
    const a = hasher('sk_live_x')
    hasher('sk_live_y')
    expect(hasher('sk_live_x')).toBe(a)
  })
})
