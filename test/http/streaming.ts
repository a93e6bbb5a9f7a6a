/**
 * @module test/http/streaming
 *
 * Streamed responses on every framework adapter, over real HTTP: `describeStreaming(name,
 * startServer)` serves a stream of server-sent events the framework's own way (see
 * `TestRoute.stream`) and checks that the request settles at the true end of the response.
 *
 * - A stream of 20 events over >= 200 ms that reports its usage after the last one is charged
 *   exactly that; a key limited to 1 request in flight is refused (429) for the whole stream
 *   and admitted right after it.
 * - A client that closes after 5 of 20 events: the request settles once, with 499, when the
 *   handler has finished (its slot taken until then), charged what the handler reported under
 *   the default policy and refunded under a `chargeWhen` that refuses 499; no unhandled
 *   rejection on the way.
 * - A handler that reports after the last event through `waitUntil` is charged that, its slot
 *   held until the promise ends.
 */

import { connect } from 'node:net'
import { afterEach, describe, expect, test } from 'vitest'
import type { Admission } from '../../src/index.js'
import {
  eventually,
  gate,
  type Harness,
  harness,
  type StartServer,
  type StreamProgress,
  type TestRoute,
} from './harness.js'

const PLAN = { plans: { pro: { monthlyCredits: 1000 } }, defaultTier: 'pro' }
const ok = (): TestRoute => ({ path: '/v1/ok', handle: () => ({}) })
const STREAM = { count: 20, intervalMs: 12 }

/** Reads server-sent events off a fetch body, one at a time. */
function eventsOf(body: ReadableStream<Uint8Array>) {
  const reader = body.getReader()
  const decoder = new TextDecoder()
  let buffer = ''
  return {
    /** The next event's data, or null at the end of the stream. */
    async next(): Promise<string | null> {
      for (;;) {
        const end = buffer.indexOf('\n\n')
        if (end >= 0) {
          const event = buffer.slice(0, end)
          buffer = buffer.slice(end + 2)
          const data = event.split('\n').find((l) => l.startsWith('data: '))
          if (data !== undefined) return data.slice(6)
          continue
        }
        const { done, value } = await reader.read()
        if (done) return null
        buffer += decoder.decode(value, { stream: true })
      }
    },
    cancel: () => reader.cancel(),
  }
}

export function describeStreaming(name: string, startServer: StartServer): void {
  describe(`requireApiKey on ${name}, streamed responses`, () => {
    let h: Harness | undefined
    const rejections: unknown[] = []
    const onRejection = (reason: unknown) => rejections.push(reason)
    const start = async (routes: TestRoute[]) => {
      process.on('unhandledRejection', onRejection)
      h = await harness(startServer, routes, PLAN)
      return h
    }
    const open = (path: string, key: string, signal?: AbortSignal) =>
      fetch(h!.url + path, {
        headers: { authorization: `Bearer ${key}` },
        ...(signal ? { signal } : {}),
      })

    afterEach(async () => {
      process.off('unhandledRejection', onRejection)
      if (!h) return
      await h.close()
      h = undefined
      expect(rejections).toEqual([])
      rejections.length = 0
    })

    test('charges the usage reported after the last event and holds the slot until the end', async () => {
      const h = await start([
        ok(),
        {
          path: '/v1/stream',
          options: { cost: 100 },
          stream: STREAM,
          handle: (k) => k.report({ cost: 42, tokens: 1234 }),
        },
      ])
      const { key } = await h.tb.keys.create({ accountId: 'acct_1', limits: { concurrency: 1 } })
      const began = Date.now()
      const res = await open('/v1/stream', key)
      expect(res.status).toBe(200)
      expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/)
      const events = eventsOf(res.body!)
      const seen: string[] = []
      for (let data = await events.next(); data !== null; data = await events.next()) {
        seen.push(data)
        // A second request while the stream runs: refused, from its start to its last quarter
        // (later, the client may be reading events the server has already finished writing).
        if (seen.length % 5 === 1 && seen.length < 16) {
          const busy = await open('/v1/ok', key)
          expect(busy.status).toBe(429)
          expect(((await busy.json()) as { code: string }).code).toBe('concurrency_limited')
        }
      }
      expect(seen).toEqual(Array.from({ length: 20 }, (_, i) => String(i)))
      expect(Date.now() - began).toBeGreaterThanOrEqual(200)
      // Right after the last byte: admitted.
      expect((await open('/v1/ok', key)).status).toBe(200)
      await eventually(() => h.settled.filter((s) => s.event).length === 2, 'both to settle')
      const streamed = h.settled.find((s) => s.event?.path === '/v1/stream')!
      expect(streamed.status).toBe(200)
      expect(streamed.event).toMatchObject({ status: 200, units: 42, tokens: 1234 })
      expect((await h.tb.accounts.get('acct_1')).credits.used).toBe(42)
      expect(h.settled).toHaveLength(2)
    })

    // A figure known only after the last byte (an upstream's final count), given to waitUntil:
    // before, the request settled at the end of the body with the route's cost (100).
    test('a stream whose handler reports after an await given to waitUntil is charged that, its slot held until then', async () => {
      const h = await start([
        ok(),
        {
          path: '/v1/stream',
          options: { cost: 100 },
          stream: STREAM,
          handle: (k) =>
            k.waitUntil(
              new Promise((done) => setTimeout(done, 300)).then(() => k.report({ cost: 42 })),
            ),
        },
      ])
      const { key } = await h.tb.keys.create({ accountId: 'acct_1', limits: { concurrency: 1 } })
      const res = await open('/v1/stream', key)
      const events = eventsOf(res.body!)
      let count = 0
      while ((await events.next()) !== null) count++
      expect(count).toBe(20)
      const ended = Date.now()
      // The body has ended; the figure has not come yet: the slot is still taken.
      const busy = await open('/v1/ok', key)
      expect(busy.status).toBe(429)
      await busy.body?.cancel()
      await eventually(
        () => h.settled.some((s) => s.event?.path === '/v1/stream'),
        'the stream to settle',
      )
      expect(Date.now() - ended).toBeGreaterThanOrEqual(200)
      const streamed = h.settled.find((s) => s.event?.path === '/v1/stream')!
      expect(streamed.event).toMatchObject({ status: 200, units: 42 })
      expect((await h.tb.accounts.get('acct_1')).credits.used).toBe(42)
    })

    // A body handed on as a web ReadableStream (an upstream's, passed through): its end is the
    // handler's, and a client gone mid-stream is told through its cancel, where what the
    // upstream used is known.
    test('a web ReadableStream body: charged what it reported at its end, or in its cancel when the client left', async () => {
      const windDown = gate()
      let cancelled = false
      const h = await start([
        ok(),
        {
          path: '/v1/web',
          options: { cost: 100 },
          stream: { count: 5, intervalMs: 5 },
          web: true,
          handle: (k) => k.report({ cost: 4 }),
        },
        {
          path: '/v1/cancelled',
          options: { cost: 100 },
          stream: STREAM,
          web: true,
          async handle(k: Admission, progress?: StreamProgress) {
            cancelled = progress!.aborted
            await windDown.promise
            k.report({ cost: progress!.sent })
          },
        },
      ])
      const { key } = await h.tb.keys.create({ accountId: 'acct_1', limits: { concurrency: 1 } })
      const done = await open('/v1/web', key)
      expect(done.status).toBe(200)
      expect((await done.text()).match(/data: /g)).toHaveLength(5)
      await eventually(() => !!h.settled[0]?.event, 'the whole stream to settle')
      expect(h.settled[0]!.event).toMatchObject({ path: '/v1/web', status: 200, units: 4 })
      const ac = new AbortController()
      const res = await open('/v1/cancelled', key, ac.signal)
      const events = eventsOf(res.body!)
      for (let i = 0; i < 3; i++) expect(await events.next()).toBe(String(i))
      ac.abort()
      await events.cancel().catch(() => {})
      await eventually(() => cancelled, 'the body to be cancelled')
      // Its cancel has not finished: nothing settled, the slot still taken.
      expect((await open('/v1/ok', key)).status).toBe(429)
      expect(h.settled).toHaveLength(1)
      windDown.open()
      await eventually(() => !!h.settled[1]?.event, 'the aborted request to settle')
      const sent = h.settled[1]!.event!.units
      expect(sent).toBeGreaterThanOrEqual(3)
      expect(h.settled[1]!.event).toMatchObject({ path: '/v1/cancelled', status: 499 })
      expect((await open('/v1/ok', key)).status).toBe(200)
      await eventually(() => h.settled.length === 3, 'the next request to settle')
      expect((await h.tb.accounts.get('acct_1')).credits.used).toBe(4 + sent)
    })

    // HEAD runs the handler as GET does and sends no body: it is billed what the handler
    // reports, as the GET is (the route's cost only when it reports nothing). Hono settled it
    // when the guard returned, before the stream reported: the route's 100 credits instead.
    test.each([
      ["the framework's own streaming", false],
      ['a web ReadableStream body', true],
    ])(
      'HEAD on a streamed route (%s) is billed what its handler reports, as GET',
      async (_, web) => {
        const h = await start([
          ok(),
          {
            path: '/v1/stream',
            options: { cost: 100 },
            stream: { count: 5, intervalMs: 5 },
            ...(web ? { web: true } : {}),
            handle: (k) => k.report({ cost: 42, tokens: 1234 }),
          },
        ])
        const { key } = await h.tb.keys.create({ accountId: 'acct_1', limits: { concurrency: 1 } })
        const res = await fetch(`${h.url}/v1/stream`, {
          method: 'HEAD',
          headers: { authorization: `Bearer ${key}` },
        })
        expect(res.status).toBe(200)
        expect(await res.text()).toBe('')
        await eventually(() => !!h.settled[0]?.event, 'the HEAD to settle')
        expect(h.settled[0]!.event).toMatchObject({ method: 'HEAD', status: 200, units: 42 })
        expect((await h.tb.accounts.get('acct_1')).credits.used).toBe(42)
        expect((await open('/v1/ok', key)).status).toBe(200)
        await eventually(() => h.settled.length === 2, 'the next request to settle')
        expect(h.settled.filter((s) => s.event?.path === '/v1/stream')).toHaveLength(1)
      },
    )

    // HTTP/1.1 pipelining: a streamed response queued behind a slow one on its connection has
    // no socket; when the client closes the connection, Node drops it without a `close`, so
    // nothing cancelled its body (a piped stream, a web ReadableStream) and it waited for
    // `abortSettleMs` (5 minutes), its hold and slot taken. It settles 499 at once, charged
    // what its body reported when cancelled.
    test('a streamed response pipelined behind a slow one settles 499 when the client closes the connection', async () => {
      const hold = gate()
      let stopped: StreamProgress | undefined
      const h = await start([
        ok(),
        { path: '/v1/slow', handle: () => hold.promise.then(() => ({})) },
        {
          path: '/v1/queued',
          options: { cost: 100 },
          stream: { count: 1000, intervalMs: 5 },
          web: true,
          handle(k: Admission, progress?: StreamProgress) {
            stopped = progress
            k.report({ cost: 7 })
          },
        },
      ])
      const first = await h.tb.keys.create({ accountId: 'acct_1' })
      const { key } = await h.tb.keys.create({ accountId: 'acct_1', limits: { concurrency: 1 } })
      const url = new URL(h.url)
      const socket = connect(Number(url.port), url.hostname)
      socket.on('error', () => {})
      const get = (path: string, k: string) =>
        `GET ${path} HTTP/1.1\r\nHost: ${url.host}\r\nAuthorization: Bearer ${k}\r\n\r\n`
      socket.write(get('/v1/slow', first.key) + get('/v1/queued', key))
      await eventually(() => h.handled.length === 1, 'the slow handler to start')
      // Both admitted, the second one's stream producing into its queued response.
      await new Promise((r) => setTimeout(r, 100))
      expect(h.settled).toHaveLength(0)
      socket.destroy()
      await eventually(() => !!h.settled[0]?.event, 'the queued stream to settle')
      expect(stopped?.aborted).toBe(true)
      expect(h.settled[0]!.event).toMatchObject({ path: '/v1/queued', status: 499, units: 7 })
      // Its slot and its hold are given back.
      expect((await open('/v1/ok', key)).status).toBe(200)
      hold.open()
      await eventually(() => h.settled.length === 3, 'the slow request to settle')
      expect(h.settled.filter((s) => s.event?.path === '/v1/queued')).toHaveLength(1)
      expect((await h.tb.accounts.get('acct_1')).credits.used).toBe(7)
    })

    test.each([
      ['charges what the handler reported by default', undefined, true],
      ['refunds it under a chargeWhen that refuses 499', (s: number) => s < 400, false],
    ] as const)(
      'settles a stream the client closed after 5 of 20 events once, with 499, when its handler ends: %s',
      async (_, chargeWhen, billed) => {
        const windDown = gate()
        let stopped: StreamProgress | undefined
        const h = await start([
          ok(),
          {
            path: '/v1/stream',
            options: { cost: 100, ...(chargeWhen ? { chargeWhen } : {}) },
            stream: STREAM,
            async handle(k: Admission, progress?: StreamProgress) {
              stopped = progress
              // Telling the upstream model to stop takes a while: the slot stays taken.
              await windDown.promise
              k.report({ cost: progress!.sent * 2, tokens: progress!.sent * 10 })
            },
          },
        ])
        const { key } = await h.tb.keys.create({ accountId: 'acct_1', limits: { concurrency: 1 } })
        const ac = new AbortController()
        const res = await open('/v1/stream', key, ac.signal)
        const events = eventsOf(res.body!)
        for (let i = 0; i < 5; i++) expect(await events.next()).toBe(String(i))
        ac.abort()
        await events.cancel().catch(() => {})
        await eventually(() => stopped !== undefined, 'the handler to see the client go')
        expect(stopped!.aborted).toBe(true)
        expect(stopped!.sent).toBeGreaterThanOrEqual(5)
        expect(stopped!.sent).toBeLessThan(20)
        // The handler has not finished: nothing settled, the slot still taken.
        expect(h.settled).toHaveLength(0)
        expect((await open('/v1/ok', key)).status).toBe(429)
        expect(h.settled).toHaveLength(0)
        windDown.open()
        await eventually(() => h.finished.count === 1, 'the handler to end')
        await eventually(() => !!h.settled[0]?.event, 'the aborted request to settle')
        const units = billed ? stopped!.sent * 2 : 0
        expect(h.settled.map((s) => s.status)).toEqual([499])
        expect(h.settled[0]!.event).toMatchObject({
          status: 499,
          units,
          tokens: stopped!.sent * 10,
        })
        expect((await open('/v1/ok', key)).status).toBe(200)
        await eventually(() => h.settled.length === 2, 'the next request to settle')
        // Never a second settle of the aborted request.
        expect(h.settled.filter((s) => s.event?.path === '/v1/stream')).toHaveLength(1)
        expect((await h.tb.accounts.get('acct_1')).credits.used).toBe(units)
      },
    )

    // Longer than the holds' TTL (1 s here, 5 min by default: a reasoning model's stream, a
    // voice session): the instance renews them while the response runs. Before, the slot and
    // the credits lapsed at the TTL: a second request got in at 1.8 s, 120 of 100 credits used.
    test('a stream 3 × the holds TTL keeps its slot and its credits to its end, and is charged its report', async () => {
      process.on('unhandledRejection', onRejection)
      h = await harness(
        startServer,
        [
          ok(),
          { path: '/v1/sixty', options: { cost: 60 }, handle: () => ({}) },
          {
            path: '/v1/long',
            options: { cost: 60 },
            stream: { count: 30, intervalMs: 100 },
            handle: (k) => k.report({ cost: 42 }),
          },
        ],
        {
          plans: { small: { monthlyCredits: 100 } },
          defaultTier: 'small',
          leaseTtlMs: 1000,
          reservationTtlMs: 1000,
          clock: { now: () => Date.now() },
        },
      )
      const one = await h.tb.keys.create({ accountId: 'acct_1', limits: { concurrency: 1 } })
      const other = await h.tb.keys.create({ accountId: 'acct_1' })
      const began = Date.now()
      const res = await open('/v1/long', one.key)
      expect(res.status).toBe(200)
      const events = eventsOf(res.body!)
      let seen = 0
      const refusals: Array<[number, number]> = []
      for (let data = await events.next(); data !== null; data = await events.next()) {
        seen++
        // At about 0.8, 1.4, 2 and 2.6 s: the same key is refused its second slot (429), a
        // sibling key the 60 credits the stream holds (402).
        if (seen % 6 === 2 && seen > 2 && seen < 28) {
          const same = (await h.fetch('/v1/ok', { key: one.key })).status
          refusals.push([same, (await h.fetch('/v1/sixty', { key: other.key })).status])
        }
      }
      expect(seen).toBe(30)
      expect(Date.now() - began).toBeGreaterThanOrEqual(2900)
      expect(refusals).toEqual([
        [429, 402],
        [429, 402],
        [429, 402],
        [429, 402],
      ])
      await eventually(
        () => !!h!.settled.find((s) => s.event?.path === '/v1/long'),
        'the stream to settle',
      )
      expect(h.settled.find((s) => s.event?.path === '/v1/long')!.event).toMatchObject({
        status: 200,
        units: 42,
      })
      expect((await h.tb.accounts.get('acct_1')).credits.used).toBe(42)
      // Its slot is free once it settled.
      expect((await open('/v1/ok', one.key)).status).toBe(200)
    })

    /** A stream of `count` events 20 ms apart reporting 1 credit an event (of 100 held). */
    const reporting = (count: number): TestRoute => ({
      path: '/v1/stream',
      options: { cost: 100 },
      stream: { count, intervalMs: 20, each: (k, sent) => k.report({ cost: sent }) },
      handle: () => {},
    })
    /** Key `key`'s usage events, its account's credits used and its slot's hold, once closed. */
    const afterClose = async (accountId: string, keyId: string) => {
      const storage = h!.tb.storage
      const events = (await storage.usage.logs(keyId, { limit: 10 })).data
      const used = (await h!.tb.accounts.get(accountId)).credits.used
      const slot = await storage.counters.held(`{${accountId}}:k:${keyId}:c`, h!.clock.now())
      return { events: events.map((e) => `${e.status} ${e.units}`), used, slot }
    }

    test('tb.close() waits for a stream open at close(): recorded with its status and what it reported', async () => {
      const h = await start([reporting(15)])
      const { key, record } = await h.tb.keys.create({
        accountId: 'acct_close',
        limits: { concurrency: 1 },
      })
      const res = await open('/v1/stream', key)
      const events = eventsOf(res.body!)
      expect(await events.next()).toBe('0')
      const read = (async () => {
        while ((await events.next()) !== null);
      })()
      // About 300 ms of the stream to go: within close()'s wait.
      await h.tb.close()
      await read
      // Before: close() returned at once, the stream settled after it, its event never
      // written (none recorded) and its 100 credits held.
      expect(await afterClose('acct_close', record.id)).toEqual({
        events: ['200 15'],
        used: 15,
        slot: 0,
      })
    })

    test('tb.close({ waitMs }) settles a response already sent, waiting for waitUntil(), with its own status', async () => {
      let finish = () => {}
      const h = await start([
        {
          path: '/v1/sent',
          options: { cost: 3 },
          // A background write after the answer, longer than close()'s wait.
          handle: (k) => {
            k.waitUntil(new Promise<void>((r) => (finish = r)))
            return {}
          },
        },
      ])
      const { key, record } = await h.tb.keys.create({
        accountId: 'acct_close_sent',
        limits: { concurrency: 1 },
      })
      const res = await open('/v1/sent', key)
      expect(res.status).toBe(200)
      await res.arrayBuffer()
      await h.tb.close({ waitMs: 50 })
      finish()
      // The client got its 200: recorded 200 and charged the route's 3 credits, slot free
      // (before: recorded 499 and charged 0, as a client gone with nothing reported).
      expect(await afterClose('acct_close_sent', record.id)).toEqual({
        events: ['200 3'],
        used: 3,
        slot: 0,
      })
    })

    test('tb.close({ waitMs }) settles a stream still running then as aborted, with what it reported', async () => {
      const h = await start([reporting(10_000)])
      const { key, record } = await h.tb.keys.create({
        accountId: 'acct_close_cut',
        limits: { concurrency: 1 },
      })
      const ac = new AbortController()
      const res = await open('/v1/stream', key, ac.signal)
      const events = eventsOf(res.body!)
      for (let i = 0; i < 3; i++) expect(await events.next()).toBe(String(i))
      await h.tb.close({ waitMs: 100 })
      const after = await afterClose('acct_close_cut', record.id)
      ac.abort()
      await events.cancel().catch(() => {})
      // Settled once, 499, charged what it had reported (an event a credit) when close() cut
      // it; nothing held (before: no event, 100 credits and the slot held).
      expect(after.events).toHaveLength(1)
      const [status, units] = after.events[0]!.split(' ').map(Number)
      expect(status).toBe(499)
      expect(units).toBeGreaterThanOrEqual(3)
      expect(after.used).toBe(units)
      expect(after.slot).toBe(0)
      // The stream's later reports change nothing.
      await new Promise((r) => setTimeout(r, 100))
      expect((await afterClose('acct_close_cut', record.id)).used).toBe(units)
    })
  })
}
