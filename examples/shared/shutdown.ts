/**
 * @module examples/shared/shutdown
 *
 * How every example stops on SIGTERM or SIGINT without losing usage: stop accepting
 * connections, let the requests in flight finish (their responses are sent and settled, so
 * their usage events are queued), then `tb.close()` (which writes the queued events), then
 * close the storage connections, then exit 0. The drain is bounded: after `drainMs` the
 * remaining connections are cut, so a hung request cannot keep the process alive forever.
 */

import type { Server } from 'node:http'

/** How long in-flight requests may take to finish once a stop is asked: 10 s. */
export const DRAIN_MS = 10_000

/**
 * Stops `server` from accepting connections and resolves once every open connection is gone:
 * idle keep-alive connections are closed at once and as they become idle, busy ones once their
 * response is sent; after `ms`, whatever is left is cut.
 */
export function drainHttp(server: Server, ms = DRAIN_MS): Promise<void> {
  return new Promise((resolve) => {
    const idle = setInterval(() => server.closeIdleConnections(), 25)
    const cut = setTimeout(() => server.closeAllConnections(), ms)
    server.close(() => {
      clearInterval(idle)
      clearTimeout(cut)
      resolve()
    })
    server.closeIdleConnections()
  })
}

/**
 * On the first SIGTERM or SIGINT: `drain()` (stop accepting, finish in-flight requests), then
 * `close()` (`tb.close()` and the storage connections, in that order), then exit 0 (1 when a
 * step failed, after printing why).
 */
export function stopOnSignals(steps: {
  drain: () => Promise<void>
  close: () => Promise<void>
}): void {
  let stopping = false
  const stop = async () => {
    if (stopping) return
    stopping = true
    let code = 0
    try {
      await steps.drain()
      await steps.close()
    } catch (err) {
      console.error('shutdown failed:', err)
      code = 1
    }
    process.exit(code)
  }
  process.on('SIGINT', stop)
  process.on('SIGTERM', stop)
}
