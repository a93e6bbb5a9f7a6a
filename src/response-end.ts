/**
 * @module response-end
 *
 * When an admitted request settles: at the true end of its response, one rule that every
 * adapter feeds with what its framework can see.
 *
 * - The body was written in full (streamed or not): settle now, with the response's status
 *   (`completed`), or 500 when the body failed half-way (`error`).
 * - The client went away first: settle with 499 (`aborted`) once the handler's work is done —
 *   the handler itself and any stream it still produces — so what it reports on its way out
 *   is charged and the concurrency lease is held while it (and the upstream it pays for)
 *   runs. A handler that never finishes is settled at the route's `abortSettleMs` (default:
 *   the lease TTL, after which the lease would have expired anyway).
 *
 * Adapters count the handler's work with {@link beginWork} / {@link endWork} (an admission
 * starts with one unit: the handler), report the end of the body with {@link responseEnded}
 * and a departed client with {@link clientGone}. Each settles at most once (`settle` ignores a
 * second call), so an adapter may report the same end from two places.
 */

import { systemClock } from './clock.js'
import type { Admission } from './decision.js'
import { ConfigError } from './errors.js'
import type { ResolvedRoute } from './options.js'
import { type Outcome, type Settlement, settlementOf } from './settle.js'

/** The status recorded for a client that went away before its response was written. */
export const ABORTED_STATUS = 499

/** What settles a request, as the adapters hold it: a tollbooth instance. */
export interface Settler {
  readonly options: { readonly clock?: { now(): number } | undefined; readonly leaseTtlMs: number }
  settleLater(decision: Admission, outcome: Outcome): void
  /** Waits for settles in flight and writes what they queued (usage events, logs). */
  flush(): Promise<void>
}

/**
 * A request whose client went away, waiting for its handler's work to end; or one whose settle
 * waits for the promises given to `waitUntil()` (`waiting`).
 */
export interface AbortWait {
  tb: Settler
  timer: ReturnType<typeof setTimeout>
  /** What it settles with: 499 (`aborted`), or a HEAD's status (`completed`, see {@link headSent}). */
  outcome?: Outcome
  /** A settle came and waits only for `waitUntil()`'s promises: it is due when they are done. */
  waiting?: boolean
}

/** An admission's settlement: every admission has one. */
const state = (d: Admission) => settlementOf(d) as Settlement

/**
 * Settles now, unless promises given to `waitUntil()` are pending: then once they are, at the
 * latest at the deadline of a departed client's wait already running, else `waitMs` from now
 * (`force`: that deadline has come). The first outcome to wait stands.
 */
function settleNow(tb: Settler, d: Admission, outcome: Outcome, force = false): void {
  const s = state(d)
  if (s.waits > 0 && !force) {
    const g = s.gone
    if (g === undefined) {
      const timer = setTimeout(() => due(d, true), s.waitMs)
      ;(timer as { unref?: () => void }).unref?.()
      s.gone = { tb, timer, outcome, waiting: true }
    } else if (!g.waiting) {
      g.outcome = outcome
      g.waiting = true
    }
    return
  }
  if (s.gone) clearTimeout(s.gone.timer)
  const kept = s.kept
  s.kept = undefined
  if (s.ttfb >= 0) outcome.ttfbMs = s.ttfb
  tb.settleLater(d, outcome)
  // A Worker kept alive for this request stops once `kept` is called, its pending promises
  // and timers with it: the settle and the writes it queued are waited for first.
  if (kept) tb.flush().then(kept, kept)
}

/** A wait's deadline came, or (`force` false) the last of its `waitUntil()` promises ended. */
function due(d: Admission, force: boolean): void {
  const s = state(d)
  const g = s.gone
  if (s.settled || g === undefined) return
  settleNow(g.tb, d, g.outcome ?? { status: ABORTED_STATUS, outcome: 'aborted' }, force)
}

/**
 * Settles `d` now, as its deadline would (`tb.close()` waited for it long enough): with the
 * outcome its response already had when only its handler's work or `waitUntil()` promises were
 * left (a HEAD's status, a complete body's), else as a departed client's (499, `aborted`,
 * charged what was reported). A 499 for every one made a 200 whose settle waited for a
 * `waitUntil()` charged nothing (3 credits of its route's, test/http/streaming.ts).
 */
export function settleAtDeadline(tb: Settler, d: Admission): void {
  const s = state(d)
  if (s.settled) return
  const g = s.gone
  settleNow(g?.tb ?? tb, d, g?.outcome ?? { status: ABORTED_STATUS, outcome: 'aborted' }, true)
}

/**
 * `Admission.waitUntil(promise)`: the request settles once `promise` has ended, however its
 * response ends (at the latest `waitMs` after it would have settled). A rejection is reported
 * to the instance's `onError` and counts as ended: the settle charges what was reported.
 */
export function waitFor(d: Admission, promise: PromiseLike<unknown>): void {
  const s = state(d)
  if (s.settled) return
  s.waits++
  const ended = () => {
    if (--s.waits === 0 && s.gone?.waiting === true) due(d, false)
  }
  // As a promise: a thenable whose `then` throws is a rejection, and one that calls back twice
  // (or at once) ends once, on a later turn; a promise itself is used as it is.
  Promise.resolve(promise).then(ended, (err: unknown) => {
    // Ended first: an `onError` that throws does not hold the settle to its deadline.
    ended()
    s.onError(err)
  })
}

/** The response head is going out: records the time to first byte (once). */
export function responseStarted(tb: Settler, d: Admission): void {
  const s = state(d)
  if (s.ttfb < 0) s.ttfb = Math.max(0, (tb.options.clock ?? systemClock).now() - s.startedAt)
}

/**
 * The body has been written in full (`completed`), or could not be (`error`, status 500):
 * settles now, whatever the handler is still doing. Unless the client went away first: a
 * runtime may still read a body to its end for a closed connection (Deno does), which
 * delivers nothing, so the abort stands and settles when the handler's work ends.
 */
export function responseEnded(tb: Settler, d: Admission, status: number): void {
  ended(tb, d, { status, outcome: 'completed' })
}

/** {@link responseEnded} with how the body ended: `completed`, or `error` (status 500). */
function ended(tb: Settler, d: Admission, outcome: Outcome): void {
  const s = state(d)
  if (!s.settled && s.gone === undefined) settleNow(tb, d, outcome)
}

/**
 * The client went away before the body was written: settles with 499 once the handler's work
 * is done, or at the route's `abortSettleMs` (default: the instance's `leaseTtlMs`).
 */
export function clientGone(tb: Settler, d: Admission, route: ResolvedRoute): void {
  const s = state(d)
  if (s.settled || s.gone !== undefined) return
  if (s.work <= 0) {
    settleNow(tb, d, { status: ABORTED_STATUS, outcome: 'aborted' })
    return
  }
  const timer = setTimeout(() => due(d, true), route.abortSettleMs ?? tb.options.leaseTtlMs)
  // A pending deadline must not keep a process alive that is otherwise done.
  ;(timer as { unref?: () => void }).unref?.()
  s.gone = { tb, timer }
}

/**
 * Keeps a Worker alive (`ctx.waitUntil`) until the request settles, once per request: called at
 * admission, before the handler runs, as workerd stops a Worker whose client left (its handler
 * included) unless something waits for it.
 */
export function keepAlive(d: Admission, waitUntil: (until: Promise<void>) => void): void {
  const s = state(d)
  if (s.kept !== undefined || s.settled) return
  waitUntil(new Promise<void>((resolve) => (s.kept = resolve)))
}

/**
 * What a guard answers when its request already passed one (a guard for every path and the
 * route's own, or two preHandlers): each would count and charge the request, and the two
 * would share its response. It is answered instead of counting anything; the first
 * admission then settles with the 500 it gets, as any failed response (not billed). Adapters
 * throw it (or pass it on) when the request already carries an admission.
 */
export function guardedTwice(method: string, path: string): ConfigError {
  return new ConfigError(
    `requireApiKey: ${method} ${path} already passed a tollbooth guard. A request passes one: ` +
      'a guard on every path and another on the route would count and charge it twice. Keep ' +
      'one, with the route’s options (for a route of its own, leave it out of the wider path).',
  )
}

/** The handler threw: no response to write, its own end is the response's (500, `error`). */
export function handlerFailed(tb: Settler, d: Admission): void {
  if (!state(d).settled) settleNow(tb, d, { status: 500, outcome: 'error' })
}

/** The handler started more work that outlives it (a stream it produces). */
export function beginWork(d: Admission): void {
  state(d).work++
}

/** One unit of the handler's work ended; the last one settles a request whose client went away. */
export function endWork(d: Admission): void {
  if (--state(d).work <= 0) due(d, false)
}

/**
 * A response is complete while its handler's work may still run: a HEAD's with its head (no
 * body goes out) while its handler still produces the body a GET gets and reports its usage at
 * its end, or an answer a middleware in front gave before the handler ended (Hono's
 * `timeout()`). Settles with `status` (`completed`) once the handler's work has ended (at once
 * if it has; at the latest at the route's `abortSettleMs`), so a HEAD is charged what its
 * handler reports, as the GET is, and a handler still running keeps its slot. A client that
 * leaves after that changes nothing.
 */
export function headSent(tb: Settler, d: Admission, route: ResolvedRoute, status: number): void {
  const s = state(d)
  if (s.settled || s.gone !== undefined) return
  if (s.work <= 0) {
    settleNow(tb, d, { status, outcome: 'completed' })
    return
  }
  const timer = setTimeout(() => due(d, true), route.abortSettleMs ?? tb.options.leaseTtlMs)
  ;(timer as { unref?: () => void }).unref?.()
  s.gone = { tb, timer, outcome: { status, outcome: 'completed' } }
}

/**
 * The body of a HEAD response, which goes out without it: read to its end here and dropped, as
 * Node drops what a handler writes for a HEAD, so the handler runs as for the GET and the
 * request settles ({@link headSent}) with what it reported at its end. Returns a branch of the
 * body for the response itself, for middleware in front of the guard (`etag()` hashes it) and
 * the runtime, which drops or cancels it; the request's signal is not watched (Deno aborts it
 * once the bodiless answer has gone out).
 */
export function drainBody(tb: Settler, d: Admission, w: WatchedBody): ReadableStream<Uint8Array> {
  const [mine, theirs] = w.body.tee()
  const reader = watchBody(tb, d, { ...w, body: mine, signal: undefined }).getReader()
  const next = (): void => {
    reader.read().then(
      (r) => {
        if (!r.done) next()
      },
      () => {},
    )
  }
  next()
  headSent(tb, d, w.route, w.status)
  return theirs
}

/** A response body to watch, and what tells its end. */
export interface WatchedBody {
  route: ResolvedRoute
  body: ReadableStream<Uint8Array>
  /** The response's status, settled with when the body is read to its end. */
  status: number
  /** The request's signal, on runtimes that abort it for a departed client (Deno). */
  signal?: AbortSignal | undefined
  /** A Worker's `ctx.waitUntil`. */
  waitUntil?: ((until: Promise<void>) => void) | undefined
}

/**
 * Passes a response body through, telling tollbooth how it ended: read to its end
 * ({@link responseEnded} with `status`), failed (500, `error`), or cancelled because the
 * client went away ({@link clientGone}; the body's own cancel is waited for, as part of the
 * handler's work). The stream is one unit of work from here until it ends.
 *
 * `signal` (the request's) is for runtimes that tell a departed client by aborting it rather
 * than by cancelling the body (Deno, for a client gone before the answer): its abort counts as
 * the body's cancellation while the body is still being read, and the body is then cancelled,
 * so a handler blocked writing to it carries on to its end. Once the body has been read to its
 * end the abort means nothing: Deno aborts the signal of every request whose response it has
 * finished.
 *
 * `waitUntil` (a Worker's `ctx.waitUntil`) keeps the Worker alive until the request settles
 * ({@link keepAlive}; the adapter does so at admission): a Worker whose client went away is
 * otherwise stopped at once (no timer fires, no write returns, the body is never cancelled), so
 * its handler would never end and the request never settle. Kept alive, workerd cancels a body
 * whose client left mid-stream, and aborts `request.signal` (with the `enable_request_signal`
 * compatibility flag) for a client gone before the answer whose departure it saw. A client
 * that left without workerd seeing it (a closed socket on a local listener) leaves the body
 * neither read nor cancelled: on Workers, a body that nothing reads for the route's
 * `abortSettleMs` (default: the lease TTL) counts as a departed client, so such a request
 * settles (499) by that deadline rather than never.
 */
export function watchBody(tb: Settler, d: Admission, w: WatchedBody): ReadableStream<Uint8Array> {
  const { route, body, status, signal, waitUntil } = w
  const reader = body.getReader()
  let open = true
  // On Workers: how long the body may wait, unread, before its client counts as gone.
  const idleMs = waitUntil ? (route.abortSettleMs ?? tb.options.leaseTtlMs) : 0
  let idle: ReturnType<typeof setTimeout> | undefined
  const waiting = () => {
    if (!idleMs || !open) return
    idle = setTimeout(gone, idleMs)
  }
  const done = () => {
    if (open) {
      open = false
      clearTimeout(idle)
      signal?.removeEventListener('abort', gone)
      endWork(d)
    }
  }
  // The source's cancel, once begun: a second one (the runtime cancelling the body after the
  // request's signal aborted, on Bun and Deno) waits for the same, the handler's cleanup;
  // before, it finished at once and the request settled without what the cleanup reported.
  let cancelling: Promise<void> | undefined
  const cancelSource = (reason: unknown) => {
    cancelling ??= reader.cancel(reason)
    return cancelling
  }
  const gone = () => {
    if (!open) return
    clearTimeout(idle)
    clientGone(tb, d, route)
    cancelSource(signal?.reason).then(done, done)
  }
  if (waitUntil) keepAlive(d, waitUntil)
  beginWork(d)
  if (signal?.aborted) gone()
  else {
    signal?.addEventListener('abort', gone, { once: true })
    waiting()
  }
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        clearTimeout(idle)
        let chunk: ReadableStreamReadResult<Uint8Array>
        try {
          chunk = await reader.read()
        } catch (err) {
          ended(tb, d, { status: 500, outcome: 'error' })
          done()
          controller.error(err)
          return
        }
        if (!chunk.done) {
          controller.enqueue(chunk.value)
          waiting()
          return
        }
        controller.close()
        responseEnded(tb, d, status)
        done()
      },
      cancel(reason) {
        if (!open) return
        clientGone(tb, d, route)
        return cancelSource(reason).then(done, done)
      },
    },
    { highWaterMark: 0 },
  )
}
