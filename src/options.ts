/**
 * @module options
 *
 * Every option of tollbooth and its default, in one zod schema per object. A bad or unknown
 * option throws a {@link ConfigError} naming each bad path and what was expected; a bad value
 * is never coerced to the default.
 */

import { z } from 'zod'
import type { Clock } from './clock.js'
import { ConfigError, type InvalidField, InvalidRequestError } from './errors.js'
import { DEFAULT_HEADER_FAMILIES, type HeaderFamilies } from './headers.js'
import { instantMs } from './input.js'
import { PREFIX_PATTERN } from './keys/format.js'
import type { KeySource, TollboothRequest, TrustProxy } from './request.js'
import type { ChargeWhen } from './settle.js'
import { sendWaitOf } from './storage/send-wait.js'
import type { Storage } from './storage/types.js'

const posInt = z.number().int().positive().max(Number.MAX_SAFE_INTEGER)
const nonNeg = z.number().nonnegative().finite()

/**
 * An integer from `min` to `max` with one message for every way to miss it (for options; key
 * limits keep the request wording of `limitsSchema`).
 */
export function integer(min = 0, max = Number.MAX_SAFE_INTEGER) {
  const error =
    max === Number.MAX_SAFE_INTEGER
      ? `must be an integer >= ${min}`
      : `must be an integer from ${min} to ${max}`
  return z.number({ error }).int({ error }).min(min, { error }).max(max, { error })
}

/**
 * Marks an issue of an option that takes an object or a function (a client, a pool, a
 * storage): a string given there is shown by its length only, since the string people pass
 * by mistake is the connection URL or the secret key the object should have been built from.
 */
const NOT_TEXT = { takes: 'object' } as const

/**
 * An option that takes an object or a function, checked by `check`: a value it refuses is
 * named by its type in the error, never quoted (see {@link NOT_TEXT}).
 */
export const objectOption = <T>(check: (v: unknown) => boolean, message: string) =>
  z.custom<T>(check, { message, params: NOT_TEXT })

/** A function option; `what` says what it is called with, if anything. */
export const fnOption = <T>(what = 'a function') =>
  objectOption<T>((v) => typeof v === 'function', `must be ${what}`)

/** Rate limits (GCRA): at most 8, each `limit` units per `windowMs`, of requests or tokens. */
const rateLimitsSchema = z
  .array(
    z
      .object({
        limit: posInt,
        windowMs: posInt,
        unit: z.enum(['requests', 'tokens']).optional(),
        /** Decided by the store on every request, never from a lease (docs/leases.md). */
        exact: z.boolean().optional(),
      })
      .strict(),
  )
  .max(8)

/** Key limits, shared by `keys.create`, `keys.update` and the management API. */
export const limitsSchema = z
  .object({
    quotas: z
      .object({
        total: posInt.optional(),
        daily: posInt.optional(),
        weekly: posInt.optional(),
        monthly: posInt.optional(),
      })
      .strict()
      .optional(),
    rateLimits: rateLimitsSchema.optional(),
    concurrency: posInt.optional(),
    budget: nonNeg.optional(),
    timeBlocks: z
      .array(
        z
          .object({ start: instantMs, end: instantMs })
          .strict()
          .refine((b) => b.end > b.start, { message: 'end must be after start', path: ['end'] }),
      )
      .max(1000)
      .optional(),
    /** Every limit of the key decided by the store on every request, never from a lease. */
    exact: z.boolean().optional(),
  })
  .strict()

const planSchema = z
  .object({
    /** Shown to people, e.g. "Pro ($99/mo)". */
    display: z.string().min(1).max(100).optional(),
    /** Credits granted each period; null: unlimited. */
    monthlyCredits: nonNeg.nullable().default(null),
    /** Price per credit beyond the plan's credits (informational, reported to billing). */
    overageRate: nonNeg.default(0),
    /** When true, requests beyond the credits are served and recorded as overage, not refused. */
    allowOverage: z.boolean().default(false),
    /** How many months of unused credits carry into the next period (0: none). */
    carryoverMonths: z.number().int().min(0).max(120).default(0),
    /** Rate limits across all of an account's keys. */
    rateLimits: rateLimitsSchema.default([]),
    /**
     * The plan's rate limits and its accounts' credits decided by the store on every request,
     * never from a lease (docs/leases.md).
     */
    exact: z.boolean().optional(),
  })
  .strict()

export type Plan = z.output<typeof planSchema>

const fn = <T>() => fnOption<T>()

const keySource = z.union([
  z.enum(['bearer', 'x-api-key']),
  fn<(r: TollboothRequest) => string | undefined>(),
])

const headerFamilies = z
  .object({ requestId: z.boolean(), rateLimit: z.boolean(), ietf: z.boolean(), usage: z.boolean() })
  .partial()
  .strict()

/** `trustProxy`, the same in every adapter, the management API and the portal. */
export const trustProxySchema: z.ZodType<TrustProxy> = z.union(
  [
    z.boolean(),
    z.number().int().positive().max(100),
    z
      .object({
        hops: z.number().int().positive().max(100),
        header: z.enum(['x-forwarded-for', 'forwarded']),
      })
      .strict(),
    z.object({ hops: z.literal(1), header: z.literal('x-real-ip') }).strict(),
  ],
  {
    error:
      'must be a boolean, the number of proxies in front (1-100), { hops, header: "x-forwarded-for" | "forwarded" }, or { hops: 1, header: "x-real-ip" }',
  },
)

const prefix = z.string().regex(PREFIX_PATTERN, 'must be 1-32 of A-Z a-z 0-9 _')

/** The status of a reached rolling quota, for the instance and per route. */
const quotaStatus = z.union([z.literal(401), z.literal(403), z.literal(429)])

export const optionsSchema = z
  .object({
    /** At least 32 characters; derives the key-hash and sealing keys. To rotate it, list the old one in `previousSecrets`. */
    secret: z.string().min(32, 'must be at least 32 characters (e.g. `openssl rand -base64 32`)'),
    /**
     * Secrets used before `secret`, newest first, to rotate it: keys and provider keys stored
     * under one of them keep working (a key is looked up under `secret` first, then under each
     * of these; a provider key opened with each in turn), while everything new is made under
     * `secret`. `tb.stats().previousSecrets` counts what was found under one of them.
     */
    previousSecrets: z
      .array(z.string().min(32, 'must be at least 32 characters (e.g. `openssl rand -base64 32`)'))
      .max(8)
      .default([]),
    /**
     * Key prefixes. `consumption` may list several (`['sk_live_', 'sk_pool_']`, a prefix per
     * type of key): each is parsed and checksummed alike; the first is the default of new keys.
     */
    prefixes: z
      .object({
        consumption: z.union([prefix, z.array(prefix).min(1).max(16)]).default('sk_live_'),
        management: prefix.default('mk_live_'),
      })
      .strict()
      .default({ consumption: 'sk_live_', management: 'mk_live_' })
      .transform((p) => {
        const all = typeof p.consumption === 'string' ? [p.consumption] : p.consumption
        return { consumption: all[0]!, management: p.management, consumptionAll: all }
      })
      .refine(
        (p) => {
          const all = [...p.consumptionAll, p.management]
          return all.every((a, i) => all.every((b, j) => i === j || !a.startsWith(b)))
        },
        {
          message:
            'must not start with one another (no key prefix may begin another or repeat one)',
        },
      ),
    storage: objectOption<Storage>(
      (v) =>
        typeof v === 'object' &&
        v !== null &&
        ['keys', 'counters', 'usage', 'accounts', 'secrets', 'ipBlocks'].every((k) => k in v),
      'must be a Storage (keys, counters, usage, accounts, secrets, ipBlocks), e.g. memoryStorage()',
    ).optional(),
    clock: objectOption<Clock>(
      (v) => typeof (v as Clock)?.now === 'function',
      'must have now(): number',
    ).optional(),
    cache: z
      .union([
        z.literal(false),
        z
          .object({
            ttlMs: integer(1).default(30_000),
            negativeTtlMs: integer(1).default(5_000),
            max: integer(1).default(10_000),
            /** Remember recent key strings, so a repeat request skips the hash (src/cache.ts). */
            memoizeKeys: z.boolean().default(true),
            /** While the storage's change feed is down: the longest a cached entry is served. */
            feedDownTtlMs: integer(1).default(5_000),
            /**
             * Every this many ms the instance sends itself a probe through the change feed; one
             * not back by the next marks the feed down (a connection silently deaf). 0: never.
             */
            feedProbeMs: z.union([z.literal(0), integer(50)]).default(2_500),
          })
          .strict(),
      ])
      .default({
        ttlMs: 30_000,
        negativeTtlMs: 5_000,
        max: 10_000,
        memoizeKeys: true,
        feedDownTtlMs: 5_000,
        feedProbeMs: 2_500,
      }),
    keySources: z.array(keySource).min(1).default(['bearer', 'x-api-key']),
    headers: headerFamilies.default({}),
    /** Status for a reached rolling quota: 429 by default; 401 as in `002_2f2523503321cfc2.txt`. */
    quotaStatus: quotaStatus.default(429),
    /**
     * The failed-authentication guard: an address with `limit` failures within `windowMs` is
     * refused for `blockMs`. Requests that carry `X-Forwarded-For`/`Forwarded` on a route that
     * does not trust proxies may all come from one proxy: their address is blocked only at
     * `proxiedLimit`, a brake on floods that never blocks a proxy for one client's mistakes.
     */
    failedAuth: z
      .union([
        z.literal(false),
        z
          .object({
            limit: integer(1).default(20),
            windowMs: integer(1).default(60_000),
            blockMs: integer(1).default(15 * 60_000),
            proxiedLimit: integer(1).default(1000),
          })
          .strict(),
      ])
      .default({ limit: 20, windowMs: 60_000, blockMs: 15 * 60_000, proxiedLimit: 1000 }),
    /** A bound on every hot-path storage call; then fail closed (503) or open. */
    storageTimeoutMs: integer(1).default(2_000),
    failOpen: z.boolean().default(false),
    plans: z.record(z.string().min(1).max(64), planSchema).default({}),
    defaultTier: z.string().min(1).max(64).nullable().default(null),
    /**
     * Settles and cancels that could not be applied are retried from a queue of at most this
     * many (see `retry-queue`); beyond it they are dropped and reported to `onError`.
     */
    maxPendingSettles: integer(1).default(10_000),
    /**
     * Admissions of one account sent to a remote counter store at once; the others wait their
     * turn in this process, within `storageTimeoutMs` (and beyond 32 waiting per slot are
     * answered 503 `storage_unavailable` at once), so one account's burst on a slow store
     * cannot take every connection from the others. Default: half the store's `concurrency`
     * when it sets one, else 64 (PostgreSQL's counters set none: they bound each account's
     * transactions themselves).
     */
    accountInFlight: integer(1).optional(),
    /**
     * How long a request's credit hold lives unless renewed: this instance renews the holds of
     * its requests in flight every third of the shorter of the two TTLs, so a response longer
     * than this keeps its credits until it settles; those of a process that died lapse after it.
     */
    reservationTtlMs: integer(1).default(5 * 60_000),
    /** The same for a request's concurrency slot (see `reservationTtlMs`). */
    leaseTtlMs: integer(1).default(5 * 60_000),
    /**
     * Leased limits (docs/leases.md): on counters in another process (Redis, PostgreSQL), an
     * instance borrows a share of a hot limit in one atomic store call and admits against it
     * locally. `false`: every admission asks the store. In-process counters (memory, SQLite)
     * are never leased.
     */
    leases: z
      .union([
        z.literal(false),
        z
          .object({
            /** A lease is sized to this many ms of the limit's traffic. */
            spanMs: integer(1, 60_000).default(100),
            /**
             * How long a credit lease (and a quota's, within its bucket) admits: a top-up or plan
             * change reaches every instance within it. A crashed instance's credit lease lapses after
             * it plus `reservationTtlMs`.
             */
            ttlMs: integer(1, 3_600_000).default(1_000),
            /** The largest lease, as a fraction of the limit (the early-refusal bound). */
            maxShare: z
              .number({ error: 'must be a number above 0 and at most 0.5' })
              .gt(0, { error: 'must be a number above 0 and at most 0.5' })
              .max(0.5, { error: 'must be a number above 0 and at most 0.5' })
              .default(0.01),
            /** The smallest lease worth a store call (units); smaller limits stay central. */
            minUnits: integer(1).default(8),
            /** A lease takes at most 1/`exhaustDivisor` of what the store last said was left. */
            exhaustDivisor: integer(1, 1_000_000).default(8),
            /** After a refused lease the limit is decided centrally for this long (ms). */
            cooldownMs: integer(0, 60_000).default(250),
            /** How often due leases are ended and their unused part given back (ms). */
            flushEveryMs: integer(1, 60_000).default(100),
            /**
             * The most any instance's clock is off true time (ms): a credit lease's store hold
             * lives twice this longer than its holder counts on it (docs/leases.md, "Clocks").
             */
            clockSkewMs: integer(0, 600_000).default(2_000),
          })
          .strict(),
      ])
      .default({
        spanMs: 100,
        ttlMs: 1_000,
        maxShare: 0.01,
        minUnits: 8,
        exhaustDivisor: 8,
        cooldownMs: 250,
        flushEveryMs: 100,
        clockSkewMs: 2_000,
      }),
    providers: z
      .record(
        z.string().regex(/^[a-z0-9-]{1,64}$/, 'provider ids are lowercase'),
        z.string().regex(/^[A-Za-z0-9-]{1,128}$/),
      )
      .optional(),
    /** Provider id -> a function that checks a stored provider key (for `providerKeys.verify`). */
    verifiers: z
      .record(z.string(), fn<(apiKey: string) => Promise<boolean> | boolean>())
      .default({}),
    usage: z
      .object({
        flushIntervalMs: integer(1).default(1_000),
        maxBatch: integer(1).default(500),
        /**
         * Usage events (the request logs, and what monthly reports sum) older than this are
         * pruned. Default 400 days, so `usage.get(id, { month })` stays exact for a year.
         */
        retentionMs: integer(1).default(400 * 86_400_000),
        /**
         * A key's `lastUsedAt` is written at most once per this many ms per instance, so it is
         * at most this much older than the key's last request (plus the flush). 0: every
         * request. Default one minute.
         */
        lastUsedResolutionMs: integer(0).default(60_000),
      })
      .strict()
      .default({
        flushIntervalMs: 1_000,
        maxBatch: 500,
        retentionMs: 400 * 86_400_000,
        lastUsedResolutionMs: 60_000,
      }),
    /** Called with errors that happen off the request path (flush failures); secrets never included. */
    onError: fn<(err: unknown) => void>().optional(),
  })
  .strict()

export type TollboothOptions = z.input<typeof optionsSchema>
export type ResolvedOptions = z.output<typeof optionsSchema> & { headers: HeaderFamilies }

function issuesOf(error: z.ZodError, root: string): InvalidField[] {
  return flatten(error.issues, []).map((i) => ({
    path: i.path.map(String).join('.') || root,
    message: describe(i),
  }))
}

/**
 * A union the value matched by type but not by content (`cache: { ttlMs: -5 }` against
 * `false | { … }`) reports that branch's own issues, so the message names the field, not
 * just the union's "Invalid input".
 */
function flatten(issues: ReadonlyArray<z.core.$ZodIssue>, base: PropertyKey[]): z.core.$ZodIssue[] {
  const out: z.core.$ZodIssue[] = []
  for (const i of issues) {
    const path = [...base, ...i.path]
    const inside =
      i.code === 'invalid_union' ? i.errors.filter((b) => b.every((x) => x.path.length > 0)) : []
    if (inside.length === 1) out.push(...flatten(inside[0]!, path))
    else out.push({ ...i, path })
  }
  return out
}

function describe(i: z.core.$ZodIssue): string {
  if (i.code === 'unrecognized_keys')
    return `unknown field(s) ${i.keys.map((k) => `"${k}"`).join(', ')}`
  return i.message
}

/** zod's own wording (`Invalid input: …`, `Too small: …`), as opposed to a schema's message. */
const ZOD_WORDING = /^(?:Invalid|Too (?:small|big)|Unrecognized|Expected)\b/

const ARTICLE: Record<string, string> = {
  int: 'an integer',
  array: 'an array',
  object: 'an object',
  record: 'an object',
  tuple: 'an array',
  undefined: 'undefined',
  null: 'null',
}

/** What an option must be, in words that follow its name: `must be an integer >= 0`. */
function problem(i: z.core.$ZodIssue): string {
  if (!ZOD_WORDING.test(i.message)) return i.message
  switch (i.code) {
    case 'invalid_type':
      if (/received undefined$/.test(i.message)) return 'is required'
      return `must be ${ARTICLE[i.expected] ?? `a ${i.expected}`}`
    case 'too_small':
    case 'too_big': {
      const small = i.code === 'too_small'
      const bound = String(small ? i.minimum : i.maximum)
      if (i.origin === 'string')
        return `must be at ${small ? 'least' : 'most'} ${bound} characters long`
      if (i.origin === 'array' || i.origin === 'set')
        return `must have at ${small ? 'least' : 'most'} ${bound} items`
      return `must be ${small ? '>' : '<'}${i.inclusive ? '=' : ''} ${bound}`
    }
    case 'invalid_value':
      return `must be ${i.values.map((v) => JSON.stringify(v)).join(' or ')}`
    case 'invalid_format':
      return i.format === 'regex'
        ? `must match ${(i as { pattern?: string }).pattern ?? 'its pattern'}`
        : `must be a valid ${i.format === 'url' ? 'URL' : i.format}`
    case 'not_multiple_of':
      return `must be a multiple of ${String(i.divisor)}`
    case 'invalid_union': {
      const forms = i.errors.map((branch) => {
        const first = branch.find((x) => x.path.length === 0)
        return first ? problem(first).replace(/^must be /, '') : 'an object of its own shape'
      })
      return `must be ${[...new Set(forms)].join(' or ')}`
    }
    default:
      return 'is not valid'
  }
}

/** Names whose value is never shown in an error (a secret, a key, a password). */
const SENSITIVE = /(?:secret|password|token|apikey|credential)s?$/i

/** The user information of a URL (`//user:password@`), never shown. */
const URL_USERINFO = /\/\/[^/?#@\s]*@/g

/**
 * A value as an error shows it: short, and never a secret's characters. A string is quoted
 * only where the option takes text (`quote`) and its name is not a secret's, and then without
 * a URL's user and password.
 */
function shown(name: string, v: unknown, quote = true): string {
  if (v === null || v === undefined || typeof v === 'number' || typeof v === 'boolean')
    return String(v)
  if (typeof v === 'bigint') return `${v}n`
  if (typeof v === 'string') {
    if (!quote || SENSITIVE.test(name)) return `a string of ${v.length} characters`
    const safe = v.replace(URL_USERINFO, '//***@')
    return JSON.stringify(safe.length > 60 ? `${safe.slice(0, 57)}...` : safe)
  }
  if (typeof v === 'function') return 'a function'
  if (Array.isArray(v)) return `an array of ${v.length}`
  const ctor = (v as { constructor?: { name?: unknown } }).constructor?.name
  return typeof ctor === 'string' && ctor !== 'Object' && ctor !== '' ? `a ${ctor}` : 'an object'
}

/** The unit of an option, from its name: `…Ms` is in milliseconds, `…Sec` in seconds. */
function unitOf(name: string): string {
  if (/[a-z]Ms$|^ms$/.test(name)) return ' (milliseconds)'
  if (/[a-z]Sec$/.test(name)) return ' (seconds)'
  return ''
}

function valueAt(value: unknown, path: ReadonlyArray<PropertyKey>): unknown {
  let v = value
  for (const k of path) {
    if (typeof v !== 'object' || v === null || !Object.hasOwn(v, k)) return undefined
    v = (v as Record<PropertyKey, unknown>)[k]
  }
  return v
}

/**
 * One bad option in the format every factory of tollbooth uses:
 * `redisStorage: options.settleBatchMs must be an integer >= 0 (milliseconds), got -1`.
 *
 * @param factory the function the user called (`createTollbooth`, `redisStorage`, `tb.route`)
 * @param path the option, from the argument's name (`options.settleBatchMs`, `tb`)
 * @param must what it must be, in words that follow its name (`must be …`, `is required`)
 * @param got the value given; left out, the message shows none
 */
export function optionError(
  factory: string,
  path: string,
  must: string,
  ...got: [] | [unknown]
): ConfigError {
  return new ConfigError(`${factory}: ${optionLine(path, must, got)}`)
}

function optionLine(path: string, must: string, got: [] | [unknown], quote = true): string {
  // An element of a list is named by its list (`previousSecrets.0` by `previousSecrets`).
  const name = /(?:^|\.)([^.]+)(?:\.\d+)*$/.exec(path)?.[1] ?? path
  const value = got.length === 0 ? '' : `, got ${shown(name, got[0], quote)}`
  return `${path} ${must}${unitOf(name)}${value}`
}

/** Whether a string given for the option of issue `i` may be quoted: not where an object goes. */
function takesText(i: z.core.$ZodIssue): boolean {
  if (i.code === 'invalid_type') return i.expected !== 'object' && i.expected !== 'function'
  return !(i.code === 'custom' && i.params?.['takes'] === NOT_TEXT.takes)
}

/**
 * A bad argument where an object, a function or a promise goes, in the format of a bad option:
 * `apiKey.waitUntil: promise must be a promise or thenable, got 42` (a string given is shown by
 * its length, never its characters).
 *
 * @param fn the function the user called (`apiKey.waitUntil`, `managementApi`)
 * @param name the argument's name (`promise`, `tb`)
 */
export function argumentError(fn: string, name: string, must: string, got: unknown): ConfigError {
  return new ConfigError(`${fn}: ${optionLine(name, must, [got], false)}`)
}

/**
 * Checks the `tb` argument of an adapter's factory (`managementApi(tb)`, `portal(tb)`,
 * `stripeBilling(tb)`), in the same format as a bad option.
 *
 * @throws {ConfigError} `<factory>: tb must be a tollbooth instance from createTollbooth(), got …`
 */
export function checkTollboothArg(factory: string, tb: unknown): void {
  if (typeof (tb as { authenticate?: unknown } | null)?.authenticate !== 'function')
    throw argumentError(factory, 'tb', 'must be a tollbooth instance from createTollbooth()', tb)
}

/**
 * Validates the options of a factory: every factory of tollbooth and its adapters goes
 * through here, so a bad or unknown option throws one {@link ConfigError} in one format,
 * each bad option named with what it must be and what it got:
 * `redisStorage: options.settleBatchMs must be an integer >= 0 (milliseconds), got -1`.
 * A bad value is never coerced to the default.
 *
 * @param factory the function the user called (`createTollbooth`, `redisStorage`, `tb.route`)
 * @param schema the options' zod schema (messages written to follow the option's name)
 * @param [base='options'] the name of the validated value (`options.auth.session`)
 * @throws {ConfigError} naming every bad or unknown option
 */
export function parseOptions<S extends z.ZodType>(
  factory: string,
  schema: S,
  value: unknown,
  base = 'options',
): z.output<S> {
  const r = schema.safeParse(value)
  if (r.success) return r.data
  const lines = flatten(r.error.issues, []).flatMap((i) => {
    const at = [base, ...i.path.map(String)].join('.')
    if (i.code === 'unrecognized_keys') return i.keys.map((k) => `${at}.${k} is not an option`)
    const must = problem(i)
    const got: [] | [unknown] = must === 'is required' ? [] : [valueAt(value, i.path)]
    return [optionLine(at, must, got, takesText(i))]
  })
  throw new ConfigError(`${factory}: ${lines.join('; ')}`)
}

/**
 * Parses request input, throwing an {@link InvalidRequestError} (400) that names every bad
 * field, in the one wording of every entry (`tb.keys`, `tb.usage`, … and the management API's
 * bodies and queries): `Invalid request body: name: must be 1-100 characters`, an unknown
 * field as `unknown field(s) "x"`.
 *
 * @param [where] what `value` is (`body`, `query`), named in the message; an issue of the
 *   whole value has the path `(where)`, or `(root)` when none is given
 */
export function parseInput<S extends z.ZodType>(
  schema: S,
  value: unknown,
  where?: string,
): z.output<S> {
  const r = schema.safeParse(value)
  if (r.success) return r.data
  const root = `(${where ?? 'root'})`
  const issues = issuesOf(r.error, root)
  const lines = issues.map((i) => (i.path === root ? i.message : `${i.path}: ${i.message}`))
  throw new InvalidRequestError(
    `Invalid request${where ? ` ${where}` : ''}: ${lines.join('; ')}`,
    issues,
  )
}

export function resolveOptions(options: unknown): ResolvedOptions {
  const o = parseOptions('createTollbooth', optionsSchema, options)
  if (o.defaultTier !== null && !Object.hasOwn(o.plans, o.defaultTier)) {
    throw optionError(
      'createTollbooth',
      'options.defaultTier',
      `must be a key of options.plans (${Object.keys(o.plans).join(', ') || 'none given'})`,
      o.defaultTier,
    )
  }
  const wait = o.storage && sendWaitOf(o.storage)
  if (wait !== undefined && wait.ms >= o.storageTimeoutMs) {
    // Not clamped: a bad value is never taken as another (the storage's own, as given, is
    // what its other users and its tests rely on); the message says which to change.
    throw optionError(
      'createTollbooth',
      'options.storageTimeoutMs',
      `must be above the storage's ${wait.option}, ${wait.ms} ms (a call of the storage may be sent, or commit, that long after it was made: after its caller was answered 503)`,
      o.storageTimeoutMs,
    )
  }
  const repeated = o.previousSecrets.findIndex(
    (s, i) => s === o.secret || o.previousSecrets.indexOf(s) < i,
  )
  if (repeated >= 0) {
    throw optionError(
      'createTollbooth',
      `options.previousSecrets.${repeated}`,
      'must differ from options.secret and from the other previous secrets',
      o.previousSecrets[repeated],
    )
  }
  const { secret, previousSecrets, ...rest } = o
  const resolved = { ...rest, headers: { ...DEFAULT_HEADER_FAMILIES, ...o.headers } }
  // Readable as `tb.options.secret`, but not enumerable: `console.log(tb)`, `util.inspect`,
  // `JSON.stringify(tb.options)` and a spread of the options leave them out.
  Object.defineProperty(resolved, 'secret', { value: secret, enumerable: false })
  Object.defineProperty(resolved, 'previousSecrets', { value: previousSecrets, enumerable: false })
  return resolved as ResolvedOptions
}

/** Per-route options, the same in the Hono, Express and Fastify adapters. */
export const routeOptionsSchema = z
  .object({
    /** The key kind this route takes. Default `consumption`. */
    kind: z.enum(['consumption', 'management']).default('consumption'),
    /** Scopes the key must all have. */
    scopes: z.array(z.string().min(1).max(128)).default([]),
    /** Credits held at admission and charged at settle: a number or a function of the request. */
    cost: z.union([nonNeg, fn<(r: TollboothRequest) => number>()]).optional(),
    /**
     * What a charge reported above the route's `cost` (the estimate held) does: `'cap'` cuts
     * it to the estimate (strict prepaid; the default, except on a plan with `allowOverage`,
     * where the whole report is charged and the excess recorded as overage);
     * `{ maxOverdraft }` charges it up to `maxOverdraft` credits past what the account (and
     * a key budget) had left at admission, and the account's next requests are refused (402)
     * until a top-up covers the debt.
     */
    overrun: z.union([z.literal('cap'), z.object({ maxOverdraft: nonNeg }).strict()]).optional(),
    /**
     * Tokens reserved at admission against token-rate limits (`unit: 'tokens'`): a number or
     * a function of the request (e.g. prompt tokens + `max_tokens`). At settle the count is
     * trued-up to the tokens reported (the estimate stays when none are). Default 0: a token
     * limit then only checks for room at admission and counts the report at settle.
     */
    tokens: z.union([nonNeg, fn<(r: TollboothRequest) => number>()]).optional(),
    /** Every limit of this route's requests decided by the store, never from a lease. */
    exact: z.boolean().optional(),
    /** Usage category of the route (e.g. `tts`); a handler may override it. */
    category: z.string().min(1).max(64).optional(),
    keySources: z.array(keySource).min(1).optional(),
    headers: headerFamilies.optional(),
    quotaStatus: quotaStatus.optional(),
    /**
     * Whether a response is billed, from its status and how it ended; default: a completed
     * response with status < 400, an aborted one whose handler reported a charge.
     */
    chargeWhen: fn<ChargeWhen>().optional(),
    /**
     * How long a request whose client went away waits for its handler to finish before it
     * settles anyway, and a settle for the promises given to `Admission.waitUntil()` (ms).
     * Default: the instance's `leaseTtlMs`.
     */
    abortSettleMs: integer(1).optional(),
    /**
     * Reads BYOK provider keys from `X-Provider-Key-*` headers (all providers, or these). A
     * request the credits cannot cover is also let in, holding nothing, when its account has a
     * stored key of one of these providers.
     */
    byok: z.union([z.boolean(), z.array(z.string().min(1))]).default(false),
    /**
     * Whom to believe about the client IP: false (the socket's peer), n (n trusted proxies in
     * front, appending to `X-Forwarded-For`), `{ hops, header: 'forwarded' }` (RFC 7239),
     * `{ hops: 1, header: 'x-real-ip' }` (nginx's `X-Real-IP`) or true (every hop). Default
     * false. See {@link TrustProxy}.
     */
    trustProxy: trustProxySchema.default(false),
  })
  .strict()

export type RouteOptions = z.input<typeof routeOptionsSchema>
export type ResolvedRoute = Omit<
  z.output<typeof routeOptionsSchema>,
  'headers' | 'keySources' | 'quotaStatus' | 'byok'
> & {
  headers: HeaderFamilies
  keySources: KeySource[]
  quotaStatus: 401 | 403 | 429
  /** [provider id, lowercase header name] pairs read on this route. */
  byok: Array<[string, string]>
}

/**
 * True when a route's response headers can change after its handler (usage figures on a
 * metered route): adapters then write them with the response head. Otherwise they may go out
 * before the handler runs. Per request, `Admission.headersFinal` says the same.
 */
export function headersFollowHandler(route: ResolvedRoute): boolean {
  return route.headers.usage && route.cost !== undefined
}
