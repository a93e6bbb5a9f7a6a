/**
 * @module test/examples/http
 *
 * What the example suites share: each example served in-process on 127.0.0.1 port 0 by its
 * own framework, a JSON client that replays the seeds' curl lines, and a way to wait until
 * every settle the server started has finished (adapters settle when the response finishes,
 * which can be after the client holds its answer).
 */

import type { Tollbooth } from '../../src/index.js'
import { type Served, serveExpress, serveFastify, serveHono } from '../support/servers.js'

export { type Served, serveExpress, serveFastify, serveHono }

// One curl line: the management suite's helper, shared.
import { type Call, call, type Res } from '../management/servers.js'

export { type Call, call, type Res }

/** A client bound to one server. */
export type Client = (method: string, path: string, c?: Call) => Promise<Res>

export const clientOf =
  (served: Served): Client =>
  (method, path, c) =>
    call(served.url, method, path, c)

/**
 * Records every settle `tb` starts; `idle()` resolves once they have all finished, so the
 * charges of the answers a test already holds are counted before it checks usage.
 */
export function trackSettles(tb: Tollbooth): { idle(): Promise<void> } {
  const pending = new Set<Promise<unknown>>()
  const settle = tb.settle.bind(tb)
  ;(tb as { settle: Tollbooth['settle'] }).settle = (decision, outcome) => {
    const p = settle(decision, outcome)
    pending.add(p)
    void p.finally(() => pending.delete(p))
    return p
  }
  ;(tb as { settleLater: Tollbooth['settleLater'] }).settleLater = (decision, outcome) =>
    void tb.settle(decision, outcome).catch(() => {})
  return {
    async idle() {
      // The response's `finish` event may still be queued behind the client's read.
      await new Promise((r) => setImmediate(r))
      while (pending.size > 0) await Promise.allSettled([...pending])
    },
  }
}

/** The same request `n` times in sequence; the answers in order. */
export async function repeat(n: number, send: () => Promise<Res>): Promise<Res[]> {
  const out: Res[] = []
  for (let i = 0; i < n; i++) out.push(await send())
  return out
}

export const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/
export const DAY = 86_400_000
