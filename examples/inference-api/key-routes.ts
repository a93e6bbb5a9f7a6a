/**
 * @module examples/inference-api/key-routes
 *
 * `/api/keys*` in the shapes of `004_8209d5d9c76b9400.txt` (`{ success, data }`), on `tb.keys`:
 * list the consumption keys (credit and pool), create a credit key or a pool (subscription)
 * key, update name and active flag, delete, read a key's request log
 * (`002_2f2523503321cfc2.txt`), and the management keys.
 *
 * One deliberate difference from the seed: lists never carry the full key. tollbooth stores
 * only a hash, so `apiKey` in a list is the display prefix (`sk_live_ab12...`); the full key is in
 * the create answer, once.
 */

import type { FastifyInstance } from 'fastify'
import { z } from 'zod'
import {
  ConflictError,
  InvalidRequestError,
  type KeyView,
  NotFoundError,
  type Tollbooth,
} from '../../src/index.js'
import { failure } from './account-auth.js'
import { creditLimits, poolLimits, type Subscription, subscriptionsOf, usd } from './plans.js'

const name = z.string().trim().min(1).max(100)

/**
 * Runs a create or rename with `{ uniqueName: true }`: tb.keys refuses a name another live
 * key of the account wears (without case, one check at a time per account), and the example
 * answers in its own words.
 */
async function aliased<T>(name: string | undefined, write: () => Promise<T>): Promise<T> {
  try {
    return await write()
  } catch (err) {
    if (err instanceof ConflictError && err.issues?.[0]?.path === 'name')
      throw new ConflictError(`A key named "${name}" already exists`)
    throw err
  }
}
const quota = z.number().int().positive().max(1e9)
const schemas = {
  credit: z
    .object({
      name,
      /** An organizational tag (`002`): production, development, staging or your own. */
      category: z.string().trim().min(1).max(64).optional(),
      /** Optional expiry (`002`); credit keys never expire by default (`004`). */
      expiresAt: z.iso.datetime({ offset: true }).optional(),
      maxBudget: z.number().positive().max(1e6).optional(),
      rpm: z.number().int().min(1).max(100_000).optional(),
      tpm: z.number().int().min(1).max(1e9).optional(),
      quotas: z
        .object({ total: quota, daily: quota, weekly: quota, monthly: quota })
        .partial()
        .strict()
        .optional(),
    })
    .strict(),
  subscription: z.object({ subscriptionId: z.string().min(1).max(64).optional() }).strict(),
  update: z
    .object({ name: name.optional(), isActive: z.boolean().optional() })
    .strict()
    .refine((v) => v.name !== undefined || v.isActive !== undefined, {
      message: 'give name or isActive',
    }),
  management: z.object({ name }).strict(),
  logs: z
    .object({
      limit: z.coerce.number().int().min(1).max(100).default(20),
      cursor: z.string().min(1).max(300).optional(),
      /** Only the requests of this usage category (the model's family: `chat`, `messages`). */
      category: z.string().trim().min(1).max(64).optional(),
    })
    .strict(),
  /** `GET /api/keys?category=production`: `002`'s dashboard filter. */
  list: z.object({ category: z.string().trim().min(1).max(64).optional() }).strict(),
}

/** Parses `value`, or throws the core's 400 naming each bad field. */
export function parse<S extends z.ZodType>(schema: S, value: unknown, where: string): z.output<S> {
  const r = schema.safeParse(value ?? {})
  if (r.success) return r.data
  const issues = r.error.issues.map((i) => ({
    path: i.path.join('.') || `(${where})`,
    message: i.code === 'unrecognized_keys' ? `unknown field(s) ${i.keys.join(', ')}` : i.message,
  }))
  throw new InvalidRequestError(
    `Invalid request ${where}: ${issues.map((i) => `${i.path}: ${i.message}`).join('; ')}`,
    issues,
  )
}

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString())

/** A consumption key as `GET /api/keys` lists it. */
function keyView(k: KeyView, subs: Subscription[], now: number) {
  const live = k.active && (k.expiresAt === null || k.expiresAt > now)
  const base = { id: k.id, name: k.name, apiKey: `${k.start}...`, isActive: live }
  const times = {
    expiresAt: iso(k.expiresAt),
    createdAt: iso(k.createdAt),
    lastUsedAt: iso(k.lastUsedAt),
  }
  if (k.metadata['keyPlan'] === 'pool') {
    const sub = subs.find((s) => s.id === k.metadata['subscriptionId'])
    return {
      ...base,
      keyPlan: 'pool',
      keyType: 'subscription',
      subscriptionId: sub?.id ?? null,
      subscriptionStatus: sub && sub.expiresAt > now ? 'active' : 'expired',
      subscriptionExpiresAt: iso(sub?.expiresAt ?? null),
      ...times,
    }
  }
  const rates = k.limits.rateLimits ?? []
  return {
    ...base,
    keyPlan: 'credits',
    keyType: 'credit',
    category: k.category,
    maxBudget: k.limits.budget === undefined ? null : usd(k.limits.budget),
    rpmLimit: rates.find((r) => r.unit !== 'tokens')?.limit ?? null,
    tpmLimit: rates.find((r) => r.unit === 'tokens')?.limit ?? null,
    quotas: k.limits.quotas ?? null,
    ...times,
  }
}

/** Registers `/keys*` on `api` (the `/api` context, behind `accountAuth`). */
export function keyRoutes(api: FastifyInstance, tb: Tollbooth): void {
  const now = () => tb.options.clock?.now() ?? Date.now()
  const subsOf = async (user: string) => subscriptionsOf(await tb.accounts.get(user))

  /** The caller's consumption key (theirs, or one of their subscriptions'), or 404. */
  const own = async (user: string, id: string) => {
    const key = await tb.keys.get(id)
    const accounts = [user, ...(await subsOf(user)).map((s) => s.accountId)]
    if (key.kind !== 'consumption' || !accounts.includes(key.accountId))
      throw new NotFoundError('API key not found')
    return key
  }

  const listAll = async (
    accountId: string,
    kind: 'consumption' | 'management',
    category?: string,
  ) => {
    const out: KeyView[] = []
    let cursor: string | null = null
    do {
      const page = await tb.keys.list(accountId, {
        kind,
        limit: 100,
        cursor,
        ...(category ? { category } : {}),
      })
      out.push(...page.data)
      cursor = page.nextCursor
    } while (cursor)
    return out
  }

  api.get('/keys', async (request) => {
    const q = parse(schemas.list, request.query, 'query')
    const user = request.account.id
    const subs = await subsOf(user)
    const keys = (
      await Promise.all(
        [user, ...subs.map((s) => s.accountId)].map((a) => listAll(a, 'consumption', q.category)),
      )
    ).flat()
    keys.sort((a, b) => b.createdAt - a.createdAt || b.id.localeCompare(a.id))
    return { success: true, data: keys.map((k) => keyView(k, subs, now())) }
  })

  api.post('/keys/credit', async (request, reply) => {
    const body = parse(schemas.credit, request.body, 'body')
    const user = request.account.id
    // The balance check and the defaults (60 rpm, category) are `consumptionKeyRule`'s, run
    // by tb.keys for this route and the portal alike. The name is an alias, unique among the
    // account's keys (`002`).
    const { key, record } = await aliased(body.name, () =>
      tb.keys.create(
        {
          accountId: user,
          name: body.name,
          ...(body.category ? { category: body.category } : {}),
          limits: creditLimits(body),
          ...(body.expiresAt ? { expiresAt: body.expiresAt } : {}),
        },
        { uniqueName: true },
      ),
    )
    return reply.code(201).send({
      success: true,
      data: {
        id: record.id,
        name: record.name,
        keyType: 'credit',
        apiKey: key,
        isActive: true,
        createdAt: iso(record.createdAt),
      },
    })
  })

  api.post('/keys/subscription', async (request, reply) => {
    const body = parse(schemas.subscription, request.body, 'body')
    const subs = (await subsOf(request.account.id)).filter((s) => s.expiresAt > now())
    const sub = body.subscriptionId ? subs.find((s) => s.id === body.subscriptionId) : subs[0]
    if (!sub)
      return failure(
        reply,
        404,
        body.subscriptionId
          ? 'Subscription not found or not active'
          : 'No active pool subscription: reserve time blocks with POST /api/pools/:id/subscribe first',
        'not_found',
      )
    const { key, record } = await tb.keys.create({
      accountId: sub.accountId,
      name: `${sub.poolId} key`,
      category: 'subscription',
      metadata: { keyPlan: 'pool', subscriptionId: sub.id },
      expiresAt: sub.expiresAt,
      limits: poolLimits(sub),
    })
    return reply.code(201).send({
      success: true,
      data: { id: record.id, apiKey: key, isActive: true },
    })
  })

  api.put<{ Params: { id: string } }>('/keys/:id', async (request) => {
    const body = parse(schemas.update, request.body, 'body')
    const key = await own(request.account.id, request.params.id)
    const updated = await aliased(body.name, () =>
      tb.keys.update(
        key.id,
        {
          ...(body.name !== undefined ? { name: body.name } : {}),
          ...(body.isActive !== undefined ? { active: body.isActive } : {}),
        },
        { uniqueName: true },
      ),
    )
    return { success: true, data: keyView(updated, await subsOf(request.account.id), now()) }
  })

  // "Permanently deletes a consumption key and revokes it", used or not: the record goes, so
  // the key is refused at once and every route answers 404 for it; its usage events stay in
  // the account's usage and billing.
  api.delete<{ Params: { id: string } }>('/keys/:id', async (request) => {
    const key = await own(request.account.id, request.params.id)
    await tb.keys.delete(key.id, {}, { evenIfUsed: true })
    return { success: true, data: { deleted: true } }
  })

  api.get<{ Params: { id: string } }>('/keys/:id/logs', async (request) => {
    const q = parse(schemas.logs, request.query, 'query')
    const key = await own(request.account.id, request.params.id)
    const page = await tb.usage.logs(key.id, {
      limit: q.limit,
      ...(q.cursor ? { cursor: q.cursor } : {}),
      ...(q.category ? { category: q.category } : {}),
    })
    return {
      success: true,
      data: {
        logs: page.data.map((e) => ({
          time: iso(e.time),
          // `002`: the alias "shows up in logs"; the key's category beside the request's.
          alias: key.name,
          keyCategory: key.category,
          category: e.category,
          endpoint: `${e.method} ${e.path}`,
          status: e.status,
          // Seed 002's "Duration": time to first byte; the total beside it.
          ttfbMs: e.ttfbMs,
          durationMs: e.durationMs,
          code: e.code,
          ip: e.ip,
          credits: e.units,
          tokens: e.tokens,
        })),
        nextCursor: page.nextCursor,
      },
    }
  })

  api.get('/keys/management', async (request) => {
    const keys = await listAll(request.account.id, 'management')
    return {
      success: true,
      data: keys.map((k) => ({
        id: k.id,
        name: k.name,
        keyPrefix: k.start,
        isActive: k.active,
        lastUsedAt: iso(k.lastUsedAt),
        createdAt: iso(k.createdAt),
      })),
    }
  })

  api.post('/keys/management', async (request, reply) => {
    const body = parse(schemas.management, request.body, 'body')
    const { key, record } = await tb.keys.create({
      accountId: request.account.id,
      name: body.name,
      kind: 'management',
    })
    return reply.code(201).send({
      success: true,
      data: { id: record.id, name: record.name, keyPrefix: record.start, apiKey: key },
    })
  })

  api.delete<{ Params: { id: string } }>('/keys/management/:id', async (request) => {
    const key = await tb.keys.get(request.params.id, { accountId: request.account.id })
    if (key.kind !== 'management') throw new NotFoundError('API key not found')
    await tb.keys.delete(key.id, {}, { evenIfUsed: true })
    return { success: true, data: { deleted: true } }
  })
}
