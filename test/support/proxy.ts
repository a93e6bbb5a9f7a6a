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

interface Link {
  marked: boolean
  held: Buffer[]
  client: Socket
}

/** A proxy to `target` on 127.0.0.1; a connection is marked once its client sent `marker`. */
export async function startProxy(target: number, marker: RegExp): Promise<TcpProxy> {
  const links = new Set<Link>()
  let muted = false
  const server: Server = createServer((client) => {
    const upstream = tcp(target, '127.0.0.1')
    const link: Link = { marked: false, held: [], client }
    links.add(link)
    client.on('data', (d: Buffer) => {
      if (marker.test(d.toString('latin1'))) link.marked = true
      upstream.write(d)
    })
    upstream.on('data', (d: Buffer) => {
      if (muted && link.marked) link.held.push(d)
      else client.write(d)
    })
    const end = () => {
      links.delete(link)
      client.destroy()
      upstream.destroy()
    }
    client.on('close', end)
    upstream.on('close', end)
    client.on('error', () => {})
    upstream.on('error', () => {})
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  return {
    port: typeof address === 'object' && address ? address.port : 0,
    mute(m) {
      muted = m
      if (m) return
      for (const link of links) for (const d of link.held.splice(0)) link.client.write(d)
    },
    get marked() {
      return [...links].filter((l) => l.marked).length
    },
    close() {
      for (const link of links) link.client.destroy()
      return new Promise((resolve) => server.close(() => resolve()))
    },
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
  interface Pipe {
    client: Socket
    upstream: Socket
    /** Null: passing; else holding (what was held). */
    held: Buffer[] | null
  }
  const pipes = new Set<Pipe>()
  const server: Server = createServer((client) => {
    const upstream = tcp(target, '127.0.0.1')
    const pipe: Pipe = { client, upstream, held: null }
    pipes.add(pipe)
    client.on('data', (d: Buffer) => {
      if (pipe.held === null) {
        upstream.write(d)
        return
      }
      pipe.held.push(d)
      client.destroy()
    })
    upstream.on('data', (d: Buffer) => {
      if (pipe.held === null) client.write(d)
    })
    client.on('close', () => {
      if (pipe.held !== null) return
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
    hold() {
      for (const pipe of pipes) pipe.held ??= []
    },
    get held() {
      let n = 0
      for (const pipe of pipes) for (const d of pipe.held ?? []) n += d.length
      return n
    },
    async deliver() {
      const sent: Socket[] = []
      for (const pipe of pipes) {
        if (pipe.held === null) continue
        for (const d of pipe.held.splice(0)) pipe.upstream.write(d)
        sent.push(pipe.upstream)
      }
      // Long enough for the server to run it; its answer goes nowhere.
      await new Promise((r) => setTimeout(r, 300))
      for (const s of sent) s.destroy()
    },
    close() {
      for (const pipe of pipes) {
        pipe.client.destroy()
        pipe.upstream.destroy()
      }
      return new Promise((resolve) => server.close(() => resolve()))
    },
  }
}
