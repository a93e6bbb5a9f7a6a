/**
 * @module tollbooth/express/upgrade
 *
 * The guard for a WebSocket route of an Express app. Express's middleware does not run for an
 * upgrade: Node hands it to the server's `upgrade` event, where `ws` (`noServer: true`)
 * completes it. `requireApiKeyOnUpgrade` is `requireApiKey` for that event: it answers a
 * refusal on the socket (status, headers, JSON body), or returns the admission, which settles
 * once, with 101, when the session's connection closes (adapters/node/session.ts).
 */

import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import {
  type Admission,
  checkTollboothArg,
  clientGone,
  denialAnswer,
  endWork,
  type RouteOptions,
  type Tollbooth,
} from '../../src/internal.js'
import { catchSocketErrors, refuseUpgrade, watchSession } from '../node/session.js'

/** What the guard of an upgrade is called with: the `upgrade` event's request and socket. */
export type UpgradeGuard = (req: IncomingMessage, socket: Duplex) => Promise<Admission | null>

/** The answer to an upgrade whose decision threw: what Express answers a plain route's (500). */
const failed = denialAnswer('internal_error')
const FAILED = {
  status: failed.status,
  headers: { 'Content-Type': 'application/json; charset=utf-8' },
  body: JSON.stringify(failed.body),
}

/**
 * Requires a valid API key on a WebSocket upgrade, in the server's `upgrade` event.
 *
 * @param tb the tollbooth instance
 * @param [options] the route options of `requireApiKey` (`cost`, `scopes`, `trustProxy`…)
 * @returns a function of the event's request and socket that resolves to the admission, or to
 *   null when the upgrade was refused (answered on the socket and closed), its route's `cost`
 *   or `tokens` function threw (answered 500 `internal_error`, the error passed to the
 *   instance's `onError`), or its client left while it was decided. The admission settles with 101 when the socket closes, charged what
 *   the session reported with `charge()` / `report()` (up to its `close` handlers), else the
 *   route's `cost`.
 * @throws {ConfigError} at construction, naming a bad option
 * @example
 * ```ts
 * const wss = new WebSocketServer({ noServer: true })
 * sendUsageHeaders(wss) // tollbooth's headers on the 101
 * const guard = requireApiKeyOnUpgrade(tb, { cost: 0 })
 * server.on('upgrade', async (req, socket, head) => {
 *   const apiKey = await guard(req, socket)
 *   if (apiKey === null) return
 *   wss.handleUpgrade(req, socket, head, (ws) => {
 *     const started = Date.now()
 *     ws.on('close', () => apiKey.report({ cost: Math.ceil((Date.now() - started) / 1000) }))
 *   })
 * })
 * ```
 */
export function requireApiKeyOnUpgrade(tb: Tollbooth, options: RouteOptions = {}): UpgradeGuard {
  checkTollboothArg('requireApiKeyOnUpgrade', tb)
  const route = tb.route(options)
  const report =
    tb.options.onError ??
    ((err: unknown) => console.error('[tollbooth] requireApiKeyOnUpgrade:', err))
  return async function requireApiKeyOnUpgrade(req, socket) {
    catchSocketErrors(socket)
    const url = req.url ?? '/'
    const q = url.indexOf('?')
    let decision: Awaited<ReturnType<Tollbooth['decide']>>
    try {
      decision = await tb.decide(
        {
          headers: req.headers,
          ip: req.socket.remoteAddress ?? null,
          method: req.method ?? 'GET',
          path: q === -1 ? url : url.slice(0, q),
        },
        route,
      )
    } catch (err) {
      // The route's `cost` or `tokens` function threw: nothing was counted. Answered 500 on the
      // socket and reported, never rethrown: the server's `upgrade` listener is an async
      // function (above), whose rejection nothing catches, ending the process.
      report(err)
      refuseUpgrade(socket, FAILED)
      return null
    }
    if (!decision.allowed) {
      refuseUpgrade(socket, decision)
      return null
    }
    if (watchSession(tb, decision, req, socket)) {
      endWork(decision)
      return decision
    }
    // Its client left while it was decided (a half-closed socket stays open until destroyed).
    clientGone(tb, decision, route)
    endWork(decision)
    socket.destroy()
    return null
  }
}
