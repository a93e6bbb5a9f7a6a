/**
 * @module response-end.test
 *
 * The end-of-response rule on its own, without a server: a body written in full settles at
 * once; a client gone settles with 499 when the handler's work is done, or at the route's
 * `abortSettleMs`; never twice. And the abort policy of settle: an aborted request is billed
 * what its handler reported (its hold refunded when it reported nothing), and `chargeWhen`
 * sees the outcome, its one-argument form still working.
 */

import { describe, expect, it } from 'vitest'
import { admitted, req, setup } from '../test/metering/helpers.js'
import type { Admission } from './decision.js'
import { isTollboothError } from './errors.js'
import {
  beginWork,
  clientGone,
  drainBody,
  endWork,
  headSent,
  keepAlive,
  responseEnded,
  responseStarted,
  watchBody,
} from './response-end.js'
import type { Outcome } from './settle.js'
import type { Tollbooth } from './tollbooth.js'

const metered = { plans: { pro: { monthlyCredits: 100 } }, defaultTier: 'pro' }

/** Records what settleLater is called with. */
function recording(tb: Tollbooth): Outcome[] {
  const seen: Outcome[] = []
  const settleLater = tb.settleLater.bind(tb)
  tb.settleLater = (d, o) => {
    if (!d.allowed || !(d as Admission).settled) seen.push(o)
    settleLater(d, o)
  }
  return seen
}

describe('response end', () => {
  it('settles a body written in full at once, with the time to first byte', async () => {
    const { tb, clock, key } = await setup(metered)
    const seen = recording(tb)
    const d = admitted(await tb.authenticate(req(key), tb.route({ cost: 5 })))
    clock.advance(30)
    responseStarted(tb, d)
    clock.advance(70)
    responseStarted(tb, d) // the first one counts
    responseEnded(tb, d, 200)
    responseEnded(tb, d, 200)
    clientGone(tb, d, tb.route())
    expect(seen).toEqual([{ status: 200, outcome: 'completed', ttfbMs: 30 }])
    expect((await tb.accounts.get('acct_1')).credits.used).toBe(5)
  })

  it('settles a HEAD with its status once the handler work ends, charging its report; a client gone after the head changes nothing', async () => {
    const { tb, key } = await setup(metered)
    const seen = recording(tb)
    const route = tb.route({ cost: 10 })
    const d = admitted(await tb.authenticate(req(key), route))
    beginWork(d) // the stream it produces
    endWork(d) // the handler returned
    headSent(tb, d, route, 200)
    clientGone(tb, d, route)
    responseEnded(tb, d, 200)
    expect(seen).toEqual([])
    d.report({ cost: 4 })
    endWork(d)
    expect(seen).toEqual([{ status: 200, outcome: 'completed' }])
    await tb.flush()
    expect((await tb.accounts.get('acct_1')).credits.used).toBe(4)
  })

  it('drains a HEAD body to its end, settling then; the branch it returns may go unread', async () => {
    const { tb, key } = await setup(metered)
    const seen = recording(tb)
    const route = tb.route({ cost: 10 })
    const d = admitted(await tb.authenticate(req(key), route))
    let pulled = 0
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (pulled++ === 3) {
          d.report({ cost: 7 })
          controller.close()
        } else controller.enqueue(new Uint8Array([pulled]))
      },
    })
    const theirs = drainBody(tb, d, { route, body, status: 200 })
    expect(theirs).toBeInstanceOf(ReadableStream)
    endWork(d) // the handler returned
    for (let i = 0; i < 50 && seen.length === 0; i++) await new Promise((r) => setTimeout(r, 1))
    expect(pulled).toBe(4)
    expect(seen).toEqual([{ status: 200, outcome: 'completed' }])
    await tb.flush()
    expect((await tb.accounts.get('acct_1')).credits.used).toBe(7)
  })

  it('settles a request whose client went away when the handler work ends, charging its report', async () => {
    const { tb, key } = await setup(metered)
    const seen = recording(tb)
    const route = tb.route({ cost: 10 })
    const d = admitted(await tb.authenticate(req(key), route))
    beginWork(d) // a stream the handler returned
    endWork(d) // the handler returned
    clientGone(tb, d, route)
    expect(seen).toEqual([])
    expect(d.settled).toBe(false)
    d.report({ cost: 4 }) // on its way out
    endWork(d)
    expect(seen).toEqual([{ status: 499, outcome: 'aborted' }])
    endWork(d)
    responseEnded(tb, d, 200)
    expect(seen).toHaveLength(1)
    expect((await tb.accounts.get('acct_1')).credits.used).toBe(4)
  })

  it('settles at abortSettleMs a request whose handler never ends', async () => {
    const { tb, key } = await setup(metered)
    const seen = recording(tb)
    const route = tb.route({ cost: 10, abortSettleMs: 40 })
    const d = admitted(await tb.authenticate(req(key), route))
    clientGone(tb, d, route)
    await new Promise((r) => setTimeout(r, 20))
    expect(seen).toEqual([])
    await new Promise((r) => setTimeout(r, 60))
    expect(seen).toEqual([{ status: 499, outcome: 'aborted' }])
    endWork(d)
    expect(seen).toHaveLength(1)
    // It reported nothing: the hold is refunded.
    expect((await tb.accounts.get('acct_1')).credits.used).toBe(0)
  })

  it('keeps the abort when a body is read to its end after the client went away', async () => {
    const { tb, key } = await setup(metered)
    const seen = recording(tb)
    const route = tb.route({ cost: 10 })
    const d = admitted(await tb.authenticate(req(key), route))
    clientGone(tb, d, route) // before the answer
    d.report({ cost: 4 })
    beginWork(d) // the body, wrapped after the handler answered
    endWork(d) // the handler returned
    // The runtime reads the body to its end for the closed connection (Deno does).
    responseEnded(tb, d, 200)
    expect(seen).toEqual([])
    endWork(d)
    expect(seen).toEqual([{ status: 499, outcome: 'aborted' }])
    expect((await tb.accounts.get('acct_1')).credits.used).toBe(4)
  })

  it('on Workers, settles an answer nothing reads at abortSettleMs, and ends the waitUntil after its writes', async () => {
    const { tb, key } = await setup(metered)
    const seen = recording(tb)
    const route = tb.route({ cost: 10, abortSettleMs: 150 })
    const d = admitted(await tb.authenticate(req(key), route))
    const kept: Array<Promise<void>> = []
    const waitUntil = (p: Promise<void>) => kept.push(p)
    keepAlive(d, waitUntil) // at admission
    d.report({ cost: 4 })
    const body = new Response('{"late":true}').body!
    const out = watchBody(tb, d, { route, body, status: 200, waitUntil })
    endWork(d) // the handler returned
    const reader = out.getReader()
    await reader.read() // the runtime takes the first chunk, then neither reads nor cancels
    expect(kept).toHaveLength(1)
    let ended = false
    void kept[0]!.then(() => (ended = true))
    await new Promise((r) => setTimeout(r, 20))
    expect(seen).toEqual([])
    expect(ended).toBe(false)
    await new Promise((r) => setTimeout(r, 250))
    expect(seen).toEqual([{ status: 499, outcome: 'aborted' }])
    await kept[0]
    expect((await tb.accounts.get('acct_1')).credits.used).toBe(4)
  })

  it('without waitUntil, waits for the body however long nothing reads it', async () => {
    const { tb, key } = await setup(metered)
    const seen = recording(tb)
    const route = tb.route({ cost: 10, abortSettleMs: 20 })
    const d = admitted(await tb.authenticate(req(key), route))
    const out = watchBody(tb, d, { route, body: new Response('ok').body!, status: 200 })
    endWork(d)
    await new Promise((r) => setTimeout(r, 60))
    expect(seen).toEqual([])
    expect(await new Response(out).text()).toBe('ok')
    expect(seen).toEqual([{ status: 200, outcome: 'completed' }])
  })

  it('throws a ConfigError naming a bad abortSettleMs', async () => {
    const { tb } = await setup(metered)
    expect(() => tb.route({ abortSettleMs: -1 })).toThrow(/abortSettleMs/)
    expect(() => tb.route({ abortSettleMs: 1.5 })).toThrow(/abortSettleMs/)
  })
})

describe('Admission.waitUntil', () => {
  /** A promise and the function that resolves it. */
  function deferred(): { promise: Promise<void>; resolve(): void } {
    let resolve = () => {}
    const promise = new Promise<void>((r) => (resolve = r))
    return { promise, resolve }
  }
  const tick = (ms = 5) => new Promise((r) => setTimeout(r, ms))

  it('a body written in full settles once the promises given have ended, with what they reported', async () => {
    const { tb, key } = await setup(metered)
    const seen = recording(tb)
    const route = tb.route({ cost: 10 })
    const d = admitted(await tb.authenticate(req(key), route))
    const out = watchBody(tb, d, { route, body: new Response('ok').body!, status: 200 })
    endWork(d) // the handler returned
    const first = deferred()
    const second = deferred()
    d.waitUntil(first.promise.then(() => d.report({ cost: 7 })))
    d.waitUntil(second.promise)
    expect(await new Response(out).text()).toBe('ok')
    await tick()
    expect(seen).toEqual([])
    first.resolve()
    await tick()
    expect(seen).toEqual([])
    second.resolve()
    await tick()
    expect(seen).toEqual([{ status: 200, outcome: 'completed' }])
    expect((await tb.accounts.get('acct_1')).credits.used).toBe(7)
  })

  it('a client gone settles 499 once the handler and the promises have ended, within one abortSettleMs', async () => {
    const { tb, key } = await setup(metered)
    const seen = recording(tb)
    const route = tb.route({ cost: 10, abortSettleMs: 150 })
    const d = admitted(await tb.authenticate(req(key), route))
    const late = deferred()
    d.waitUntil(late.promise)
    clientGone(tb, d, route)
    endWork(d) // the handler ended; the promise has not
    await tick(20)
    expect(seen).toEqual([])
    late.resolve()
    await tick()
    expect(seen).toEqual([{ status: 499, outcome: 'aborted' }])
    // One that never ends: settled by the deadline that started when the client left.
    const d2 = admitted(await tb.authenticate(req(key), route))
    d2.report({ cost: 3 })
    clientGone(tb, d2, route)
    d2.waitUntil(new Promise(() => {}))
    await tick(100)
    endWork(d2)
    await tick(20)
    expect(seen).toHaveLength(1)
    await tick(100)
    expect(seen).toEqual([
      { status: 499, outcome: 'aborted' },
      { status: 499, outcome: 'aborted' },
    ])
    expect((await tb.accounts.get('acct_1')).credits.used).toBe(3)
  })

  it('a rejection is reported and ends the wait; a non-promise is refused; after the settle it does nothing', async () => {
    const errors: unknown[] = []
    const { tb, key } = await setup({ ...metered, onError: (err) => errors.push(err) })
    const seen = recording(tb)
    const route = tb.route({ cost: 10 })
    const d = admitted(await tb.authenticate(req(key), route))
    // In the format of every bad argument: the call, the argument, what it must be, what came.
    const refused = (v: unknown) => {
      try {
        d.waitUntil(v as never)
      } catch (err) {
        return isTollboothError(err) ? `${err.code}: ${err.message}` : err
      }
      return 'not refused'
    }
    const must = 'config_invalid: apiKey.waitUntil: promise must be a promise or thenable, got'
    expect(refused(42)).toBe(`${must} 42`)
    expect(refused(undefined)).toBe(`${must} undefined`)
    expect(refused(() => {})).toBe(`${must} a function`)
    expect(refused({})).toBe(`${must} an object`)
    // A string is shown by its length only, as for an option that takes no text.
    expect(refused('sk-live-123')).toBe(`${must} a string of 11 characters`)
    d.waitUntil(Promise.reject(new Error('upstream gone')))
    endWork(d)
    responseEnded(tb, d, 200)
    await tick()
    expect(seen).toEqual([{ status: 200, outcome: 'completed' }])
    expect(errors).toEqual([new Error('upstream gone')])
    d.waitUntil(new Promise(() => {}))
    responseEnded(tb, d, 200)
    expect(seen).toHaveLength(1)
    expect((await tb.accounts.get('acct_1')).credits.used).toBe(10)
  })
})

describe('Admission.waitUntil: thenables', () => {
  const tick = (ms = 5) => new Promise((r) => setTimeout(r, ms))

  it('a thenable whose then throws is a rejection: reported, not thrown at the caller, and the settle does not wait for it', async () => {
    const errors: unknown[] = []
    const { tb, key } = await setup({ ...metered, onError: (err) => errors.push(err) })
    const seen = recording(tb)
    const route = tb.route({ cost: 10, abortSettleMs: 60_000 })
    const d = admitted(await tb.authenticate(req(key), route))
    const broken = {
      // biome-ignore lint/suspicious/noThenProperty: a thenable is what is tested
      then() {
        throw new Error('not a real promise')
      },
    }
    expect(() => d.waitUntil(broken)).not.toThrow()
    endWork(d)
    await tick()
    responseEnded(tb, d, 200)
    await tick()
    expect(seen).toEqual([{ status: 200, outcome: 'completed' }])
    expect(errors).toEqual([new Error('not a real promise')])
  })

  it('a thenable that calls back twice counts as one promise: the settle still waits for the others', async () => {
    const { tb, key } = await setup(metered)
    const seen = recording(tb)
    const route = tb.route({ cost: 10, abortSettleMs: 60_000 })
    const d = admitted(await tb.authenticate(req(key), route))
    let release = () => {}
    d.waitUntil(new Promise<void>((r) => (release = r)).then(() => d.report({ cost: 7 })))
    const twice = {
      // biome-ignore lint/suspicious/noThenProperty: a thenable is what is tested
      then(resolve: (v: unknown) => void) {
        resolve(1)
        resolve(2)
      },
    }
    d.waitUntil(twice as unknown as PromiseLike<unknown>)
    endWork(d)
    responseEnded(tb, d, 200)
    await tick()
    expect(seen).toEqual([])
    release()
    await tick()
    expect(seen).toEqual([{ status: 200, outcome: 'completed' }])
    expect((await tb.accounts.get('acct_1')).credits.used).toBe(7)
  })
})

describe('settle: the abort policy', () => {
  it('bills an aborted request what its handler reported, and nothing when it reported nothing', async () => {
    const { tb, key } = await setup(metered)
    const route = tb.route({ cost: 10 })
    const reported = admitted(await tb.authenticate(req(key), route))
    reported.report({ cost: 3 })
    expect((await tb.settle(reported, { status: 499 }))?.units).toBe(3)
    const silent = admitted(await tb.authenticate(req(key), route))
    expect((await tb.settle(silent, { status: 499, outcome: 'aborted' }))?.units).toBe(0)
    expect((await tb.accounts.get('acct_1')).credits.used).toBe(3)
  })

  it('gives chargeWhen the outcome; the one-argument form still decides by status', async () => {
    const { tb, key } = await setup(metered)
    const calls: unknown[][] = []
    const withInfo = tb.route({
      cost: 10,
      chargeWhen: (status, info) => {
        calls.push([status, info])
        return info.outcome === 'completed' && status < 400
      },
    })
    const a = admitted(await tb.authenticate(req(key), withInfo))
    a.report({ cost: 2 })
    expect((await tb.settle(a, { status: 499 }))?.units).toBe(0)
    const e = admitted(await tb.authenticate(req(key), withInfo))
    expect((await tb.settle(e, { status: 200, outcome: 'error' }))?.units).toBe(0)
    expect(calls).toEqual([
      [499, { outcome: 'aborted', reported: true }],
      [200, { outcome: 'error', reported: false }],
    ])
    const byStatus = tb.route({ cost: 10, chargeWhen: (status) => status < 400 })
    const b = admitted(await tb.authenticate(req(key), byStatus))
    b.report({ cost: 2 })
    expect((await tb.settle(b, { status: 499 }))?.units).toBe(0)
    expect((await tb.accounts.get('acct_1')).credits.used).toBe(0)
  })
})
