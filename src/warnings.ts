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

/**
 * What this process is, when it is one of several serving the same app: a Node cluster worker
 * (`node:cluster`'s `isWorker`, reached through `process.getBuiltinModule` where the runtime
 * has it, so the core imports no `node:*`; Node removes the `NODE_UNIQUE_ID` it is told by
 * from the worker's environment; PM2's cluster mode is such a cluster) or one of several PM2
 * instances (`NODE_APP_INSTANCE` above 0). Undefined otherwise, and wherever it cannot tell.
 */
export function clusterWorker(): string | undefined {
  const p = (
    globalThis as { process?: { getBuiltinModule?: (id: string) => { isWorker?: boolean } } }
  ).process
  try {
    if (p?.getBuiltinModule?.('node:cluster')?.isWorker === true) return 'a cluster worker'
  } catch {
    // A runtime without it, or one that refuses it: not known.
  }
  const pm2 = env('NODE_APP_INSTANCE')
  if (pm2 !== undefined && pm2 !== '0') return `PM2 instance ${pm2}`
  return undefined
}
