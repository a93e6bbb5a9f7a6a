/**
 * @module test/management/session-lifetime
 *
 * How long a session JWT lets its bearer in, on Hono, Express and Fastify: never past
 * `maxAgeMs` after its `iat` (7 days by default), also without `exp`; never without `iat`;
 * `exp`, `nbf` and `iat` judged with a few seconds' tolerance of the issuer's clock.
 */

import { SignJWT } from 'jose'
import { afterEach, describe, expect, it } from 'vitest'
import { type ManagementOptions, managementApi } from '../../adapters/management/index.js'
import { isTollboothError, type ManualClock, type Tollbooth } from '../../src/index.js'
import { client, makeTollbooth, type Served, serveManagement, T0 } from './servers.js'

const SESSION_SECRET = 'session-secret-session-secret-session-secret'
const sec = (ms: number) => Math.floor(ms / 1000)
const DAY = 86_400_000

function token(claims: { iat?: number; exp?: number; nbf?: number }) {
  return new SignJWT({ sub: 'acct_a', ...claims })
    .setProtectedHeader({ alg: 'HS256' })
    .sign(new TextEncoder().encode(SESSION_SECRET))
}

for (const framework of ['hono', 'express', 'fastify'] as const)
  describe(`session lifetime on ${framework}`, () => {
    let tb: Tollbooth
    let clock: ManualClock
    let served: Served | undefined
    let api: ReturnType<typeof client>
    async function start(session: NonNullable<ManagementOptions['auth']>['session'] = {}) {
      ;({ tb, clock } = makeTollbooth())
      served = await serveManagement(framework, tb, {
        auth: { session: { secret: SESSION_SECRET, ...session } },
      })
      api = client(served)
    }
    afterEach(async () => {
      await served?.close()
      served = undefined
    })
    const status = async (t: string) => (await api('GET', '/keys', { token: t })).status

    it('ends a session without exp 7 days after its iat', async () => {
      await start()
      const t = await token({ iat: sec(T0) })
      expect(await status(t)).toBe(200)
      clock.set(T0 + 7 * DAY + 5000) // the last second the 5 s tolerance lets in
      expect(await status(t)).toBe(200)
      clock.set(T0 + 7 * DAY + 6000)
      const r = await api('GET', '/keys', { token: t })
      expect([r.status, r.body]).toEqual([
        401,
        {
          error: 'Session token expired: issued more than 604800 s ago (maxAgeMs)',
          code: 'unauthorized',
        },
      ])
    })

    it('ends a session at maxAgeMs after its iat even when its exp is later', async () => {
      await start({ maxAgeMs: 3_600_000 })
      const t = await token({ iat: sec(T0), exp: sec(T0 + 30 * DAY) })
      expect(await status(t)).toBe(200)
      clock.set(T0 + 3_606_000)
      expect(await status(t)).toBe(401)
    })

    it('refuses a token without iat, with or without exp', async () => {
      await start()
      for (const t of [await token({}), await token({ exp: sec(T0 + 3_600_000) })]) {
        const r = await api('GET', '/keys', { token: t })
        expect([r.status, r.body]).toEqual([
          401,
          { error: 'Invalid session token: no "iat" claim', code: 'unauthorized' },
        ])
      }
    })

    it("tolerates an issuer's clock a few seconds ahead (iat, nbf), not more", async () => {
      await start()
      const ahead = sec(T0) + 4
      expect(await status(await token({ iat: ahead, nbf: ahead }))).toBe(200)
      const r = await api('GET', '/keys', { token: await token({ iat: sec(T0) + 10 }) })
      expect([r.status, r.body.error]).toEqual([
        401,
        'Invalid session token: "iat" claim check failed',
      ])
      expect(await status(await token({ iat: sec(T0), nbf: sec(T0) + 10 }))).toBe(401)
    })

    it('takes clockToleranceMs: 0 for no tolerance', async () => {
      await start({ clockToleranceMs: 0 })
      expect(await status(await token({ iat: sec(T0), nbf: sec(T0) + 1 }))).toBe(401)
      expect(await status(await token({ iat: sec(T0) }))).toBe(200)
    })
  })

describe('session lifetime options', () => {
  it('throws a ConfigError naming a bad maxAgeMs or clockToleranceMs', () => {
    const { tb } = makeTollbooth()
    const message = (session: Record<string, unknown>) => {
      try {
        managementApi(tb, { auth: { session: { secret: SESSION_SECRET, ...session } } })
      } catch (err) {
        expect(isTollboothError(err) && err.code).toBe('config_invalid')
        return (err as Error).message
      }
      throw new Error('expected a ConfigError')
    }
    expect(message({ maxAgeMs: 0 })).toContain('options.auth.session.maxAgeMs must be an integer')
    expect(message({ maxAgeMs: 401 * DAY })).toContain('options.auth.session.maxAgeMs')
    expect(message({ clockToleranceMs: -1 })).toContain('options.auth.session.clockToleranceMs')
  })
})
