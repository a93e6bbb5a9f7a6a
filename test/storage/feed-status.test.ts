/**
 * @module test/storage/feed-status
 *
 * The core's side of a change feed that reports its state (`subscribe(listener, { onStatus })`),
 * with a user's own in-process feed that can be switched off: two instances share one store,
 * with ten-minute caches and `cache.feedDownTtlMs` of one second on a manual clock. While the
 * feed is down, a plan change made on A is not heard by B, and B keeps its cached account only
 * until the entry is one second old; once the feed is back, B's caches are emptied, so a change
 * missed meanwhile shows at once. A feed that never reports is taken as up. B's view of the
 * account is read where admission uses it: a request's `X-Usage-Limit` (the plan's credits plus
 * the balance); `tb.accounts.get()` reads the store anew. A feed that loses messages without
 * saying so (muted) is found by the probe (`cache.feedProbeMs`) and reported once per
 * transition, through `onError` and `tb.stats().feed`; one that said it was down is not.
 */

import { describe, expect, it } from 'vitest'
import {
  type ChangeFeed,
  createTollbooth,
  isTollboothError,
  manualClock,
  memoryStorage,
  type SubscribeOptions,
} from '../../src/internal.js'
import { until } from '../support/core.js'

const SECRET = 'feed-status-suite-secret-0123456789abcdef'

type Tb = ReturnType<typeof createTollbooth>

/** The credit limit a request of `key` is admitted against: the account as `tb` caches it. */
async function limitSeen(tb: Tb, key: string): Promise<number> {
  const d = await tb.authenticate(
    { headers: { authorization: `Bearer ${key}` }, ip: '127.0.0.1', method: 'GET', path: '/' },
    tb.route({ cost: 0 }),
  )
  if (!d.allowed) throw new Error(`refused: ${d.status}`)
  const limit = Number(d.responseHeaders(200)['X-Usage-Limit'])
  await tb.settle(d, { status: 200 })
  return limit
}

/** A change feed inside this process that can be taken down (messages then are lost). */
function switchableFeed() {
  const subs = new Set<{ listener: (m: string) => void; options?: SubscribeOptions }>()
  let up = true
  const feed: ChangeFeed = {
    async publish(message) {
      if (up) for (const s of subs) s.listener(message)
    },
    async subscribe(listener, options) {
      const s = { listener, ...(options ? { options } : {}) }
      subs.add(s)
      return () => {
        subs.delete(s)
      }
    },
  }
  const set = (live: boolean) => {
    up = live
    for (const s of subs) s.options?.onStatus?.(live)
  }
  /** Loses messages without a word, as a half-open connection does. */
  const mute = (muted: boolean) => {
    up = !muted
  }
  return { feed, set, mute }
}

/** An instance on `feed` probed every 50 ms, and what it reported. */
function probed(feed: ChangeFeed) {
  const errors: unknown[] = []
  const tb = createTollbooth({
    secret: SECRET,
    storage: { ...memoryStorage(), changes: feed },
    cache: { feedProbeMs: 50 },
    onError: (e: unknown) => errors.push(e),
  })
  return { tb, errors }
}

describe('caches while the change feed is down', () => {
  it('trusts a cached account for feedDownTtlMs while down and forgets it when back', async () => {
    const clock = manualClock(Date.UTC(2026, 0, 15, 12))
    const memory = memoryStorage()
    const { feed, set } = switchableFeed()
    const make = () =>
      createTollbooth({
        secret: SECRET,
        clock,
        storage: { ...memory, changes: feed },
        cache: { ttlMs: 600_000, negativeTtlMs: 600_000, max: 100, feedDownTtlMs: 1000 },
        plans: { big: { monthlyCredits: 1000 }, small: { monthlyCredits: 10 } },
      })
    const a = make()
    const b = make()
    await new Promise((r) => setTimeout(r, 0))
    try {
      const { key } = await a.keys.create({ accountId: 'acct_1' })
      await a.accounts.setTier('acct_1', 'big')
      expect(await limitSeen(b, key)).toBe(1000)
      // Up: a change is heard at once.
      await a.accounts.setTier('acct_1', 'small')
      expect(await limitSeen(b, key)).toBe(10)

      // Down: the message is lost; B's view, cached just now, is kept for one second only.
      set(false)
      await a.accounts.setTier('acct_1', 'big')
      expect(await limitSeen(b, key)).toBe(10)
      clock.advance(999)
      expect(await limitSeen(b, key)).toBe(10)
      // The management read is the store's, cached or not.
      expect((await b.accounts.get('acct_1')).tier).toBe('big')
      clock.advance(1)
      expect(await limitSeen(b, key)).toBe(1000)

      // A change missed while down shows as soon as the feed is back, with no time passing.
      await a.accounts.addCredits('acct_1', 7)
      expect(await limitSeen(b, key)).toBe(1000)
      set(true)
      expect(await limitSeen(b, key)).toBe(1007)
      // Up again: the TTL alone bounds the cache.
      clock.advance(599_000)
      await memory.accounts.addBalance('acct_1', 1) // behind tollbooth's back: no message
      expect(await limitSeen(b, key)).toBe(1007)
    } finally {
      await Promise.all([a.close(), b.close()])
    }
  })

  it('takes a feed whose subscribe rejected as down until it reports delivering', async () => {
    const clock = manualClock(Date.UTC(2026, 0, 15, 12))
    const memory = memoryStorage()
    let report: ((live: boolean) => void) | undefined
    const feed: ChangeFeed = {
      publish: async () => {},
      async subscribe(_listener, options) {
        report = options?.onStatus
        throw new Error('not yet')
      },
    }
    const errors: unknown[] = []
    const tb = createTollbooth({
      secret: SECRET,
      clock,
      storage: { ...memory, changes: feed },
      cache: { ttlMs: 600_000, negativeTtlMs: 600_000, max: 100, feedDownTtlMs: 1000 },
      plans: { pro: { monthlyCredits: 10 } },
      defaultTier: 'pro',
      onError: (e: unknown) => errors.push(e),
    })
    await new Promise((r) => setTimeout(r, 0))
    try {
      expect(errors).toHaveLength(1)
      const { key } = await tb.keys.create({ accountId: 'acct_2' })
      expect(await limitSeen(tb, key)).toBe(10)
      await memory.accounts.addBalance('acct_2', 3) // no message can tell tb
      clock.advance(999)
      expect(await limitSeen(tb, key)).toBe(10)
      clock.advance(1)
      expect(await limitSeen(tb, key)).toBe(13)
      // The feed catches up and says so: from now on only the TTL bounds the cache.
      report?.(true)
      expect(await limitSeen(tb, key)).toBe(13)
      await memory.accounts.addBalance('acct_2', 1)
      clock.advance(5000)
      expect(await limitSeen(tb, key)).toBe(13)
    } finally {
      await tb.close()
    }
  })

  it('reports a feed gone silent once, through onError and stats(), and once when it delivers again', async () => {
    const { feed, mute } = switchableFeed()
    const { tb, errors } = probed(feed)
    const feedStats = () => tb.stats().feed
    try {
      await until(() => errors.length === 0 && feedStats()?.delivering === true, 1000)
      expect(feedStats()).toEqual({ delivering: true, silent: false, silences: 0 })

      // Messages stop arriving, and the feed says nothing of it.
      mute(true)
      await until(() => errors.length > 0, 1000)
      // Ten more probe periods go unheard: still one report.
      await new Promise((r) => setTimeout(r, 500))
      expect(errors).toHaveLength(1)
      const silent = errors[0]
      expect(isTollboothError(silent) && silent.code).toBe('storage_unavailable')
      expect((silent as Error).message).toMatch(
        /change feed.*cache\.feedProbeMs \(50 ms\).*cache\.feedDownTtlMs \(5000 ms\).*pooler.*listenPool.*load balancer/s,
      )
      expect(feedStats()).toEqual({ delivering: false, silent: true, silences: 1 })

      // Delivering again: said once, as no error of the store.
      mute(false)
      await until(() => errors.length > 1, 1000)
      await new Promise((r) => setTimeout(r, 300))
      expect(errors).toHaveLength(2)
      expect(isTollboothError(errors[1])).toBe(false)
      expect((errors[1] as Error).message).toMatch(/change feed delivers again.*silent for \d+ ms/)
      expect(feedStats()).toEqual({ delivering: true, silent: false, silences: 1 })

      // A second silence is a second transition: reported again.
      mute(true)
      await until(() => errors.length > 2, 1000)
      expect(feedStats()).toEqual({ delivering: false, silent: true, silences: 2 })
    } finally {
      await tb.close()
    }
  })

  it('does not call a feed that said it is down silent, nor count a probe lost meanwhile', async () => {
    const { feed, set } = switchableFeed()
    const { tb, errors } = probed(feed)
    try {
      await new Promise((r) => setTimeout(r, 120))
      // Down and saying so (a connection dropped, reconnecting): its own report is the news.
      set(false)
      await new Promise((r) => setTimeout(r, 300))
      expect(tb.stats().feed).toEqual({ delivering: false, silent: false, silences: 0 })
      // Back: the probes sent while down were lost, and are not taken for silence.
      set(true)
      await until(() => tb.stats().feed?.delivering === true, 1000)
      await new Promise((r) => setTimeout(r, 300))
      expect(errors).toEqual([])
      expect(tb.stats().feed).toEqual({ delivering: true, silent: false, silences: 0 })
    } finally {
      await tb.close()
    }
  })

  it('names a probe the store would not publish, with its error as the cause', async () => {
    const refusal = new Error('NOPERM this user has no permissions to access the channel')
    const feed: ChangeFeed = {
      publish: async () => {
        throw refusal
      },
      subscribe: async () => () => {},
    }
    const { tb, errors } = probed(feed)
    try {
      await until(() => errors.length > 0, 1000)
      expect((errors[0] as Error).message).toMatch(
        /^change feed silent: .*could not be published through the storage's change feed/,
      )
      expect((errors[0] as Error).cause).toBe(refusal)
    } finally {
      await tb.close()
    }
  })

  it('shows no feed figures without a change feed', async () => {
    const tb = createTollbooth({ secret: SECRET, storage: memoryStorage() })
    expect(tb.stats().feed).toBeNull()
    await tb.close()
  })

  it('takes cache.feedProbeMs as 0 or an integer >= 50, and names it otherwise', async () => {
    for (const bad of [10, -1, 1.5, '100'])
      expect(() =>
        createTollbooth({
          secret: SECRET,
          storage: memoryStorage(),
          cache: { feedProbeMs: bad as number },
        }),
      ).toThrow(/options\.cache\.feedProbeMs/)
    for (const good of [0, 50, 60_000])
      await createTollbooth({
        secret: SECRET,
        storage: memoryStorage(),
        cache: { feedProbeMs: good },
      }).close()
  })
})
