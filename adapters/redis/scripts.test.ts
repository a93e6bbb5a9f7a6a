/**
 * @module tollbooth/redis/scripts.test
 *
 * The Lua against the TypeScript algorithms it mirrors: random states and inputs (fractional
 * limits, rates and costs included) are written into a real Redis, one admission runs, and
 * every figure and the stored state must equal what `gcra()`, `rollingWindow()` and `hold()`
 * return on the same inputs; and random sequences of every counter call (admissions with
 * identities, cancels, releases, additions, rebuilds, claims), figure for figure against
 * `limits/counters` run by `countersFromState`. Also loads every script into Redis.
 */

import { createHash } from 'node:crypto'
import fc from 'fast-check'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import {
  type AdmissionId,
  type Check,
  type CounterStore,
  countersFromState,
  gcra,
  gcraAdd,
  type HoldState,
  hold,
  memoryStorage,
  release,
  rollingWindow,
  roundAmount,
  type SettleOp,
  type StoredCounter,
} from '../../src/internal.js'
import { connectRedis, deletePrefix, testPrefix } from '../../test/support/redis.js'
import { prng } from '../testing/fixtures.js'
import { recordHold } from './counter-calls.js'
import { holdState, redisCounters } from './counters.js'
import { roundAmountLua } from './scripts.js'
import { type Ctx, defineCommands, SCRIPTS } from './store.js'

const client = await connectRedis()
const T0 = 1_767_225_600_000
const f = (x: number) => (x === Infinity ? 'inf' : String(x))
/** Little-endian doubles. */
const doubles = (xs: number[]) => {
  const b = Buffer.alloc(8 * xs.length)
  for (const [i, x] of xs.entries()) b.writeDoubleLE(x, 8 * i)
  return b
}
/** A packed state: its letter, an expiry (never the one the script computes, so its TTL is
 * always written), then its figures. */
const packed = (letter: string, xs: number[]) =>
  Buffer.concat([Buffer.from(letter), doubles([0, ...xs])])
/** The numbers of a window or GCRA state, packed (its expiry left out) or in the text form. */
function parse(raw: Buffer | null): number[] {
  if (raw === null) return []
  if ('vVf'.includes(String.fromCharCode(raw[0]!))) {
    const xs: number[] = []
    for (let o = 9; o + 8 <= raw.length; o += 8) xs.push(raw.readDoubleLE(o))
    return xs
  }
  return raw.toString().split(',').slice(1).map(Number)
}
/** A stored hold counter as a HoldState (its header checked against its holds). */
function parseHold(raw: Buffer | null) {
  const s = holdState(raw) ?? { used: 0, sum: 0, minExp: Infinity, maxExp: -Infinity, holds: [] }
  for (const [id] of s.holds) expect(id).not.toContain('\n')
  // The header's bounds hold every expiry; its sum, when known, is the exact total.
  for (const [, , e] of s.holds) {
    expect(e).toBeGreaterThanOrEqual(s.minExp)
    expect(e).toBeLessThanOrEqual(s.maxExp)
  }
  if (!Number.isNaN(s.sum)) expect(s.sum).toBe(s.holds.reduce((t, [, a]) => t + a, 0))
  return { used: s.used, holds: s.holds }
}
/** A HoldState packed as the script writes it (the header computed as the script would). */
function packHold(s: HoldState): Buffer {
  const hs = s.holds
  const integral = hs.every(([, a]) => Number.isInteger(a))
  const exps = hs.map(([, , e]) => e)
  const head = packed('i', [
    s.used,
    integral ? hs.reduce((t, [, a]) => t + a, 0) : Number.NaN,
    Math.min(...exps),
    Math.max(...exps),
  ])
  return Buffer.concat([
    head,
    Buffer.from(hs.map(([k, a, e]) => `\n#${k}\n${f(a)}\n${f(e)}`).join('')),
  ])
}
/** A HoldState in the text form of earlier versions, its header computed as they did. */
function encodeHold(s: HoldState): string {
  const hs = s.holds
  const integral = hs.every(([, a]) => Number.isInteger(a))
  const sum = integral ? String(hs.reduce((t, [, a]) => t + a, 0)) : ''
  const exps = hs.map(([, , e]) => e)
  const head = [
    'h',
    f(s.used),
    sum,
    f(Math.min(...exps)),
    exps.length ? f(Math.max(...exps)) : '-inf',
  ]
  return [...head, ...hs.flatMap(([k, a, e]) => [`#${k}`, f(a), f(e)])].join('\n')
}

/** `limits/counters` run by `countersFromState` on a Map: the reference of the properties. */
function reference(): CounterStore {
  const values = new Map<string, StoredCounter>()
  return countersFromState({
    transact(keys, step) {
      const { writes, result } = step(keys.map((k) => values.get(k)))
      for (const w of writes) w.value ? values.set(w.key, w.value) : values.delete(w.key)
      return result
    },
  })
}

/**
 * The property tests' window (4 s in 1 s buckets, so a cancel lands within the window it counted
 * in) and GCRA limit (per 2 s) of the counters under `tag`.
 */
const propWindow = (tag: string, limit: number, cost: number) =>
  ({
    type: 'window',
    key: `${tag}:w`,
    name: 'q',
    limit,
    windowMs: 4000,
    bucketMs: 1000,
    cost,
  }) as const
const propGcra = (tag: string, limit: number, cost: number) =>
  ({ type: 'gcra', key: `${tag}:g`, name: 'r', limit, windowMs: 2000, cost }) as const

/** The properties' runs; `FC_SEED` and `FC_PATH` replay a failure. */
const FC_OPTIONS = {
  numRuns: 150,
  ...(process.env.FC_SEED
    ? { seed: Number(process.env.FC_SEED), path: process.env.FC_PATH, endOnFailure: true }
    : {}),
}

describe.skipIf(!client)('redis Lua scripts', () => {
  const redis = client!
  const prefix = testPrefix('lua')
  let counters: CounterStore
  beforeAll(() => {
    const ctx: Ctx = { client: defineCommands(redis), prefix }
    counters = redisCounters(ctx, 60_000)
  })
  afterEach(() => deletePrefix(redis, prefix))
  afterAll(() => redis.quit())

  it('loads every script into Redis (each compiles, under its SHA-1)', async () => {
    for (const [name, lua] of Object.entries(SCRIPTS)) {
      const sha = createHash('sha1').update(lua).digest('hex')
      expect(await redis.script('LOAD', lua), name).toBe(sha)
    }
    const shas = Object.values(SCRIPTS).map((l) => createHash('sha1').update(l).digest('hex'))
    expect(await redis.script('EXISTS', ...shas)).toEqual(shas.map(() => 1))
  })

  it('computes GCRA exactly as gcra() on 400 random inputs', async () => {
    const rand = prng(1)
    for (let i = 0; i < 400; i++) {
      const limit = rand() < 0.5 ? 1 + Math.floor(rand() * 100) : rand() * 1000
      const windowMs = rand() < 0.5 ? 1 + Math.floor(rand() * 100_000) : rand() * 86_400_000
      const state =
        rand() < 0.2
          ? undefined
          : { level: rand() * limit * 1.1, at: T0 - rand() * 5000 + (rand() < 0.1 ? 9000 : 0) }
      const cost = rand() < 0.2 ? 0 : rand() < 0.5 ? 1 : rand() * limit * 0.3
      const now = T0 + Math.floor(rand() * 2000)
      const key = `{a}:g${i}`
      // Half the states in the text form of earlier versions, half packed.
      const gcraState = (s: { level: number; at: number }) =>
        i % 2 ? `g,${s.level},${s.at}` : packed('f', [s.level, s.at])
      if (state) await redis.set(prefix + key, gcraState(state))
      const got = await counters.consume(
        [{ type: 'gcra', key, name: 'r', limit, windowMs, cost }],
        now,
      )
      const v = gcra(state, now, limit, windowMs, cost)
      expect(got.results[0], `input ${i}`).toEqual({
        allowed: v.allowed,
        limit,
        used: limit - v.remaining,
        remaining: v.remaining,
        resetMs: v.resetMs,
        retryAfterMs: v.retryAfterMs,
      })
      const stored = await redis.getBuffer(prefix + key)
      if (v.allowed && v.state.level > 0) expect(parse(stored)).toEqual([v.state.level, v.state.at])
      // The same counted after the fact (settle): the state gcraAdd() gives, its time never
      // moved back.
      const added = `{a}:ga${i}`
      if (state) await redis.set(prefix + added, gcraState(state))
      await counters.settle(
        [{ type: 'add', check: { type: 'gcra', key: added, name: 'r', limit, windowMs, cost } }],
        now,
      )
      const a = gcraAdd(state, now, limit, windowMs, cost)
      const raw = await redis.getBuffer(prefix + added)
      if (a.level > 0) expect(parse(raw), `input ${i}`).toEqual([a.level, a.at])
      else expect(raw).toBeNull()
    }
  })

  it('computes rolling windows exactly as rollingWindow() on 400 random inputs', async () => {
    const rand = prng(2)
    for (let i = 0; i < 400; i++) {
      const allTime = rand() < 0.15
      const bucketMs = allTime ? 0 : 1 + Math.floor(rand() * 5000)
      const windowMs = allTime ? 0 : bucketMs * (1 + Math.floor(rand() * 30))
      const limit = rand() < 0.5 ? Math.floor(rand() * 50) : rand() * 50
      const now = T0 + Math.floor(rand() * 100_000)
      const current = allTime ? 0 : Math.floor(now / bucketMs)
      const idx: number[] = []
      const n: number[] = []
      if (allTime) {
        if (rand() < 0.8) {
          idx.push(0)
          n.push(rand() * 40)
        }
      } else {
        // Now and then buckets ahead of now: another instance's clock ran ahead.
        const ahead = rand() < 0.2 ? 3 : 0
        for (let b = current - 40; b <= current + ahead; b++) {
          if (rand() < 0.3) {
            idx.push(b)
            n.push(rand() < 0.5 ? 1 + Math.floor(rand() * 3) : rand() * 4)
          }
        }
      }
      const cost = rand() < 0.1 ? 0 : rand() < 0.5 ? 1 : rand() * 6
      const key = `{a}:w${i}`
      const state = idx.length ? { idx, n } : undefined
      const flat = idx.flatMap((x, k) => [x, n[k]!])
      if (state) await redis.set(prefix + key, i % 2 ? ['w', ...flat].join(',') : packed('v', flat))
      const got = await counters.consume(
        [{ type: 'window', key, name: 'q', limit, windowMs, bucketMs, cost }],
        now,
      )
      const v = rollingWindow(state, now, limit, windowMs, bucketMs, cost)
      const { state: next, ...figures } = v
      expect(got.results[0], `input ${i}`).toEqual({ limit, ...figures })
      if (v.allowed && next.idx.length) {
        const want = next.idx.flatMap((x, k) => [x, next.n[k]])
        expect(parse(await redis.getBuffer(prefix + key)), `state ${i}`).toEqual(want)
      }
    }
  })

  it('computes holds and releases exactly as hold() and release() on 300 random inputs', async () => {
    const rand = prng(3)
    for (let i = 0; i < 300; i++) {
      const now = T0 + Math.floor(rand() * 10_000)
      const holds: HoldState['holds'] = []
      const count = Math.floor(rand() * 6)
      // Integer amounts only, half the time: the header then keeps their sum (the fast path).
      const integers = rand() < 0.5
      const some = () => (integers ? 1 + Math.floor(rand() * 3) : rand() < 0.5 ? 1 : rand() * 3)
      // Expired holds in a quarter of the states only, so the fast path is taken too.
      const fresh = rand() < 0.25 ? -2000 : 1
      for (let h = 0; h < count; h++)
        holds.push([`req_${h}`, some(), now + fresh + Math.floor(rand() * 4000)])
      const state = rand() < 0.2 ? undefined : { used: rand() < 0.3 ? 0 : rand() * 10, holds }
      const limit = rand() < 0.15 ? Infinity : rand() * 20
      const amount = integers ? 1 + Math.floor(rand() * 2) : rand() < 0.5 ? 1 : rand() * 5
      const id = `req_${Math.floor(rand() * 8)}`
      const ttlMs = 1 + Math.floor(rand() * 5000)
      const key = `{a}:h${i}`
      if (state) await redis.set(prefix + key, i % 2 ? encodeHold(state) : packHold(state))
      const got = await counters.consume(
        [{ type: 'hold', key, name: 'c', limit, amount, holdId: id, ttlMs }],
        now,
      )
      const v = hold(structuredClone(state), now, limit, amount, id, ttlMs)
      expect(got.results[0], `input ${i}`).toEqual({
        allowed: v.allowed,
        limit,
        used: v.used,
        remaining: v.remaining,
        resetMs: 0,
        retryAfterMs: v.allowed ? 0 : 1000,
      })
      const after = v.allowed ? v.state : state
      const charge = rand() * 3
      const released = release(structuredClone(after), now + 1, id, charge)
      await counters.settle([{ type: 'release', key, holdId: id, charge }], now + 1)
      expect(await redis.getBuffer(prefix + key).then(parseHold), `release ${i}`).toEqual(released)
    }
  })

  it('rounds amounts exactly as roundAmount() on 3,000 figures (round_amount)', async () => {
    const rand = prng(11)
    const xs: number[] = [
      0,
      0.5e-9,
      1.5e-9,
      -0.5e-9,
      -1e-10,
      999_999.999_999_999_9,
      1e6,
      1e15,
      1e15 - 0.5,
    ]
    xs.push(0.1 + 0.2, 1 - 0.9, 1234 * 0.0008, -(0.1 + 0.2), 2 ** 53, -(2 ** 53), 1e300, 5e-324)
    for (let i = 0; i < 3000; i++) {
      const scale = 10 ** Math.floor(rand() * 20 - 4)
      const grid = Math.round(rand() * 1e9) / 10 ** Math.floor(rand() * 10)
      const x =
        i % 3 === 0
          ? (rand() - 0.3) * scale
          : i % 3 === 1
            ? grid + grid * 3 - grid
            : (rand() - 0.5) * 2e9 * 1e-9 + grid
      xs.push(x)
    }
    const lua = `${roundAmountLua('math.floor')}
local out = {}
for i = 1, #ARGV do out[i] = struct.pack('<d', round_amount(tonumber(ARGV[i]))) end
return table.concat(out)`
    const raw = (await redis.callBuffer('EVAL', [lua, 0, ...xs.map((x) => String(x))])) as Buffer
    for (const [i, x] of xs.entries()) {
      const got = raw.readDoubleLE(8 * i)
      expect(
        Object.is(got, roundAmount(x)),
        `round_amount(${x}): ${got} vs ${roundAmount(x)}`,
      ).toBe(true)
    }
  })

  it('admits and settles decimal amounts as hold() and release() do, to the decimal', async () => {
    const rand = prng(5)
    const decimals = [0.1, 0.2, 0.3, 0.0008, 0.002, 0.07, 1.1, 0.000000001, 1234 * 0.0008]
    for (let i = 0; i < 200; i++) {
      const now = T0 + Math.floor(rand() * 10_000)
      const key = `{a}:d${i}`
      const limit = [0.3, 1, 0.9, 0.0024, 2.5][i % 5]!
      let state: HoldState | undefined
      for (let n = 0; n < 6; n++) {
        const amount = decimals[Math.floor(rand() * decimals.length)]!
        const id = `req_${n}`
        const got = await counters.consume(
          [{ type: 'hold', key, name: 'c', limit, amount, holdId: id, ttlMs: 60_000 }],
          now,
        )
        const v = hold(structuredClone(state), now, limit, amount, id, 60_000)
        expect(got.results[0], `input ${i}.${n}`).toMatchObject({
          allowed: v.allowed,
          used: v.used,
          remaining: v.remaining,
        })
        state = v.allowed ? v.state : state
        if (rand() < 0.5) {
          const charge = decimals[Math.floor(rand() * decimals.length)]!
          state = release(structuredClone(state), now, id, charge)
          await counters.settle([{ type: 'release', key, holdId: id, charge }], now)
          expect(await redis.getBuffer(prefix + key).then(parseHold), `release ${i}.${n}`).toEqual(
            state,
          )
        }
      }
    }
    // Three of 0.1 fill a limit of 0.3 on both, to the decimal.
    let state: HoldState | undefined
    for (const id of ['x', 'y', 'z']) {
      const r = await counters.consume(
        [
          {
            type: 'hold',
            key: '{a}:three',
            name: 'c',
            limit: 0.3,
            amount: 0.1,
            holdId: id,
            ttlMs: 60_000,
          },
        ],
        T0,
      )
      state = hold(state, T0, 0.3, 0.1, id, 60_000).state
      expect(r.allowed).toBe(true)
    }
    expect(hold(state, T0, 0.3, 0, 'w', 60_000)).toMatchObject({ used: 0.3, remaining: 0 })
  })

  it('reads counters left in the text form of earlier versions, and writes them packed', async () => {
    // As an instance of an earlier version leaves them: text, with their TTLs; the window and
    // the credits marked rebuilt (W, H), so a rebuild asked now changes nothing.
    const now = T0 + 7_200_500
    const hour = 3_600_000
    const b = Math.floor(now / hour)
    const holds: HoldState['holds'] = [
      ['req_1', 2, now + 5000],
      ['req_2', 0.5, now + 9000],
      ['gone', 4, now - 1],
    ]
    await redis.set(`${prefix}{t}:w`, `W,${b - 30},9,${b - 2},3,${b},1.5`, 'PX', 500_000)
    await redis.set(`${prefix}{t}:g`, `g,2.25,${now - 400}`, 'PX', 500_000)
    await redis.set(`${prefix}{t}:h`, encodeHold({ used: 7, holds }).replace('h', 'H'))
    const checks: Check[] = [
      {
        type: 'window',
        key: '{t}:w',
        name: 'q',
        limit: 20,
        windowMs: 24 * hour,
        bucketMs: hour,
        cost: 2,
        rebuild: { base: 100 },
      },
      { type: 'gcra', key: '{t}:g', name: 'r', limit: 5, windowMs: 1000, cost: 1 },
      {
        type: 'hold',
        key: '{t}:h',
        name: 'c',
        limit: 50,
        amount: 3,
        holdId: 'req_3',
        ttlMs: 1000,
        rebuild: { base: 100 },
      },
    ]
    const got = await counters.consume(checks, now)
    const w = rollingWindow({ idx: [b - 2, b], n: [3, 1.5] }, now, 20, 24 * hour, hour, 2)
    const g = gcra({ level: 2.25, at: now - 400 }, now, 5, 1000, 1)
    const h = hold({ used: 7, holds }, now, 50, 3, 'req_3', 1000)
    const { state: wState, ...wFigures } = w
    expect(got).toEqual({
      allowed: true,
      results: [
        { limit: 20, ...wFigures },
        {
          allowed: true,
          limit: 5,
          used: 5 - g.remaining,
          remaining: g.remaining,
          resetMs: g.resetMs,
          retryAfterMs: 0,
        },
        {
          allowed: true,
          limit: 50,
          used: h.used,
          remaining: h.remaining,
          resetMs: 0,
          retryAfterMs: 0,
        },
      ],
    })
    // Written packed, the rebuilt marks kept (V, I), the figures those of the algorithms.
    const w2 = (await redis.getBuffer(`${prefix}{t}:w`))!
    expect(w2.toString('latin1', 0, 1)).toBe('V')
    expect(parse(w2)).toEqual(wState.idx.flatMap((x, k) => [x, wState.n[k]]))
    const g2 = (await redis.getBuffer(`${prefix}{t}:g`))!
    expect(g2.toString('latin1', 0, 1)).toBe('f')
    expect(parse(g2)).toEqual([g.state.level, g.state.at])
    const h2 = (await redis.getBuffer(`${prefix}{t}:h`))!
    expect(h2.toString('latin1', 0, 1)).toBe('I')
    expect(parseHold(h2)).toEqual(h.state)
    expect(await counters.held('{t}:h', now)).toBe(h.used)
    // Their TTLs written anew: the window's until its newest bucket leaves, plus the slack.
    expect(await redis.pttl(`${prefix}{t}:w`)).toBeGreaterThan((b + 25) * hour - now + 55_000)
    expect(await redis.pttl(`${prefix}{t}:h`)).toBe(-1)
  })

  it('leaves a counter’s TTL as it is when its expiry has not moved', async () => {
    const hour = 3_600_000
    const now = T0 + 100
    const day: Check = {
      type: 'window',
      key: '{k}:w',
      name: 'q',
      limit: 100,
      windowMs: 24 * hour,
      bucketMs: hour,
      cost: 1,
    }
    const key = `${prefix}{k}:w`
    await counters.consume([day], now)
    const idleAt = (Math.floor(now / hour) + 25) * hour - now + 60_000
    expect(await redis.pttl(key)).toBeGreaterThan(idleAt - 5000)
    expect(await redis.pttl(key)).toBeLessThanOrEqual(idleAt)
    // Another count in the same bucket: the same expiry, so the TTL is not written (a TTL
    // changed behind the script's back shows it).
    await redis.pexpire(key, 10 * idleAt)
    await counters.consume([day], now + 1000)
    expect(await redis.pttl(key)).toBeGreaterThan(9 * idleAt)
    // The next bucket moves the expiry an hour on: written again (by this call's clock, an
    // hour later, the same distance away).
    await counters.consume([day], now + hour)
    expect(await redis.pttl(key)).toBeGreaterThan(idleAt - 5000)
    expect(await redis.pttl(key)).toBeLessThanOrEqual(idleAt)
    expect(parse(await redis.getBuffer(key))).toEqual([
      Math.floor(now / hour),
      2,
      Math.floor(now / hour) + 1,
      1,
    ])
  })

  it('keeps a GCRA counter’s TTL while its expiry stays within one whole second', async () => {
    const rate: Check = {
      type: 'gcra',
      key: '{q}:g',
      name: 'r',
      limit: 1000,
      windowMs: 60_000,
      cost: 1,
    }
    const key = `${prefix}{q}:g`
    const now = T0 + 200
    await counters.consume([rate], now)
    // Idle 60 ms after now, plus the slack (60 s here), rounded up to the next whole second.
    const at = Math.ceil((now + 60 + 60_000) / 1000) * 1000
    expect(await redis.pttl(key)).toBeGreaterThan(at - now - 5000)
    expect(await redis.pttl(key)).toBeLessThanOrEqual(at - now)
    // More requests within that second: the same expiry, so the TTL is not written (a TTL
    // changed behind the script's back shows it).
    await redis.pexpire(key, 10 * (at - now))
    await counters.consume([rate], now + 100)
    await counters.consume([rate], now + 300)
    expect(await redis.pttl(key)).toBeGreaterThan(9 * (at - now))
    // Past it, written again.
    await counters.consume([rate], now + 1000)
    expect(await redis.pttl(key)).toBeLessThanOrEqual(at - now + 1000)
  })

  // A TTL of a minute or more ends on a whole second (ttl_at): from a clock reading with a
  // fraction, its PX must still be a whole number of ms, or Redis refuses the SET.
  it('writes whole-millisecond TTLs from a clock with fractions, a check alone or with others', async () => {
    const rand = prng(7)
    for (let i = 0; i < 200; i++) {
      const now = T0 + Math.floor(rand() * 100_000) + rand()
      const rate: Check = {
        type: 'gcra',
        key: `{f${i}}:g`,
        name: 'r',
        limit: 1 + rand() * 50,
        windowMs: 60_000 + rand() * 1000,
        cost: 1,
      }
      const daily: Check = {
        type: 'window',
        key: `{f${i}}:w`,
        name: 'd',
        limit: 100,
        windowMs: 86_400_000,
        bucketMs: 3_600_000,
        cost: 1 + rand(),
      }
      const checks = i % 3 === 0 ? [rate] : i % 3 === 1 ? [daily] : [rate, daily]
      const got = await counters.consume(checks, now, { key: `{f${i}}:a:r${i}`, ttlMs: 60_000 })
      expect(got.allowed, `call ${i}`).toBe(true)
      for (const c of checks)
        expect(await redis.pttl(prefix + c.key), `call ${i}`).toBeGreaterThan(0)
    }
  })

  it('expires a period’s credits at keepUntil, an idle hold at once, never a rebuilt budget', async () => {
    const now = Date.now()
    const keepUntil = now + 10 * 86_400_000
    const hold = (key: string, extra: object) =>
      ({
        type: 'hold',
        key,
        name: 'c',
        limit: 100,
        amount: 1,
        holdId: 'h',
        ttlMs: 300_000,
        ...extra,
      }) as const
    await counters.consume([hold('{e}:credits', { keepUntil })], now)
    await counters.settle(
      [{ type: 'release', key: '{e}:credits', holdId: 'h', charge: 2, keepUntil }],
      now,
    )
    // Expires at keepUntil plus the slack (60 s here), by Redis's clock, rounded up to a
    // whole second (a TTL of a minute or more).
    const ttl = await redis.pttl(`${prefix}{e}:credits`)
    expect(ttl).toBeGreaterThan(keepUntil - now + 60_000 - 5000)
    expect(ttl).toBeLessThanOrEqual(keepUntil - now + 60_000 + 1000)
    // A release once keepUntil has passed leaves nothing behind.
    await counters.settle(
      [{ type: 'release', key: '{e}:late', holdId: 'h', charge: 2, keepUntil: now - 1 }],
      now,
    )
    expect(await redis.exists(`${prefix}{e}:late`)).toBe(0)
    // A rebuilt budget at 0 is kept (else each request would rebuild it), with no expiry.
    await counters.consume([hold('{e}:b', { rebuild: { base: 0 } })], now)
    await counters.settle([{ type: 'release', key: '{e}:b', holdId: 'h', charge: 0 }], now)
    expect(await redis.pttl(`${prefix}{e}:b`)).toBe(-1)
    expect(await counters.held('{e}:b', now)).toBe(0)
    // A settled Idempotency-Key: a GCRA unit of 1 per 24 h, gone 24 h (plus slack) later.
    const idem = {
      type: 'gcra',
      key: '{e}:i:x',
      name: 'idempotency',
      limit: 1,
      windowMs: 86_400_000,
      cost: 1,
    } as const
    expect((await counters.consume([idem], now)).allowed).toBe(true)
    expect((await counters.consume([idem], now + 1000)).allowed).toBe(false)
    const idemTtl = await redis.pttl(`${prefix}{e}:i:x`)
    expect(idemTtl).toBeGreaterThan(86_400_000 + 60_000 - 5000)
    expect(idemTtl).toBeLessThanOrEqual(86_400_000 + 60_000 + 1 + 1000)
  })

  // Batched: each settle is left queued and rides along with the next admission, in the same
  // script and before it; the figures must not change.
  for (const batchMs of [0, 60_000]) {
    it(`matches the memory store on a random sequence with fractional figures (settleBatchMs ${batchMs})`, async () => {
      const store = redisCounters({ client: defineCommands(redis), prefix }, 60_000, batchMs)
      const ref = memoryStorage().counters
      const rand = prng(4)
      let now = T0
      const checks = () => [
        {
          type: 'window' as const,
          key: '{s}:w',
          name: 'q',
          limit: 7.5,
          windowMs: 3000,
          bucketMs: 700,
          cost: rand() * 2,
        },
        {
          type: 'gcra' as const,
          key: '{s}:g',
          name: 'r',
          limit: 3.3,
          windowMs: 999,
          cost: rand() < 0.3 ? 0 : rand() * 2,
        },
        {
          type: 'hold' as const,
          key: '{s}:h',
          name: 'c',
          limit: 4.2,
          amount: rand(),
          holdId: `r${Math.floor(rand() * 5)}`,
          ttlMs: 800,
        },
      ]
      const queued: Promise<void>[] = []
      for (let step = 0; step < 400; step++) {
        now += Math.floor(rand() * 300)
        if (rand() < 0.75) {
          const cs = checks().filter(() => rand() < 0.6)
          if (cs.length === 0) continue
          expect(await store.consume(cs, now), `step ${step}`).toEqual(await ref.consume(cs, now))
        } else {
          const [w, g] = checks()
          const ops: SettleOp[] = [
            { type: 'release', key: '{s}:h', holdId: `r${Math.floor(rand() * 5)}`, charge: rand() },
            { type: 'renew', key: '{s}:h', holdId: `r${Math.floor(rand() * 5)}`, ttlMs: 800 },
            { type: 'add', check: w! as never },
            { type: 'add', check: g! as never },
          ]
          await ref.settle(ops, now)
          if (batchMs === 0) {
            await store.settle(ops, now)
            expect(await store.held('{s}:h', now)).toBe(await ref.held('{s}:h', now))
          } else {
            queued.push(store.settle(ops, now))
          }
        }
      }
      if (batchMs > 0) {
        expect(queued.length).toBeGreaterThan(50)
        // The last settles had no admission after them: one more carries them.
        const last = [{ ...checks()[0]!, cost: 0 }]
        expect(await store.consume(last, now)).toEqual(await ref.consume(last, now))
        await Promise.all(queued)
      }
      expect(await store.held('{s}:h', now)).toBe(await ref.held('{s}:h', now))
    })
  }

  // The settle that rides along with an admission on the same credit counter is joined to the
  // admission's hold in one write (pend_flush in scripts.ts): with many holds in flight, the
  // released one anywhere among them, and the admission passing, refused by the credits or
  // refused by another check (then the release alone is written).
  it('releases a hold among many in flight in the admission that carries it, figure for figure', async () => {
    const store = redisCounters({ client: defineCommands(redis), prefix }, 60_000, 60_000)
    const ref = memoryStorage().counters
    const rand = prng(9)
    let now = T0
    let seq = 0
    const live: string[] = []
    const queued: Promise<void>[] = []
    for (let step = 0; step < 300; step++) {
      now += Math.floor(rand() * 40)
      // Integer amounts: the header's total is known, the path that joins the pieces.
      const amount = 1 + Math.floor(rand() * 3)
      if (live.length > 0 && rand() < 0.55) {
        const [id] = live.splice(Math.floor(rand() * live.length), 1)
        const ops: SettleOp[] = [
          { type: 'release', key: '{p}:h', holdId: id!, charge: Math.floor(rand() * 3) },
        ]
        await ref.settle(ops, now)
        queued.push(store.settle(ops, now))
      }
      const id = `q${seq++}`
      const cs: Check[] = [
        { type: 'hold', key: '{p}:h', name: 'c', limit: 1e6, amount, holdId: id, ttlMs: 60_000 },
      ]
      // Now and then refused by the credits (a low limit), or by a window after them.
      if (rand() < 0.15) cs[0] = { ...cs[0]!, limit: 0 } as Check
      if (rand() < 0.15)
        cs.push({
          type: 'window',
          key: '{p}:w',
          name: 'q',
          limit: 0,
          windowMs: 60_000,
          bucketMs: 1000,
          cost: 1,
        })
      const want = await ref.consume(cs, now)
      expect(await store.consume(cs, now), `step ${step}`).toEqual(want)
      if (want.allowed) live.push(id)
      expect(await store.held('{p}:h', now), `step ${step}`).toBe(await ref.held('{p}:h', now))
      parseHold(await redis.getBuffer(`${prefix}{p}:h`))
    }
    await Promise.all(queued)
    expect(live.length).toBeGreaterThan(15)
  })

  it('lets a hold stand for a record only when it is the admission’s own and kept as long', () => {
    const hold = (holdId: string, ttlMs: number): Check => ({
      type: 'hold',
      key: '{a}:h',
      name: 'c',
      limit: 9,
      amount: 1,
      holdId,
      ttlMs,
    })
    const rate: Check = { type: 'gcra', key: '{a}:g', name: 'r', limit: 1, windowMs: 1000, cost: 1 }
    expect(recordHold('r1', 60_000, [rate, hold('r1', 300_000)])).toBe(2)
    expect(recordHold('r1', 60_000, [hold('r1', 59_999)])).toBe(0)
    expect(recordHold('r1', 60_000, [hold('lease:x', 300_000)])).toBe(0)
    expect(recordHold(undefined, 60_000, [hold('r1', 300_000)])).toBe(0)
    expect(recordHold('r1', 60_000, [hold('r1', 1000), hold('r1', 60_000)])).toBe(2)
  })

  /** A per-minute window of the account `tag`, and what it has counted at `now`. */
  const windowOf = (tag: string, now: number) => {
    const window: Check = {
      type: 'window',
      key: `{${tag}}:w`,
      name: 'q',
      limit: 10,
      windowMs: 60_000,
      bucketMs: 1000,
      cost: 1,
    }
    const used = async () =>
      (await counters.consume([{ ...window, cost: 0 }], now)).results[0]!.used
    return { window, used }
  }

  it('finds a record in its second’s list by its whole line, never as the end of another', async () => {
    const now = T0 + 500
    const { window, used } = windowOf('l', now)
    const cancel = (key: string): SettleOp => ({
      type: 'cancel',
      key,
      ttlMs: 60_000,
      at: now,
      checks: [window],
    })
    // Two records in one list, the second's name ending with a third's that never came.
    await counters.consume([window], now, { key: '{l}:a:r2', ttlMs: 60_000 })
    await counters.consume([window], now, { key: '{l}:a:x{l}:a:r1', ttlMs: 60_000 })
    expect(await redis.get(`${prefix}{l}:r:${Math.floor(now / 1000)}`)).toBe(
      `${prefix}{l}:a:r2\n${prefix}{l}:a:x{l}:a:r1\n`,
    )
    expect(await used()).toBe(2)
    // Not admitted: its cancel takes nothing back (and leaves its tombstone).
    await counters.settle([cancel('{l}:a:r1')], now + 10)
    expect(await used()).toBe(2)
    expect(await redis.get(`${prefix}{l}:a:r1`)).toBe('x')
    // Admitted, each found: the first line, then one after a newline.
    await counters.settle([cancel('{l}:a:r2')], now + 10)
    expect(await used()).toBe(1)
    await counters.settle([cancel('{l}:a:x{l}:a:r1')], now + 10)
    expect(await used()).toBe(0)
  })

  it('keeps a record whose name has a newline in a key of its own, never as lines', async () => {
    const now = T0 + 500
    const { window, used } = windowOf('n', now)
    // A caller of the store's contract may name a record anything: as a line, this one would
    // read as two, the second the name of an admission that never came.
    const odd = `{n}:a:x\n${prefix}{n}:a:r1`
    await counters.consume([window], now, { key: odd, ttlMs: 60_000 })
    expect(await redis.get(`${prefix}${odd}`)).toBe('c')
    expect(await redis.exists(`${prefix}{n}:r:${Math.floor(now / 1000)}`)).toBe(0)
    // The cancel of the one that never came takes nothing back.
    await counters.settle(
      [{ type: 'cancel', key: '{n}:a:r1', ttlMs: 60_000, at: now, checks: [window] }],
      now + 10,
    )
    expect(await used()).toBe(1)
    await counters.settle(
      [{ type: 'cancel', key: odd, ttlMs: 60_000, at: now, checks: [window] }],
      now + 10,
    )
    expect(await used()).toBe(0)
  })

  // An admission whose credit hold takes its id writes no record: the hold stands for it
  // (AdmissionId.holdId). One with no hold appends its record to its second's list
  // (recordBucket). Its cancel, before or after the record's life (3 s here, by the callers'
  // clock), late or not, with the holds released or expired around it, must answer as the
  // reference, which writes and reads the record as a key of its own. The core never cancels
  // an admission it settled, so no cancel here follows a release of its own admission.
  // The third: a rate limit alone, which the script answers on its own path (no key table).
  it.each([
    ['lets an admission’s hold stand for its record', true, false],
    ['keeps a record with no hold as a line of its second’s list', false, false],
    ['keeps the record of a rate limit alone as a line of its second’s list', false, true],
  ])('%s, figure for figure (fast-check)', async (_, withHold, alone) => {
    type Op =
      | { t: 'consume'; cost: number; amt: number }
      | { t: 'cancel'; pick: number; late: boolean }
      | { t: 'release'; pick: number; charge: number }
    const op: fc.Arbitrary<Op> = fc.oneof(
      {
        weight: 5,
        arbitrary: fc.record({
          t: fc.constant('consume' as const),
          cost: fc.integer({ min: 0, max: 2 }),
          amt: fc.integer({ min: 0, max: 3 }),
        }),
      },
      {
        weight: 3,
        arbitrary: fc.record({
          t: fc.constant('cancel' as const),
          pick: fc.nat(),
          late: fc.boolean(),
        }),
      },
      {
        weight: 2,
        arbitrary: fc.record({
          t: fc.constant('release' as const),
          pick: fc.nat(),
          charge: fc.integer({ min: 0, max: 3 }),
        }),
      },
    )
    let run = 0
    await fc.assert(
      fc.asyncProperty(
        fc.tuple(fc.integer({ min: 1, max: 8 }), fc.integer({ min: 2, max: 12 })),
        fc.array(fc.record({ dt: fc.integer({ min: 0, max: 1500 }), op }), {
          minLength: 1,
          maxLength: 40,
        }),
        async ([wLimit, budget], steps) => {
          const tag = `{r${run++}}`
          const ref = reference()
          const checks = (o: Extract<Op, { t: 'consume' }>, id: string): Check[] =>
            alone
              ? [propGcra(tag, 4, o.cost)]
              : [
                  propWindow(tag, wLimit, o.cost),
                  propGcra(tag, 4, o.cost),
                  ...(withHold
                    ? [
                        {
                          type: 'hold',
                          key: `${tag}:$`,
                          name: 'credits',
                          limit: budget,
                          amount: o.amt,
                          holdId: id,
                          ttlMs: 5000,
                        } as const,
                      ]
                    : []),
                ]
          const holdOf = (id: string) => (withHold ? { holdId: id } : {})
          const admitted: Array<{ id: string; at: number; checks: Check[]; settled: boolean }> = []
          let now = T0
          let seq = 0
          for (const [k, { dt, op: o }] of steps.entries()) {
            now += dt
            const at = `step ${k} (${o.t})`
            if (o.t === 'consume') {
              const id = `r${seq++}`
              const cs = checks(o, id)
              const admission: AdmissionId = { key: `${tag}:a:${id}`, ttlMs: 3000, ...holdOf(id) }
              const want = await ref.consume(cs, now, admission)
              expect(await counters.consume(cs, now, admission), at).toEqual(want)
              if (want.allowed) {
                admitted.push({ id, at: now, checks: cs, settled: false })
                // The hold is the record, or a line of the list: no key of its own.
                expect(await redis.exists(`${prefix}${tag}:a:${id}`), at).toBe(0)
                const list = await redis.get(`${prefix}${tag}:r:${Math.floor(now / 1000)}`)
                expect(list?.split('\n').includes(`${prefix}${tag}:a:${id}`) ?? false, at).toBe(
                  !withHold,
                )
              }
            } else if (o.t === 'cancel') {
              const open = admitted.filter((x) => !x.settled)
              const a = open[o.pick % Math.max(1, open.length)]
              // A late cancel's tombstone is kept long (the admission it refuses comes later,
              // and Redis expires it by its own clock, not the test's).
              const cancel: SettleOp =
                a && !o.late
                  ? {
                      type: 'cancel',
                      key: `${tag}:a:${a.id}`,
                      ttlMs: 3000,
                      at: a.at,
                      checks: a.checks,
                      ...holdOf(a.id),
                    }
                  : {
                      type: 'cancel',
                      key: `${tag}:a:r${seq}`,
                      ttlMs: 60_000,
                      at: now,
                      checks: [],
                      ...holdOf(`r${seq}`),
                    }
              await ref.settle([cancel], now)
              await counters.settle([cancel], now)
            } else if (withHold) {
              const a = admitted[o.pick % Math.max(1, admitted.length)]
              if (a) a.settled = true
              const ops: SettleOp[] = [
                { type: 'release', key: `${tag}:$`, holdId: a?.id ?? 'none', charge: o.charge },
              ]
              await ref.settle(ops, now)
              await counters.settle(ops, now)
            }
            expect(await counters.held(`${tag}:$`, now), `${at}: held`).toBe(
              await ref.held(`${tag}:$`, now),
            )
          }
        },
      ),
      FC_OPTIONS,
    )
  })

  it('answers every call as limits/counters does, on random sequences (fast-check)', async () => {
    const DAY = 86_400_000
    const amount = fc.oneof(
      fc.integer({ min: 0, max: 3 }),
      fc.double({ min: 0, max: 3, noNaN: true }).map((x) => Math.round(x * 8) / 8),
    )
    type Op =
      | {
          t: 'consume'
          mask: number
          cost: number
          amt: number
          identity: boolean
          rebuild: number
        }
      | { t: 'cancel'; pick: number; late: boolean }
      | { t: 'release'; pick: number; charge: number; ifHeld: boolean }
      | { t: 'add'; toWindow: boolean; cost: number }
      | { t: 'held' }
      | { t: 'claim'; ttl: number }
      | { t: 'unclaim' }
    const op: fc.Arbitrary<Op> = fc.oneof(
      {
        weight: 6,
        arbitrary: fc.record({
          t: fc.constant('consume' as const),
          mask: fc.integer({ min: 1, max: 31 }),
          cost: amount,
          amt: amount,
          identity: fc.boolean(),
          rebuild: fc.integer({ min: 0, max: 5 }),
        }),
      },
      {
        weight: 2,
        arbitrary: fc.record({
          t: fc.constant('cancel' as const),
          pick: fc.nat(),
          late: fc.boolean(),
        }),
      },
      {
        weight: 2,
        arbitrary: fc.record({
          t: fc.constant('release' as const),
          pick: fc.nat(),
          charge: amount,
          ifHeld: fc.boolean(),
        }),
      },
      {
        weight: 1,
        arbitrary: fc.record({
          t: fc.constant('add' as const),
          toWindow: fc.boolean(),
          cost: fc.integer({ min: -3, max: 5 }),
        }),
      },
      { weight: 1, arbitrary: fc.constant({ t: 'held' as const }) },
      {
        weight: 1,
        arbitrary: fc.record({
          t: fc.constant('claim' as const),
          ttl: fc.integer({ min: 1, max: 3000 }),
        }),
      },
      { weight: 1, arbitrary: fc.constant({ t: 'unclaim' as const }) },
    )
    let run = 0
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          limits: fc.tuple(
            fc.integer({ min: 1, max: 8 }),
            fc.integer({ min: 1, max: 8 }),
            fc.integer({ min: 1, max: 6 }),
            fc.integer({ min: 0, max: 10 }),
          ),
          steps: fc.array(fc.record({ dt: fc.integer({ min: 0, max: 1500 }), op }), {
            minLength: 1,
            maxLength: 40,
          }),
        }),
        async ({ limits: [wLimit, gLimit, cLimit, budget], steps }) => {
          const tag = `{f${run++}}`
          const ref = reference()
          const keepUntil = T0 + 2 * DAY
          // A window of 4 s in 1 s buckets (a cancel lands within the window it counted in),
          // an all-time quota and a budget (rebuilt), a GCRA limit, concurrency, credits.
          const windowOf = (cost: number) => propWindow(tag, wLimit, cost)
          const gcraOf = (cost: number) => propGcra(tag, gLimit, cost)
          const checks = (o: Extract<Op, { t: 'consume' }>, id: string): Check[] => {
            const base =
              o.rebuild === 0 ? undefined : o.rebuild === 1 ? {} : { base: o.rebuild - 1 }
            const rebuild = base === undefined ? {} : { rebuild: base }
            const all: Check[] = [
              windowOf(o.cost),
              {
                type: 'window',
                key: `${tag}:t`,
                name: 'total',
                limit: 2 * wLimit,
                windowMs: 0,
                bucketMs: 0,
                cost: o.cost,
                ...rebuild,
              },
              gcraOf(o.cost),
              {
                type: 'hold',
                key: `${tag}:c`,
                name: 'concurrency',
                limit: cLimit,
                amount: 1,
                holdId: id,
                ttlMs: 2500,
              },
              {
                type: 'hold',
                key: `${tag}:$`,
                name: 'credits',
                limit: budget,
                amount: o.amt,
                holdId: id,
                ttlMs: 4000,
                keepUntil,
                ...rebuild,
              },
            ]
            return all.filter((_, i) => o.mask & (1 << i))
          }
          const admitted: Array<{
            id: string
            at: number
            checks: Check[]
            admission?: AdmissionId
          }> = []
          let now = T0
          let seq = 0
          for (const [k, { dt, op: o }] of steps.entries()) {
            now += dt
            const at = `step ${k} (${o.t})`
            if (o.t === 'consume') {
              const id = `r${seq++}`
              const cs = checks(o, id)
              const admission = o.identity ? { key: `${tag}:a:${id}`, ttlMs: 60_000 } : undefined
              const want = await ref.consume(cs, now, admission)
              expect(await counters.consume(cs, now, admission), at).toEqual(want)
              if (want.allowed)
                admitted.push({ id, at: now, checks: cs, ...(admission ? { admission } : {}) })
            } else if (o.t === 'cancel') {
              // A cancel of a recorded admission, or (late) of one that has not come yet.
              const a = admitted.filter((x) => x.admission)[o.pick % Math.max(1, admitted.length)]
              const cancel: SettleOp =
                a && !o.late
                  ? {
                      type: 'cancel',
                      key: a.admission!.key,
                      ttlMs: 60_000,
                      at: a.at,
                      checks: a.checks,
                    }
                  : { type: 'cancel', key: `${tag}:a:r${seq}`, ttlMs: 60_000, at: now, checks: [] }
              await ref.settle([cancel], now)
              await counters.settle([cancel], now)
            } else if (o.t === 'release') {
              const a = admitted[o.pick % Math.max(1, admitted.length)]
              const ops: SettleOp[] = [
                {
                  type: 'release',
                  key: `${tag}:c`,
                  holdId: a?.id ?? 'none',
                  charge: 0,
                  ifHeld: o.ifHeld,
                },
                {
                  type: 'release',
                  key: `${tag}:$`,
                  holdId: a?.id ?? 'none',
                  charge: o.charge,
                  keepUntil,
                  ifHeld: o.ifHeld,
                },
              ]
              await ref.settle(ops, now)
              await counters.settle(ops, now)
            } else if (o.t === 'add') {
              const check = o.toWindow ? windowOf(Math.max(0, o.cost)) : gcraOf(o.cost)
              await ref.settle([{ type: 'add', check }], now)
              await counters.settle([{ type: 'add', check }], now)
            } else if (o.t === 'claim') {
              expect(await counters.claim(`${tag}:m`, o.ttl, now), at).toBe(
                await ref.claim(`${tag}:m`, o.ttl, now),
              )
            } else if (o.t === 'unclaim') {
              await ref.unclaim(`${tag}:m`)
              await counters.unclaim(`${tag}:m`)
            }
            for (const key of [`${tag}:c`, `${tag}:$`])
              expect(await counters.held(key, now), `${at}: held ${key}`).toBe(
                await ref.held(key, now),
              )
            expect(await counters.claimed(`${tag}:m`, now), at).toBe(
              await ref.claimed(`${tag}:m`, now),
            )
          }
        },
      ),
      FC_OPTIONS,
    )
  })
})
