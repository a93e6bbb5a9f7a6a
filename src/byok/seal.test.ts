/**
 * @module byok/seal.test
 *
 * Provider keys at rest: JWE `dir` + `A256GCM` under a key derived from the secret, bound to
 * the account and provider.
 */

import { decodeProtectedHeader } from 'jose'
import { describe, expect, it } from 'vitest'
import { deriveKey } from '../keys/hash.js'
import { createSealer } from './seal.js'

const A = createSealer(deriveKey('seal-test-secret-aaaaaaaaaaaaaaaaaaaaaaaa', 'provider-key-seal'))
const B = createSealer(deriveKey('seal-test-secret-bbbbbbbbbbbbbbbbbbbbbbbb', 'provider-key-seal'))
const PLAIN = 'sk_elevenlabs_0123456789abcdef'

describe('sealer', () => {
  it('round-trips, with a fresh IV every time and no plaintext in the output', async () => {
    const one = await A.seal(PLAIN, 'acct_1', 'elevenlabs')
    const two = await A.seal(PLAIN, 'acct_1', 'elevenlabs')
    expect(one).not.toBe(two)
    expect(one.split('.')).toHaveLength(5)
    expect(one.split('.')[1]).toBe('') // dir: no encrypted key
    expect(one).not.toContain(PLAIN)
    expect(one).not.toContain(Buffer.from(PLAIN).toString('base64url').slice(0, 12))
    expect(decodeProtectedHeader(one)).toMatchObject({ alg: 'dir', enc: 'A256GCM' })
    expect(await A.open(one, 'acct_1', 'elevenlabs')).toBe(PLAIN)
  })

  it('does not open under another secret', async () => {
    const sealed = await A.seal(PLAIN, 'acct_1', 'elevenlabs')
    await expect(B.open(sealed, 'acct_1', 'elevenlabs')).rejects.toThrow()
  })

  it('does not open for another account or provider', async () => {
    const sealed = await A.seal(PLAIN, 'acct_1', 'elevenlabs')
    await expect(A.open(sealed, 'acct_2', 'elevenlabs')).rejects.toThrow(/another account/)
    await expect(A.open(sealed, 'acct_1', 'openai')).rejects.toThrow(/another account/)
  })

  it('does not open a tampered value', async () => {
    const sealed = await A.seal(PLAIN, 'acct_1', 'elevenlabs')
    const parts = sealed.split('.')
    const ct = Buffer.from(parts[3]!, 'base64url')
    ct[0]! ^= 1
    parts[3] = ct.toString('base64url')
    await expect(A.open(parts.join('.'), 'acct_1', 'elevenlabs')).rejects.toThrow()
  })
})
