/**
 * @module adapters/node/session
 *
 * A WebSocket session behind the guard, on Node. An upgrade request the guard admitted is one
 * request whose response lasts as long as its connection: it settles once, with status 101
 * (`completed`), when that connection closes (either side closing it, or the TCP connection
 * dropped), charged what the session reported with `charge()` / `report()` (else the route's
 * cost); its concurrency slot and credit hold stay taken, and renewed past their TTL, until
 * then. A refused upgrade is answered on the socket as any refusal is: its status, headers and
 * JSON body, instead of a 101. Shared by tollbooth/hono (on `@hono/node-ws`), tollbooth/fastify
 * (on `@fastify/websocket`) and tollbooth/express (`requireApiKeyOnUpgrade`, for `ws` on the
 * server's `upgrade` event). No `node:*` import: tollbooth/hono is bundled for Workers too.
 */

import {
  ABORTED_STATUS,
  type Admission,
  type Denial,
  optionError,
  responseEnded,
  responseStarted,
  type Settler,
  wireName,
} from '../../src/internal.js'

/** The status an admitted session settles with: its handshake's, 101 Switching Protocols. */
export const SWITCHING_PROTOCOLS = 101

/** The parts of the upgrade's `net.Socket` read and written here. */
export interface UpgradeSocket {
  readonly destroyed: boolean
  readonly readable: boolean
  readonly writable: boolean
  once(event: 'close', listener: () => void): unknown
  on(event: 'error', listener: (this: never) => void): unknown
  write(data: string): unknown
  end(data: string): unknown
}

/**
 * Node takes its `error` listener off the socket before the server's `upgrade` event, and `ws`
 * adds its own only in `handleUpgrade`: a reset while the upgrade is decided (or before the
 * application completes it) would be an uncaught exception, ending the process. Left on: with
 * `ws`'s, it destroys a socket already closing.
 */
function destroyOnError(this: { destroy(): void }): void {
  this.destroy()
}

/** Keeps an upgrade's socket's errors from being uncaught (see `destroyOnError`). */
export function catchSocketErrors(socket: Pick<UpgradeSocket, 'on'>): void {
  socket.on('error', destroyOnError)
}

/** The admitted sessions, by their upgrade request (what `ws` hands its `headers` event). */
const sessions = new WeakMap<object, Admission>()
/** The same admissions, for an adapter that meets its response's `close` too (Fastify). */
const admitted = new WeakSet<Admission>()

/** True for a request asking to become a WebSocket (`Upgrade: websocket`, any case). */
export function asksWebSocket(headers: Record<string, string | string[] | undefined>): boolean {
  const upgrade = headers['upgrade']
  return typeof upgrade === 'string' && upgrade.toLowerCase() === 'websocket'
}

/**
 * True for a request Node emitted as the server's `upgrade` event (its `upgrade`, set by the
 * HTTP parser, undeclared by @types/node): one that only names `Upgrade: websocket` without
 * `Connection: upgrade`, or that came with no `upgrade` listener, is a request as any other.
 */
export const handedOver = (req: object): boolean => (req as { upgrade?: unknown }).upgrade === true

/** True once {@link watchSession} took the admission: it settles when its connection closes. */
export const isSession = (d: Admission): boolean => admitted.has(d)

/**
 * The upgrade is handed over (the 101 is the server's to write next): the admission settles
 * when `socket` closes, with 101, or with the status `ws` refused the handshake with instead
 * (see `answerOf`). The settle waits for the next turn of the event loop after
 * the WebSocket's own `close`, which `ws` emits once its receiver has ended (a tick after the
 * socket's, or later while received frames are still being inflated): what a `close` handler
 * reports is charged. Returns false, and takes
 * nothing, for a socket already gone or half-closed (the client left while the admission was
 * in flight; the server's half-open socket is not destroyed by the client's FIN), which `ws`
 * refuses to upgrade by the same test: the adapter settles that one as a client gone (499).
 */
export function watchSession(
  tb: Settler,
  d: Admission,
  req: object,
  socket: UpgradeSocket,
): boolean {
  if (socket.destroyed || !socket.readable || !socket.writable) return false
  admitted.add(d)
  sessions.set(req, d)
  responseStarted(tb, d)
  const answer = answerOf(socket)
  const settle = () => {
    setImmediate(() => responseEnded(tb, d, answer.status))
  }
  socket.once('close', () => {
    // `ws` emits its `close` only once its receiver has ended: later than the socket's when
    // frames received before it are still being inflated (permessage-deflate, off the main
    // thread). Settled after that `close`, so what its handlers report is charged.
    const ws = answer.ws ?? webSocketOf(socket)
    if (ws !== undefined && ws.readyState !== WS_CLOSED) ws.once('close', settle)
    else settle()
  })
  return true
}

/** `ws`'s WebSocket, as far as its end goes. */
interface WsSocket {
  readonly readyState: number
  once(event: 'close', listener: () => void): unknown
}

/** `WebSocket.CLOSED`: its `close` has been emitted. */
const WS_CLOSED = 3

/**
 * The `ws` WebSocket an upgrade's socket was handed to, if any: `ws` keeps it on the socket
 * under a symbol of its own (`Symbol('websocket')`), found by its name, until the socket closes.
 */
function webSocketOf(socket: object): WsSocket | undefined {
  const own = socket as Record<symbol, unknown>
  for (const symbol of Object.getOwnPropertySymbols(socket)) {
    if (symbol.description !== 'websocket') continue
    const ws = own[symbol] as Partial<WsSocket> | undefined
    if (typeof ws?.once === 'function' && typeof ws.readyState === 'number') return ws as WsSocket
  }
  return undefined
}

/**
 * The status of the answer written on an upgrade's socket, read from its first write: 101 once
 * `ws` completed the upgrade, or the status of its refusal of the handshake (400 for a missing
 * `Sec-WebSocket-Key`, as `ws` checks it only after the guard), which is settled as such and
 * not charged; 499 while nothing was written (the client left before the answer). `write` and
 * `end` are the socket's own again after that first call: a session's frames pay nothing.
 */
function answerOf(socket: UpgradeSocket): { status: number; ws: WsSocket | undefined } {
  const answer: { status: number; ws: WsSocket | undefined } = {
    status: ABORTED_STATUS,
    ws: undefined,
  }
  const s = socket as unknown as Record<'write' | 'end', (...args: unknown[]) => unknown>
  const own = { write: Object.hasOwn(s, 'write'), end: Object.hasOwn(s, 'end') }
  const { write, end } = s
  // Only while they are these wrappers (Node sets its own `write` on a socket its peer ended).
  const restore = () => {
    if (s.write === writeFirst) {
      if (own.write) s.write = write
      else delete (s as Partial<typeof s>).write
    }
    if (s.end === endFirst) {
      if (own.end) s.end = end
      else delete (s as Partial<typeof s>).end
    }
  }
  const read = (data: unknown) => {
    // A string or bytes; `end(callback)` writes nothing (`end` is the last call all the same).
    const head =
      typeof data === 'string'
        ? data.slice(0, 12)
        : data instanceof Uint8Array
          ? String.fromCharCode(...data.subarray(0, 12))
          : ''
    if (head === '') return
    restore()
    const status = /^HTTP\/1\.[01] (\d{3})$/.exec(head)?.[1]
    answer.status = status === undefined ? SWITCHING_PROTOCOLS : Number(status)
    // `ws` writes its 101, then takes the socket (in the same call): its WebSocket is known
    // once that call has returned, and is looked up then, as `ws` drops it when the socket
    // closes, maybe before this guard's `close` listener runs.
    if (answer.status === SWITCHING_PROTOCOLS)
      queueMicrotask(() => {
        answer.ws = webSocketOf(socket)
      })
  }
  function writeFirst(this: unknown, ...args: unknown[]) {
    read(args[0])
    return write.apply(this, args)
  }
  function endFirst(this: unknown, ...args: unknown[]) {
    read(args[0])
    restore()
    return end.apply(this, args)
  }
  s.write = writeFirst
  s.end = endFirst
  return answer
}

/**
 * A `ws` `WebSocketServer`, as far as its `headers` event goes (`(headers: string[], request)`;
 * typed loosely, as its `on` is overloaded per event).
 */
export interface HeadersEmitter {
  on(event: string, listener: (...args: never[]) => void): unknown
}

const withHeaders = new WeakSet<object>()

/**
 * Adds tollbooth's headers (`X-Request-Id`, the rate-limit and usage figures, as docs/headers.md
 * lists them) to the 101 of each session the guard admitted on this `ws` server, through its
 * `headers` event; a header of the same name already there stays. Once per server.
 *
 * @param wss the `WebSocketServer` that completes the upgrades (`@hono/node-ws`'s `wss`, your own)
 * @throws {ConfigError} when `wss` has no `on()` (not a `ws` server)
 */
export function sendUsageHeaders(wss: HeadersEmitter): void {
  if (typeof (wss as Partial<HeadersEmitter> | null)?.on !== 'function')
    throw optionError('sendUsageHeaders', 'wss', 'must be a ws WebSocketServer', wss)
  if (withHeaders.has(wss)) return
  withHeaders.add(wss)
  wss.on('headers', (headers: string[], request: object) => {
    const d = sessions.get(request)
    if (d === undefined) return
    const out = d.responseHeaders(SWITCHING_PROTOCOLS)
    const taken = new Set<string>()
    for (const line of headers) taken.add(line.slice(0, line.indexOf(':')).trim().toLowerCase())
    for (const name in out) {
      const wire = wireName(name)
      if (!taken.has(wire)) headers.push(`${wire}: ${out[name]}`)
    }
  })
}

/** Reason phrases of the statuses a denial has. */
const REASONS: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  402: 'Payment Required',
  403: 'Forbidden',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
}

/**
 * Answers a refused upgrade on its socket, as any refusal is answered (status, headers, JSON
 * body), and closes the connection: the server's `upgrade` event hands the socket over with no
 * response object to write one.
 */
export function refuseUpgrade(
  socket: UpgradeSocket,
  denial: Pick<Denial, 'status' | 'headers' | 'body'>,
): void {
  if (socket.destroyed) return
  const h = denial.headers
  let head = `HTTP/1.1 ${denial.status} ${REASONS[denial.status] ?? ''}\r\nConnection: close\r\n`
  for (const name in h) head += `${wireName(name)}: ${h[name]}\r\n`
  const length = new TextEncoder().encode(denial.body).length
  socket.end(`${head}Content-Length: ${length}\r\n\r\n${denial.body}`)
}
