/**
 * @module test/support/proxy
 *
 * For tollbooth's own tests (not exported): a TCP proxy on 127.0.0.1 in front of a private
 * server, that can silence the connections that sent a given command (`SUBSCRIBE`, `LISTEN`)
 * in the server-to-client direction: what the server sends them is held back, with no error
 * and no close, as over a half-open connection, a NAT or load balancer that dropped an idle
 * flow, or a pooler that gave the server connection to another client. The client's other
 * connections pass untouched. Unmuted, what was held back is delivered.
 */

import { createServer, type Server, type Socket, connect as tcp } from 'node:net'

export interface TcpProxy {
  port: number
  /** Holds back (true) or delivers again (false) the server's bytes to the marked connections. */
  mute(muted: boolean): void
  /** How many connections have sent the marker so far. */
  readonly marked: number
  close(): Promise<void>
}

/** One client's connection to the proxy and the proxy's connection to the server for it. */
interface Pipe {
  client: Socket
  upstream: Socket
}

/** What a proxy does with the bytes of its pipes (each a {@link Pipe} with its state). */
interface Relay<P extends Pipe> {
  /** Bytes the client sent: passed on (`pipe.upstream.write(d)`) or kept. */
  up(pipe: P, d: Buffer): void
  /** Bytes the server sent: passed on (`pipe.client.write(d)`) or kept. */
  down(pipe: P, d: Buffer): void
  /** True when the server connection stays open after the client's side closed. */
  keep?(pipe: P): boolean
}

/**
 * A TCP server on 127.0.0.1 that connects each client to `target`, the pipe's state from
 * `state()`, its bytes through `relay`. A side that closes closes the other (but as
 * `relay.keep` says), and the pipe leaves `pipes`; `close()` ends every pipe and the server.
 */
async function startPipes<S extends object>(
  target: number,
  state: () => S,
  relay: Relay<Pipe & S>,
): Promise<{ port: number; pipes: ReadonlySet<Pipe & S>; close(): Promise<void> }> {
  const pipes = new Set<Pipe & S>()
  const server: Server = createServer((client) => {
    const upstream = tcp(target, '127.0.0.1')
    const pipe = { ...state(), client, upstream }
    pipes.add(pipe)
    client.on('data', (d: Buffer) => relay.up(pipe, d))
    upstream.on('data', (d: Buffer) => relay.down(pipe, d))
    client.on('close', () => {
      if (relay.keep?.(pipe)) return
      pipes.delete(pipe)
      upstream.destroy()
    })
    upstream.on('close', () => {
      pipes.delete(pipe)
      client.destroy()
    })
    client.on('error', () => {})
    upstream.on('error', () => {})
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  return {
    port: typeof address === 'object' && address ? address.port : 0,
    pipes,
    close() {
      for (const pipe of pipes) {
        pipe.client.destroy()
        pipe.upstream.destroy()
      }
      return new Promise((resolve) => server.close(() => resolve()))
    },
  }
}

/** A proxy to `target` on 127.0.0.1; a connection is marked once its client sent `marker`. */
export async function startProxy(target: number, marker: RegExp): Promise<TcpProxy> {
  let muted = false
  const proxy = await startPipes(target, () => ({ marked: false, held: [] as Buffer[] }), {
    up(pipe, d) {
      if (marker.test(d.toString('latin1'))) pipe.marked = true
      pipe.upstream.write(d)
    },
    down(pipe, d) {
      if (muted && pipe.marked) pipe.held.push(d)
      else pipe.client.write(d)
    },
  })
  return {
    port: proxy.port,
    mute(m) {
      muted = m
      if (m) return
      for (const pipe of proxy.pipes) for (const d of pipe.held.splice(0)) pipe.client.write(d)
    },
    get marked() {
      return [...proxy.pipes].filter((p) => p.marked).length
    },
    close: proxy.close,
  }
}

/**
 * A proxy on 127.0.0.1 in front of `target` that can hold back what a client sends on the
 * connections open when {@link HoldingProxy.hold} is called: the next bytes each of them sends
 * are kept (not passed on) and its client side is closed at once, as a path that stalls a
 * connection and a client that gives up on it, while the connection to the server stays open.
 * The client's new connections pass untouched. {@link HoldingProxy.deliver} then sends what was
 * held to the server, late: a command the client saw fail, run after the ones it sent since.
 */
export interface HoldingProxy {
  port: number
  /** Holds the next bytes of every connection open now, and closes its client side. */
  hold(): void
  /** Bytes held so far, not delivered yet. */
  readonly held: number
  /** Sends what was held to the server, on the connections it came on, and closes them. */
  deliver(): Promise<void>
  close(): Promise<void>
}

export async function startHoldingProxy(target: number): Promise<HoldingProxy> {
  // held: null while passing; else holding, what was held.
  const proxy = await startPipes(target, () => ({ held: null as Buffer[] | null }), {
    up(pipe, d) {
      if (pipe.held === null) {
        pipe.upstream.write(d)
        return
      }
      pipe.held.push(d)
      pipe.client.destroy()
    },
    down(pipe, d) {
      if (pipe.held === null) pipe.client.write(d)
    },
    keep: (pipe) => pipe.held !== null,
  })
  return {
    port: proxy.port,
    hold() {
      for (const pipe of proxy.pipes) pipe.held ??= []
    },
    get held() {
      let n = 0
      for (const pipe of proxy.pipes) for (const d of pipe.held ?? []) n += d.length
      return n
    },
    async deliver() {
      const sent: Socket[] = []
      for (const pipe of proxy.pipes) {
        if (pipe.held === null) continue
        for (const d of pipe.held.splice(0)) pipe.upstream.write(d)
        sent.push(pipe.upstream)
      }
      // Long enough for the server to run it; its answer goes nowhere.
      await new Promise((r) => setTimeout(r, 300))
      for (const s of sent) s.destroy()
    },
    close: proxy.close,
  }
}

/**
 * A proxy on 127.0.0.1 in front of `target` whose {@link CuttingProxy.cut} closes the client
 * side of every connection open then, as a network path that drops: the client sees its
 * connection close, while the server side stays open until the server closes it, so a frozen
 * server still reads and runs what it was sent before the cut once it thaws (its answers go
 * nowhere). New connections pass untouched.
 */
export interface CuttingProxy {
  port: number
  /** Closes the client side of every open connection; returns how many were cut. */
  cut(): number
  close(): Promise<void>
}

export async function startCuttingProxy(target: number): Promise<CuttingProxy> {
  const proxy = await startPipes(target, () => ({ cut: false }), {
    up: (pipe, d) => pipe.upstream.write(d),
    down(pipe, d) {
      if (!pipe.cut) pipe.client.write(d)
    },
    keep: (pipe) => pipe.cut,
  })
  return {
    port: proxy.port,
    cut() {
      let n = 0
      for (const pipe of proxy.pipes) {
        if (pipe.cut) continue
        pipe.cut = true
        pipe.client.destroy()
        n++
      }
      return n
    },
    close: proxy.close,
  }
}
