/**
 * @module test/http/harness
 *
 * What the behaviour suite needs around a real server: the framework-neutral route shape each
 * framework's `startServer` mounts, a tollbooth instance on a manual clock whose `settle` calls
 * are recorded (so a test sees that an adapter settles each admission exactly once, and with
 * which status), and a small fetch client.
 */

import { memoryStorage, type Storage } from '../../src/index.js'
import {
  type Admission,
  createTollbooth,
  type ManualClock,
  manualClock,
  type RouteOptions,
  type Tollbooth,
  type TollboothOptions,
  type UsageEvent,
} from '../../src/internal.js'

/** One route the suite asks a framework to serve, guarded by that framework's requireApiKey. */
export interface TestRoute {
  method?: 'GET' | 'POST'
  path: string
  /** Options for requireApiKey, the same object for every framework. */
  options?: RouteOptions
  /**
   * A second guard in front of the route's own, with these options (a request then passes two:
   * `app.use(path, requireApiKey(tb, outer))` and the route's, or two preHandlers).
   */
  outer?: RouteOptions
  /**
   * A streamed route instead: `count` server-sent events (`data: <i>`), `intervalMs` apart,
   * written the framework's own way; the writing stops when the client went away, and then
   * `handle` runs with how far it got (its result is not sent).
   */
  stream?: StreamSpec
  /**
   * With `stream`: the handler answers with a web `ReadableStream` of those events (an
   * upstream's body passed through), sent the framework's own way (Hono and Fastify: in a
   * `Response`; Express: piped); `handle` runs in the stream's `cancel` when the client went
   * away, or after its last event.
   */
  web?: boolean
  /** Headers a middleware in front of the guard sets on the response, the framework's own way. */
  before?: Record<string, string>
  /** Headers the handler sets on its response itself, the framework's own way. */
  headers?: Record<string, string>
  /** The handler's work: its result is sent as JSON with status 200; a throw is a 500. */
  handle(apiKey: Admission, progress?: StreamProgress): unknown
}

/** A streamed route's events (see `TestRoute.stream`). */
export interface StreamSpec {
  count: number
  intervalMs: number
  /** Called after each event is written, with the events written so far (a running report). */
  each?: (apiKey: Admission, sent: number) => void
}

/** How far a streamed route got, told to its `handle` once the writing stopped. */
export interface StreamProgress {
  /** Events written. */
  sent: number
  /** The client went away before the last one. */
  aborted: boolean
}

export interface TestServer {
  /** `http://127.0.0.1:<port>` */
  url: string
  close(): Promise<void>
}

/** Starts a real server of one framework on 127.0.0.1:0 serving `routes`. */
export type StartServer = (tb: Tollbooth, routes: TestRoute[]) => Promise<TestServer>

export const SECRET = 'behaviour-suite-secret-behaviour-suite-secret'
export const PREFIXES = { consumption: 'sk_test_', management: 'mk_test_' }
export const T0 = Date.UTC(2026, 0, 15, 12, 0, 0)

/** A settle call as the adapter made it. */
export interface Settled {
  decision: Admission
  status: number
  event: UsageEvent | null
}

export interface Harness {
  tb: Tollbooth
  clock: ManualClock
  url: string
  /** Admissions the route handlers saw, in order (a denial must never add one). */
  handled: Admission[]
  /** Handlers that returned or threw. */
  finished: { count: number }
  settled: Settled[]
  fetch(path: string, init?: Req): Promise<Res>
  close(): Promise<void>
}

export interface Req {
  key?: string
  method?: string
  headers?: Record<string, string>
  /** A JSON body (sent with `content-type: application/json`). */
  json?: unknown
  signal?: AbortSignal
}

export interface Res {
  status: number
  headers: Headers
  body: unknown
  text: string
}

/** Records each settle of an admission `tb` makes, in order, with its usage event once written. */
export function recordSettles(tb: Tollbooth): Settled[] {
  const settled: Settled[] = []
  const settle = tb.settle
  tb.settle = (decision, outcome) => {
    const p = settle(decision, outcome)
    if (decision.allowed) {
      const entry: Settled = { decision, status: outcome.status, event: null }
      settled.push(entry)
      void p.then((event) => {
        entry.event = event
      })
    }
    return p
  }
  // Adapters settle without waiting: through the recorder above (settleLater is settle
  // with its errors sent to onError; src/settle.test.ts covers it).
  tb.settleLater = (decision, outcome) => void tb.settle(decision, outcome).catch(() => {})
  return settled
}

/** Starts `startServer` with a fresh tollbooth on a manual clock, recording settle calls. */
export async function harness(
  startServer: StartServer,
  routes: TestRoute[],
  options: Partial<TollboothOptions> = {},
): Promise<Harness> {
  const clock = manualClock(T0)
  const tb = createTollbooth({ secret: SECRET, prefixes: PREFIXES, clock, ...options })
  const settled = recordSettles(tb)
  const handled: Admission[] = []
  const finished = { count: 0 }
  const wrapped = routes.map((r) => ({
    ...r,
    async handle(apiKey: Admission, progress?: StreamProgress) {
      handled.push(apiKey)
      try {
        return await r.handle(apiKey, progress)
      } finally {
        finished.count++
      }
    },
  }))
  const server = await startServer(tb, wrapped)
  return {
    tb,
    clock,
    url: server.url,
    handled,
    finished,
    settled,
    fetch: (path, init = {}) => send(server.url + path, init),
    async close() {
      await server.close()
      await tb.close()
    },
  }
}

async function send(url: string, init: Req): Promise<Res> {
  const headers: Record<string, string> = { ...init.headers }
  if (init.key !== undefined) headers['authorization'] = `Bearer ${init.key}`
  if (init.json !== undefined) headers['content-type'] = 'application/json'
  const res = await fetch(url, {
    method: init.method ?? (init.json === undefined ? 'GET' : 'POST'),
    headers,
    ...(init.json === undefined ? {} : { body: JSON.stringify(init.json) }),
    ...(init.signal ? { signal: init.signal } : {}),
  })
  const text = await res.text()
  let body: unknown = text
  try {
    body = JSON.parse(text)
  } catch {}
  return { status: res.status, headers: res.headers, body, text }
}

/**
 * Waits for something the server does after the client already has its answer (an adapter
 * settles on `finish`, which may run after the bytes reach the client). Bounded: fails after
 * 2 seconds of event-loop turns, never sleeps on a timer for time-based logic.
 */
export async function eventually(check: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 2_000
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 1))
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

/** A promise with its resolve, for handlers the test holds open. */
export function gate(): { promise: Promise<void>; open(): void } {
  let open!: () => void
  const promise = new Promise<void>((r) => {
    open = r
  })
  return { promise, open }
}

/**
 * The events of a streamed route as a web `ReadableStream` (see `TestRoute.web`): `handle`
 * runs, with how far it got, after the last event or in `cancel`, which waits for it.
 */
export function webEvents(
  r: TestRoute,
  apiKey: Admission,
  stream: StreamSpec,
): ReadableStream<Uint8Array> {
  let sent = 0
  const encoder = new TextEncoder()
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (sent === stream.count) {
        await r.handle(apiKey, { sent, aborted: false })
        controller.close()
        return
      }
      if (sent > 0) await sleep(stream.intervalMs)
      controller.enqueue(encoder.encode(`data: ${sent++}\n\n`))
      stream.each?.(apiKey, sent)
    },
    async cancel() {
      await r.handle(apiKey, { sent, aborted: true })
    },
  })
}

/**
 * In-memory storage whose counters answer as a remote store's would (a copy is not in-process),
 * each admission waiting while `hold()` is in force: a client can leave while its admission is
 * in flight. `asked` counts the admissions that reached the store.
 */
export function heldStorage() {
  const storage = memoryStorage()
  const counters = storage.counters
  let held: ReturnType<typeof gate> | undefined
  const state = {
    storage,
    asked: 0,
    /** Holds every admission from now until the returned function lets them through. */
    hold(): () => void {
      const g = gate()
      held = g
      return () => {
        held = undefined
        g.open()
      }
    },
  }
  storage.counters = {
    ...counters,
    consume(...args: Parameters<typeof counters.consume>) {
      state.asked++
      const wait = held?.promise
      return wait ? wait.then(() => counters.consume(...args)) : counters.consume(...args)
    },
  }
  return state
}

/**
 * The storage with each key lookup 50 ms slower: an admission is in flight for as long (a
 * middleware in front can answer meanwhile). Only the round trip is slowed, nothing else.
 */
export function slowKeys(storage: Storage): Storage {
  const keys = new Proxy(storage.keys, {
    get(target, name) {
      const value = Reflect.get(target, name) as unknown
      if (typeof value !== 'function') return value
      return async (...args: unknown[]) => {
        await sleep(50)
        return (value as (...a: unknown[]) => unknown).apply(target, args)
      }
    },
  })
  return { ...storage, keys }
}
