/**
 * @module examples/pdf-api/app
 *
 * A PDF API in the shape of `003_a3f67200bbf2a6b6.txt`, on tollbooth and Express:
 *
 * - `pdf_live_` API keys for the operations (`POST /api/v1/merge`, `/compress`, `/split`,
 *   `/rotate`, `/accessibility-check`), 1 credit each, recorded per operation;
 * - a monthly limit: 500 operations on pro (100 on free), reset on the 1st at 00:00 UTC, then
 *   402 `Insufficient credits`;
 * - the account API at `/api/v1/account` (keys, usage, profile) for session tokens only;
 * - the developer portal (`tollbooth/portal`) at `/portal`, signed in with the same session
 *   tokens (`POST /portal/api/session`).
 */

import express, { type Express, type NextFunction, type Request, type Response } from 'express'
import { mountFetch } from '../../adapters/express/index.js'
import { portal } from '../../adapters/portal/index.js'
import {
  type Clock,
  createTollbooth,
  type Storage,
  type Tollbooth,
  type TollboothOptions,
} from '../../src/index.js'
import { accountRoutes } from './account-routes.js'
import { OPERATIONS, operationRoutes } from './operations.js'

export { OPERATIONS } from './operations.js'

/** Operations a month; one credit is one operation. */
export const PLANS = {
  free: { display: 'Free', monthlyCredits: 100 },
  pro: { display: 'Pro', monthlyCredits: 500 },
} satisfies TollboothOptions['plans']

/** `pdf_live_` keys. The API has no management keys; theirs is a prefix nobody is given. */
export const PREFIXES = { consumption: 'pdf_live_', management: 'pdf_mgmt_' }

export interface PdfApiOptions {
  /** At least 32 characters: derives the key hashes (rotating it invalidates every key). */
  secret: string
  /** Verifies the session tokens of the account routes and the portal (HS256, 32+ characters). */
  sessionSecret: string
  /** Default: in memory. */
  storage?: Storage | undefined
  /** For tests: a manual clock. */
  clock?: Clock
}

export interface PdfApi {
  app: Express
  tb: Tollbooth
}

/**
 * Builds the PDF API.
 *
 * @example
 * ```ts
 * const { app } = createPdfApi({ secret: process.env.TOLLBOOTH_SECRET!, sessionSecret: process.env.SESSION_SECRET! })
 * app.listen(3000)
 * ```
 */
export function createPdfApi(options: PdfApiOptions): PdfApi {
  const tb = createTollbooth({
    secret: options.secret,
    ...(options.storage ? { storage: options.storage } : {}),
    ...(options.clock ? { clock: options.clock } : {}),
    prefixes: PREFIXES,
    plans: PLANS,
    defaultTier: 'free',
    // `?month=` reports are summed from usage events: keep 13 months of them, not 30 days.
    usage: { retentionMs: 400 * 86_400_000 },
  })
  const app = express()
  app.disable('x-powered-by')

  app.get('/', (_req, res) => {
    res.json({ name: 'pdf-api', operations: OPERATIONS, docs: 'see examples/pdf-api/README.md' })
  })
  operationRoutes(app, tb)
  app.use('/api/v1/account', accountRoutes(tb, options.sessionSecret, PREFIXES.consumption))
  app.use('/portal', mountFetch(portal(tb, { session: { secret: options.sessionSecret } }).fetch))

  app.use((req: Request, res: Response) => {
    res.status(404).json({ error: `Not found: ${req.method} ${req.path}`, code: 'not_found' })
  })
  app.use((err: unknown, _req: Request, res: Response, _next: NextFunction) => {
    // body-parser's errors: malformed JSON (400), a body over the limit (413).
    const e = err as { status?: number; expose?: boolean; type?: string }
    if (e.expose && typeof e.status === 'number' && e.status < 500) {
      const message =
        e.type === 'entity.parse.failed' ? 'must be JSON' : String((err as Error).message)
      res
        .status(e.status)
        .json({ error: `Invalid request body: ${message}`, code: 'invalid_request' })
      return
    }
    console.error('[pdf-api]', err)
    res.status(500).json({ error: 'Internal server error', code: 'internal_error' })
  })
  return { app, tb }
}
