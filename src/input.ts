/**
 * @module input
 *
 * The rules every user-given value passes before a store sees it, in one place, so memory,
 * Redis and PostgreSQL accept exactly the same values:
 *
 * - **Text** (key names, categories, scopes, metadata names and strings, provider keys) is
 *   valid Unicode without NUL: a lone UTF-16 surrogate cannot be encoded as UTF-8 (Redis's
 *   `cjson` and PostgreSQL's `jsonb` refuse it), and PostgreSQL text cannot hold `\0`.
 * - **Metadata** is JSON (string, finite number, boolean, null, array, plain object) nested at
 *   most {@link METADATA_MAX_DEPTH} deep and at most {@link METADATA_MAX_BYTES} as JSON. It is
 *   walked with an explicit stack that stops at the bound, so metadata nested 20,000 deep is
 *   refused in a few steps instead of overflowing a recursive walk or the database's parser.
 *   `__proto__` is refused as a name: assigning it on a plain object changes its prototype.
 * - **Recorded text** (a request's path, method, category in a usage event) is not refused
 *   but made storable ({@link storableText}): Hono decodes `%00` into a path.
 * - **Lookups by a user-given name** go through {@link ownValue}: `plans['constructor']` is
 *   `Object`, so an `in` check or a plain index would take an inherited member for a plan,
 *   a provider or a pool.
 */

import { z } from 'zod'

/** Deepest nesting of metadata: the metadata object itself is level 1. */
export const METADATA_MAX_DEPTH = 8

/** Largest metadata of a key, in bytes of its JSON (UTF-8). */
export const METADATA_MAX_BYTES = 8 * 1024

/**
 * Largest metadata of an account: larger than a key's, as integrators keep billing state and
 * subscriptions there (`tb.accounts.patch`).
 */
export const ACCOUNT_METADATA_MAX_BYTES = 64 * 1024

/**
 * The latest instant a `Date` holds, in ms since 1970 (ECMAScript's bound on a time value,
 * +275760-09-13). An instant past it is stored by every store but cannot be shown: `new
 * Date(ms).toISOString()` throws.
 */
export const MAX_INSTANT_MS = 8.64e15

const INSTANT_MESSAGE = `must be ms since 1970, an integer from 0 to ${MAX_INSTANT_MS}`

/** An instant a caller gives in ms since 1970: an integer a `Date` can hold, not before 1970. */
export const instantMs = z
  .number({ error: INSTANT_MESSAGE })
  .int({ error: INSTANT_MESSAGE, abort: true })
  .min(0, { error: INSTANT_MESSAGE })
  .max(MAX_INSTANT_MS, { error: INSTANT_MESSAGE })

/** A NUL or a lone surrogate (with the `u` flag a valid pair is one code point, not `Cs`). */
// biome-ignore lint/suspicious/noControlCharactersInRegex: NUL is one of the two it looks for
const BAD_TEXT = /[\u0000\p{Cs}]/u

/** Why `s` cannot be stored as text, or null when it can. */
export function textProblem(s: string): string | null {
  const m = BAD_TEXT.exec(s)
  if (!m) return null
  return m[0] === '\u0000'
    ? 'must not contain a NUL character'
    : 'must be valid Unicode (it contains a lone UTF-16 surrogate)'
}

/**
 * `s` with each NUL and lone surrogate replaced by U+FFFD: for text tollbooth records rather
 * than accepts (a request's path, method, category), so one odd request cannot make a store
 * refuse a whole batch of usage events.
 */
export function storableText(s: string): string {
  // Two builtins, not a Unicode regular expression (about 190 instructions a call, three calls a
  // settle): `isWellFormed` answers a one-byte string (ASCII, as paths and methods are) at once.
  if (s.indexOf('\0') < 0 && s.isWellFormed()) return s
  return s.toWellFormed().replaceAll('\0', '\ufffd')
}

/** Adds the text rule to a zod string schema (after its own length checks). */
export function text<S extends z.ZodType<string>>(schema: S): S {
  return schema.superRefine((s, ctx) => {
    const p = textProblem(s)
    if (p) ctx.addIssue({ code: 'custom', message: p })
  }) as unknown as S
}

type Path = Array<string | number>

const PAGE_SIZE_RULE = 'must be an integer from 1 to 100'

/**
 * The size of a page of a list, 1-100, with one message for every way to miss it: the core's
 * lists (`tb.keys.list`, `tb.usage.logs`, `tb.ipBlocks.list`) and the management API's
 * `?limit=` alike.
 */
export const pageSize = z
  .number({ error: PAGE_SIZE_RULE })
  .int({ error: PAGE_SIZE_RULE })
  .min(1, { error: PAGE_SIZE_RULE })
  .max(100, { error: PAGE_SIZE_RULE })

const CATEGORY_RULE = 'must be 1-64 characters'

/**
 * A category as given or filtered by (a key's, a request's usage category): 1-64 characters
 * after trimming, valid Unicode without NUL, one rule and one message wherever it is given.
 */
export const categoryText = text(z.string().trim().min(1, CATEGORY_RULE).max(64, CATEGORY_RULE))

/** One problem of a metadata value, its path relative to the metadata object. */
export interface ValueProblem {
  path: Path
  message: string
}

const isPlainObject = (v: object): boolean => {
  const proto = Object.getPrototypeOf(v)
  return proto === Object.prototype || proto === null
}

/**
 * The problems of `value` as metadata (at most 20, the first of each kind a walk meets), or
 * an empty list. Never recurses: the depth bound is checked before a level is entered.
 */
export function metadataProblems(value: unknown, maxBytes = METADATA_MAX_BYTES): ValueProblem[] {
  const problems: ValueProblem[] = []
  if (typeof value !== 'object' || value === null || Array.isArray(value) || !isPlainObject(value))
    return [{ path: [], message: 'must be an object' }]
  const stack: Array<{ v: unknown; path: Path; depth: number }> = [{ v: value, path: [], depth: 1 }]
  while (stack.length > 0 && problems.length < 20) {
    const { v, path, depth } = stack.pop()!
    if (typeof v === 'string') {
      const p = textProblem(v)
      if (p) problems.push({ path, message: p })
      continue
    }
    if (typeof v === 'number') {
      if (!Number.isFinite(v)) problems.push({ path, message: 'must be a finite number' })
      continue
    }
    if (v === null || typeof v === 'boolean') continue
    if (typeof v !== 'object' || !(Array.isArray(v) || isPlainObject(v))) {
      problems.push({
        path,
        message: 'must be JSON: a string, finite number, boolean, null, array or object',
      })
      continue
    }
    if (depth > METADATA_MAX_DEPTH) {
      problems.push({ path, message: `must be nested at most ${METADATA_MAX_DEPTH} levels deep` })
      continue
    }
    if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--)
        stack.push({ v: v[i], path: [...path, i], depth: depth + 1 })
      continue
    }
    for (const k of Object.keys(v).reverse()) {
      // A bad name is reported on its object: echoing it would carry the bad text along.
      const p = k === '__proto__' ? 'must not be "__proto__" (reserved)' : textProblem(k)
      if (p) {
        problems.push({ path, message: `a name ${p}` })
        continue
      }
      stack.push({ v: (v as Record<string, unknown>)[k], path: [...path, k], depth: depth + 1 })
    }
  }
  if (problems.length === 0) {
    const bytes = new TextEncoder().encode(JSON.stringify(value)).length
    if (bytes > maxBytes)
      problems.push({
        path: [],
        message: `must be at most ${maxBytes} bytes as JSON (got ${bytes})`,
      })
  }
  return problems
}

/**
 * Metadata as zod sees it: {@link metadataProblems} as issues, under the field's own path.
 * @param [maxBytes=METADATA_MAX_BYTES] the size bound, in bytes of JSON
 */
export const metadataSchema = (maxBytes = METADATA_MAX_BYTES) =>
  z.unknown().superRefine((v, ctx) => {
    for (const p of metadataProblems(v, maxBytes))
      ctx.addIssue({ code: 'custom', message: p.message, path: p.path })
  }) as unknown as z.ZodType<Record<string, unknown>>

/**
 * `record[key]` when `record` owns `key`, else undefined: an inherited member (`constructor`,
 * `toString`, `__proto__`) is never taken for an entry.
 */
export function ownValue<T>(record: Readonly<Record<string, T>>, key: string): T | undefined {
  return Object.hasOwn(record, key) ? record[key] : undefined
}
