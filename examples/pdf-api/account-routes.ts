/**
 * @module examples/pdf-api/account-routes
 *
 * The account API of `003_a3f67200bbf2a6b6.txt`, under `/api/v1/account`, answered in that
 * seed's exact shapes from `tb.keys`, `tb.usage` and `tb.accounts`:
 *
 * - `GET /keys`: the active keys as a bare array `[{ id, name, prefix, createdAt, lastUsedAt }]`;
 * - `POST /keys` `{ name? }`: 201 `{ key: { … }, plaintext }`, the plaintext shown once;
 * - `DELETE /keys/:keyId`: soft delete (revoked, history kept), 204;
 * - `GET /usage?month=YYYY-MM`: `{ current, limit, resetDate, breakdown: [{ operation, count }] }`;
 * - `GET /profile`: `{ tier }`.
 *
 * Session authentication only: a session JWT in `Authorization: Bearer`. An API key is refused
 * with 403 (the seed: "API key authentication is not supported for these endpoints").
 */

import express, { type NextFunction, type Request, type Response, Router } from 'express'
import { z } from 'zod'
import { isTollboothError, type KeyView, type Tollbooth } from '../../src/index.js'
import { bearerToken, looksLikeJwt, verifySession } from '../shared/session.js'
import { OPERATIONS } from './operations.js'

const createBody = z.object({ name: z.string().trim().max(100).default('') }).strict()
const usageQuery = z
  .object({
    month: z
      .string()
      .regex(/^\d{4}-(0[1-9]|1[0-2])$/, 'must be YYYY-MM')
      .optional(),
  })
  .strict()

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString())

/**
 * A key as the seed shows it. The seed's name may be empty ("" by default); tollbooth's key
 * names are 1-100 characters, so the label is kept in the key's metadata.
 */
function keyView(k: KeyView) {
  const label = k.metadata['label']
  return {
    id: k.id,
    name: typeof label === 'string' ? label : k.name,
    prefix: k.start,
    createdAt: iso(k.createdAt),
    lastUsedAt: iso(k.lastUsedAt),
  }
}

/** A 400 naming each bad field. */
function invalid(res: Response, where: string, error: z.ZodError): void {
  const issues = error.issues.map((i) => ({
    path: i.path.join('.') || `(${where})`,
    message:
      i.code === 'unrecognized_keys'
        ? `unknown field(s) ${i.keys.map((k) => `"${k}"`).join(', ')}`
        : i.message,
  }))
  res.status(400).json({
    error: `Invalid request ${where}: ${issues.map((i) => `${i.path}: ${i.message}`).join('; ')}`,
    code: 'invalid_request',
    issues,
  })
}

/**
 * The account router: mount it at `/api/v1/account`.
 *
 * @param tb the tollbooth instance
 * @param sessionSecret verifies the session tokens (HS256)
 * @param keyPrefix the API keys' prefix, to tell a key from a token
 */
export function accountRoutes(tb: Tollbooth, sessionSecret: string, keyPrefix: string): Router {
  const router = Router()
  const now = () => tb.options.clock?.now() ?? Date.now()

  router.use(async function requireSession(req: Request, res: Response, next: NextFunction) {
    const token = bearerToken(req.headers.authorization)
    if (!token) {
      res.set('WWW-Authenticate', 'Bearer').status(401)
      res.json({ error: 'Missing session token', code: 'unauthorized' })
      return
    }
    if (token.startsWith(keyPrefix) || !looksLikeJwt(token)) {
      res.status(403).json({
        error: 'API key authentication is not supported for account endpoints; use a session token',
        code: 'session_required',
      })
      return
    }
    const session = await verifySession(sessionSecret, token, now())
    if (!session.ok) {
      res.set('WWW-Authenticate', 'Bearer error="invalid_token"').status(401)
      res.json({ error: session.message, code: 'unauthorized' })
      return
    }
    res.locals['accountId'] = session.accountId
    next()
  })
  router.use(express.json({ limit: '16kb' }))

  router.get('/keys', async (_req, res) => {
    const accountId = res.locals['accountId'] as string
    const keys: KeyView[] = []
    let cursor: string | null = null
    do {
      const page = await tb.keys.list(accountId, { limit: 100, cursor })
      keys.push(...page.data)
      cursor = page.nextCursor
    } while (cursor)
    res.json(keys.map(keyView))
  })

  router.post('/keys', async (req, res) => {
    const body = createBody.safeParse(req.body ?? {})
    if (!body.success) return invalid(res, 'body', body.error)
    const label = body.data.name
    const { key, record } = await tb.keys.create({
      accountId: res.locals['accountId'] as string,
      name: label || 'Untitled key',
      metadata: { label },
    })
    res.status(201).json({ key: keyView(record), plaintext: key })
  })

  router.delete('/keys/:keyId', async (req, res) => {
    await tb.keys.revoke(req.params['keyId']!, { accountId: res.locals['accountId'] as string })
    res.status(204).end()
  })

  router.get('/usage', async (req, res) => {
    const query = usageQuery.safeParse(req.query)
    if (!query.success) return invalid(res, 'query', query.error)
    const month = query.data.month
    const u = await tb.usage.get(res.locals['accountId'] as string, month ? { month } : {})
    res.json({
      current: u.credits.used,
      limit: Number.isFinite(u.credits.limit) ? u.credits.limit : null,
      resetDate: iso(u.resetDate),
      breakdown: OPERATIONS.map((operation) => ({ operation, count: u.breakdown[operation] ?? 0 }))
        .filter((b) => b.count > 0)
        .sort((a, b) => b.count - a.count),
    })
  })

  router.get('/profile', async (_req, res) => {
    res.json({ tier: (await tb.accounts.get(res.locals['accountId'] as string)).tier })
  })

  // Errors of tollbooth keep their status and message (404 for another account's key).
  router.use((err: unknown, _req: Request, res: Response, next: NextFunction) => {
    if (!isTollboothError(err)) return next(err)
    res.status(err.status).json({ error: err.message, code: err.code })
  })
  return router
}
