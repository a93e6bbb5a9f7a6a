/**
 * @module tollbooth/hono/sessions
 *
 * A WebSocket session behind the guard on Bun and Deno, with Hono's `upgradeWebSocket` from
 * `hono/bun` or `hono/deno`: as on Node (adapters/node/session.ts), an admitted upgrade is one
 * request that settles once, with 101, when its socket closes, charged what the session
 * reported (in its `onClose` too, and what it gives `waitUntil()` there), its concurrency slot
 * and credit hold kept until then. Each runtime shows the socket's end its own way:
 *
 * - Bun: the upgrade is the server's `upgrade(request, { data })`, the socket's events are the
 *   `websocket` handlers given to `Bun.serve`, which Hono's run from `data.events`. The server's
 *   `upgrade` is wrapped, once per server: for a request the guard admitted, `data.events`
 *   gets an `onClose` that runs the application's, then settles; tollbooth's headers go on the
 *   101 (its `headers` option).
 * - Deno: `Deno.upgradeWebSocket()` returns the 101 Response with its `WebSocket` attached
 *   (under a symbol of Deno's own, found by its value): its `close` event settles.
 *
 * Workers show the Worker no end of a socket it could watch (the 101 carries the client's end
 * of a `WebSocketPair`, whose events never fire in the Worker; Hono keeps the server's end to
 * itself), and tollbooth does not patch the runtime's globals: there a session settles when
 * its upgrade is answered, unless the application holds it open with `waitUntil()` (README,
 * "WebSockets").
 */

import {
  type Admission,
  responseEnded,
  responseStarted,
  type Settler,
  setDefaultHeaders,
} from '../../src/internal.js'
import { SWITCHING_PROTOCOLS } from '../node/session.js'

/** Bun's server, as far as its `upgrade` goes. */
interface BunServer {
  upgrade(request: Request, options?: { data?: unknown; headers?: HeadersInit }): boolean
}

/** What `hono/bun`'s `upgradeWebSocket` puts in `data`: the events it runs for the socket. */
interface HonoData {
  events?: { onClose?: (this: unknown, event: unknown, ws: unknown) => unknown }
}

/** An admitted upgrade on its way through the handler. */
interface Upgrade {
  tb: Settler
  d: Admission
  /** Bun: the server took the upgrade, with the `onClose` that settles. */
  upgraded: boolean
}

/** Bun's upgrades in flight, by their request (`c.req.raw`, what Hono hands `upgrade`). */
const upgrades = new WeakMap<Request, Upgrade>()
const wrapped = new WeakSet<object>()

/** Settles the session once the application's own close handlers (run before) are done. */
function closed(tb: Settler, d: Admission): void {
  setTimeout(() => responseEnded(tb, d, SWITCHING_PROTOCOLS), 0)
}

/** The Bun server Hono's `getBunServer(c)` would find in `c.env`, if there is one. */
function bunServer(env: unknown): BunServer | undefined {
  if (typeof env !== 'object' || env === null) return undefined
  const server = 'server' in env ? (env as { server: unknown }).server : env
  return typeof (server as Partial<BunServer> | null)?.upgrade === 'function'
    ? (server as BunServer)
    : undefined
}

/** Wraps a Bun server's `upgrade`, once, for the upgrades the guard admitted. */
function wrapUpgrade(server: BunServer): void {
  if (wrapped.has(server)) return
  wrapped.add(server)
  const upgrade = server.upgrade
  server.upgrade = function upgradeGuarded(this: BunServer, request, options) {
    const u = upgrades.get(request)
    const data = options?.data as HonoData | undefined
    const events = data?.events
    if (u === undefined || typeof events !== 'object' || events === null)
      return upgrade.call(this, request, options)
    upgrades.delete(request)
    const onClose = events.onClose
    const { tb, d } = u
    data!.events = Object.create(events, {
      onClose: {
        value(this: unknown, event: unknown, ws: unknown) {
          try {
            return onClose?.call(this, event, ws)
          } finally {
            closed(tb, d)
          }
        },
      },
    })
    const headers = new Headers(options?.headers)
    setDefaultHeaders(headers, d.responseHeaders(SWITCHING_PROTOCOLS), headers.has, headers.set)
    u.upgraded = upgrade.call(this, request, { ...options, headers })
    if (!u.upgraded) data!.events = events
    return u.upgraded
  }
}

/**
 * Called before the handler of an admitted request that asks to become a WebSocket, on a
 * runtime other than Node: returns what tells, once the handler has answered, whether a session
 * was opened whose close settles it ({@link sessionOpened}).
 */
export function watchUpgrade(tb: Settler, d: Admission, request: Request, env: unknown): Upgrade {
  const u: Upgrade = { tb, d, upgraded: false }
  const server = bunServer(env)
  if (server !== undefined) {
    wrapUpgrade(server)
    upgrades.set(request, u)
  }
  return u
}

/**
 * True when the handler's answer `res` opened a session that settles at its close: Bun's
 * upgrade taken (Hono answers an empty 200, which Bun does not send), or a 101 whose server
 * socket is known (Deno) (tollbooth's headers set on it by the caller already). The time to first byte is
 * taken; the caller ends the handler's work.
 */
export function sessionOpened(u: Upgrade, request: Request, res: Response): boolean {
  upgrades.delete(request)
  if (u.upgraded) {
    responseStarted(u.tb, u.d)
    return true
  }
  if (res.status !== SWITCHING_PROTOCOLS) return false
  const socket = attachedSocket(res)
  if (socket === undefined || socket.readyState === 3) return false
  responseStarted(u.tb, u.d)
  socket.addEventListener('close', () => closed(u.tb, u.d), { once: true })
  return true
}

/** The server's `WebSocket` of a 101 Response, if any: Deno's, under a symbol of its own. */
function attachedSocket(res: Response): WebSocket | undefined {
  const Socket = (globalThis as { WebSocket?: typeof WebSocket }).WebSocket
  if (typeof Socket !== 'function') return undefined
  const own = res as unknown as Record<symbol, unknown>
  for (const symbol of Object.getOwnPropertySymbols(res)) {
    const value = own[symbol]
    if (value instanceof Socket) return value
  }
  return undefined
}
