/**
 * @module warnings
 *
 * Setups that are valid but probably wrong get one warning each, with a `TOLLBOOTH_*` code
 * documented in `docs/errors.md`, and never fail a request. Each fires once per process.
 */

export type WarningCode =
  | 'TOLLBOOTH_LOCAL_COUNTERS'
  | 'TOLLBOOTH_MEMORY_STORAGE'
  | 'TOLLBOOTH_REDIS_EVICTION'
  | 'TOLLBOOTH_TEST_SECRET'
  | 'TOLLBOOTH_UNBILLED_OVERAGE'
  | 'TOLLBOOTH_UNTRUSTED_FORWARDED_FOR'

const seen = new Set<WarningCode>()

/** Logs `message` once per process with its code, through `console.warn`. */
export function warnOnce(code: WarningCode, message: string): void {
  if (seen.has(code)) return
  seen.add(code)
  console.warn(`[tollbooth] ${code}: ${message} (see docs/errors.md#${code.toLowerCase()})`)
}

/**
 * Reads an environment variable where there is a `process` (Node, Bun, Deno), else undefined.
 * Deno without `--allow-env` throws on the read: that is undefined too, not a failed start.
 */
export function env(name: string): string | undefined {
  const p = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process
  try {
    return p?.env?.[name]
  } catch {
    return undefined
  }
}
