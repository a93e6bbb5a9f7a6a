/**
 * @module byok/service.test
 *
 * `tb.providerKeys`: store (sealed), list (masked), get, verify through `options.verifiers`,
 * delete; the stored value holds no plaintext and does not open under another secret; no
 * answer or error ever carries the provider key.
 */

import { describe, expect, it } from 'vitest'
import { OTHER_SECRET, SECRET, setup, T0 } from '../../test/metering/helpers.js'
import { manualClock } from '../clock.js'
import {
  createTollbooth,
  InvalidRequestError,
  NotFoundError,
  NotImplementedError,
} from '../index.js'

const EL = 'sk_elevenlabs_live_abcdef0123456789WXYZ'
const OA = 'sk-openai-proj-0123456789abcdefghij'

describe('provider keys', () => {
  it('stores sealed: storage holds no plaintext, list is masked, get opens it', async () => {
    const { tb } = await setup()
    const view = await tb.providerKeys.store('acct_1', { provider: 'ElevenLabs', apiKey: EL })
    expect(view).toEqual({
      provider: 'elevenlabs',
      masked: '••••WXYZ',
      createdAt: T0,
      verifiedAt: null,
    })

    const raw = await tb.storage.secrets.get('acct_1', 'elevenlabs')
    expect(raw).not.toBeNull()
    expect(JSON.stringify(raw)).not.toContain(EL)
    expect(JSON.stringify(raw)).not.toContain(EL.slice(0, 16))
    expect(raw!.sealed.split('.')).toHaveLength(5)
    const header = JSON.parse(Buffer.from(raw!.sealed.split('.')[0]!, 'base64url').toString())
    expect(header).toMatchObject({ alg: 'dir', enc: 'A256GCM' })

    await tb.providerKeys.store('acct_1', { provider: 'openai', apiKey: OA })
    const list = await tb.providerKeys.list('acct_1')
    expect(list.map((k) => k.provider)).toEqual(['elevenlabs', 'openai'])
    expect(JSON.stringify(list)).not.toContain(EL)
    expect(JSON.stringify(list)).not.toContain(OA)
    expect(await tb.providerKeys.list('acct_2')).toEqual([])

    expect(await tb.providerKeys.get('acct_1', 'elevenlabs')).toBe(EL)
    expect(await tb.providerKeys.get('acct_1', 'ElevenLabs')).toBe(EL)
    expect(await tb.providerKeys.get('acct_2', 'elevenlabs')).toBeUndefined()
  })

  it('a tollbooth with another secret cannot open the stored value; the same secret can', async () => {
    const { tb, clock } = await setup()
    await tb.providerKeys.store('acct_1', { provider: 'elevenlabs', apiKey: EL })
    const other = createTollbooth({ secret: OTHER_SECRET, clock, storage: tb.storage })
    await expect(other.providerKeys.get('acct_1', 'elevenlabs')).rejects.toThrow()
    const err = await other.providerKeys.get('acct_1', 'elevenlabs').catch((e) => e)
    expect(String(err.message)).not.toContain(EL)
    const twin = createTollbooth({ secret: SECRET, clock, storage: tb.storage })
    expect(await twin.providerKeys.get('acct_1', 'elevenlabs')).toBe(EL)
  })

  it('a sealed value copied to another account does not open there', async () => {
    const { tb } = await setup()
    await tb.providerKeys.store('acct_1', { provider: 'elevenlabs', apiKey: EL })
    const raw = (await tb.storage.secrets.get('acct_1', 'elevenlabs'))!
    await tb.storage.secrets.put({ ...raw, accountId: 'acct_2' })
    await expect(tb.providerKeys.get('acct_2', 'elevenlabs')).rejects.toThrow()
  })

  it('storing again replaces the key', async () => {
    const { tb } = await setup()
    await tb.providerKeys.store('acct_1', { provider: 'elevenlabs', apiKey: EL })
    await tb.providerKeys.store('acct_1', { provider: 'elevenlabs', apiKey: `${EL}-v2xx` })
    expect(await tb.providerKeys.get('acct_1', 'elevenlabs')).toBe(`${EL}-v2xx`)
    expect(await tb.providerKeys.list('acct_1')).toHaveLength(1)
  })

  it('refuses bad input with a 400 naming the field, never echoing the key', async () => {
    const { tb } = await setup()
    const bad: Array<[unknown, RegExp]> = [
      [{ provider: 'acme', apiKey: EL }, /provider/],
      [{ provider: 'elevenlabs', apiKey: 'short' }, /apiKey/],
      [{ provider: 'elevenlabs' }, /apiKey/],
      [{ provider: 'elevenlabs', apiKey: EL, extra: 1 }, /extra/],
    ]
    for (const [input, field] of bad) {
      const err = await tb.providerKeys.store('acct_1', input as never).catch((e) => e)
      expect(err).toBeInstanceOf(InvalidRequestError)
      expect(err.status).toBe(400)
      expect(err.message).toMatch(field)
      expect(JSON.stringify({ m: err.message, i: err.issues })).not.toContain(EL)
    }
    const short = await tb.providerKeys
      .store('acct_1', { provider: 'elevenlabs', apiKey: 'short' })
      .catch((e) => e)
    expect(JSON.stringify(short.issues)).not.toContain('short"')
    const acct = await tb.providerKeys
      .store('a/b', { provider: 'openai', apiKey: OA })
      .catch((e) => e)
    expect(acct.message).toMatch(/accountId/)
    expect(await tb.providerKeys.list('acct_1')).toEqual([])
  })

  it('verify runs the configured verifier and records when it passed', async () => {
    const clock = manualClock(T0)
    const seen: string[] = []
    const tb = createTollbooth({
      secret: SECRET,
      clock,
      verifiers: {
        elevenlabs: async (k: string) => {
          seen.push(k)
          return k === EL
        },
        openai: () => {
          throw new Error(`upstream said no to ${OA}`)
        },
      },
    })
    await tb.providerKeys.store('acct_1', { provider: 'elevenlabs', apiKey: EL })
    clock.advance(5_000)
    expect(await tb.providerKeys.verify('acct_1', 'elevenlabs')).toEqual({
      provider: 'elevenlabs',
      valid: true,
      verifiedAt: T0 + 5_000,
    })
    expect(seen).toEqual([EL])
    expect((await tb.providerKeys.list('acct_1'))[0]?.verifiedAt).toBe(T0 + 5_000)

    await tb.providerKeys.store('acct_1', { provider: 'elevenlabs', apiKey: 'sk_wrong_key_000' })
    expect((await tb.providerKeys.verify('acct_1', 'elevenlabs')).valid).toBe(false)

    // A verifier that throws means invalid; its message (which may hold the key) is not passed on.
    await tb.providerKeys.store('acct_1', { provider: 'openai', apiKey: OA })
    expect(await tb.providerKeys.verify('acct_1', 'openai')).toEqual({
      provider: 'openai',
      valid: false,
      verifiedAt: null,
    })
    await expect(tb.providerKeys.verify('acct_1', 'groq')).rejects.toBeInstanceOf(NotFoundError)
    await tb.providerKeys.store('acct_1', { provider: 'groq', apiKey: 'gsk_0123456789' })
    await expect(tb.providerKeys.verify('acct_1', 'groq')).rejects.toBeInstanceOf(
      NotImplementedError,
    )
  })

  it('delete removes the key; deleting again is a 404', async () => {
    const { tb } = await setup()
    await tb.providerKeys.store('acct_1', { provider: 'elevenlabs', apiKey: EL })
    await tb.providerKeys.delete('acct_1', 'elevenlabs')
    expect(await tb.providerKeys.list('acct_1')).toEqual([])
    expect(await tb.storage.secrets.get('acct_1', 'elevenlabs')).toBeNull()
    await expect(tb.providerKeys.delete('acct_1', 'elevenlabs')).rejects.toBeInstanceOf(
      NotFoundError,
    )
  })

  it('knows the ten providers of seed 001 by default, and custom ones by option', async () => {
    const { tb } = await setup()
    for (const p of [
      'elevenlabs',
      'openai',
      'anthropic',
      'cartesia',
      'deepgram',
      'fishaudio',
      'inworld',
      'resembleai',
      'groq',
      'huggingface',
    ])
      await tb.providerKeys.store('acct_1', { provider: p, apiKey: `${p}-key-0123456789` })
    expect(await tb.providerKeys.list('acct_1')).toHaveLength(10)
    const custom = createTollbooth({ secret: SECRET, providers: { acme: 'X-Acme-Key' } })
    await custom.providerKeys.store('acct_1', { provider: 'acme', apiKey: 'acme-0123456789' })
    await expect(
      custom.providerKeys.store('acct_1', { provider: 'openai', apiKey: OA }),
    ).rejects.toBeInstanceOf(InvalidRequestError)
  })
})
