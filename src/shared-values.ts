/**
 * @module shared-values
 *
 * Values many long-lived records hold alike, kept once. Among a million keys each copy of an
 * empty object (56 bytes), an empty list (32) or a key's limits (about 250 bytes in five
 * objects) is heap the collector pays for at every scavenge: a scavenge walks every page of
 * the old generation (bench/NOTES.md, session 18), so its time follows the heap's bytes.
 * What is shared is frozen: a holder that hands it out must not expect to change it.
 */

/** The empty object every holder with no fields shares. */
export const NO_FIELDS: Readonly<Record<string, unknown>> = Object.freeze({})

/** The empty list every holder with no items shares. */
export const NO_ITEMS: readonly never[] = Object.freeze([])

/** True for `{}` itself: a plain object with no own keys (symbols included). */
function isEmptyPlainObject(v: unknown): boolean {
  return (
    typeof v === 'object' &&
    v !== null &&
    Object.getPrototypeOf(v) === Object.prototype &&
    Reflect.ownKeys(v).length === 0
  )
}

/** `v`, or the shared frozen empty value when it is `{}` or `[]`. */
export function sharedIfEmpty<T>(v: T): T {
  if (Array.isArray(v)) return (v.length === 0 ? NO_ITEMS : v) as T
  return (isEmptyPlainObject(v) ? NO_FIELDS : v) as T
}

/**
 * True when `v` is plain data that `JSON.stringify` writes injectively: finite numbers other
 * than -0, strings, booleans, null, and arrays and plain objects of them (no undefined, no
 * symbol keys). Two such values with the same text (key order included) are equal.
 */
function plainData(v: unknown, depth: number): boolean {
  if (depth > 16) return false
  switch (typeof v) {
    case 'string':
    case 'boolean':
      return true
    case 'number':
      return Number.isFinite(v) && !Object.is(v, -0)
    case 'object': {
      if (v === null) return true
      if (Array.isArray(v)) {
        for (let i = 0; i < v.length; i++) if (!plainData(v[i], depth + 1)) return false
        return true
      }
      if (Object.getPrototypeOf(v) !== Object.prototype) return false
      // Enumerable string keys only: JSON leaves out symbols and non-enumerable fields.
      const keys = Object.keys(v)
      if (keys.length !== Reflect.ownKeys(v).length) return false
      for (const k of keys)
        if (!plainData((v as Record<string, unknown>)[k], depth + 1)) return false
      return true
    }
    default:
      return false
  }
}

function deepFreeze<T>(v: T): T {
  if (typeof v === 'object' && v !== null) {
    for (const k of Object.keys(v)) deepFreeze((v as Record<string, unknown>)[k])
    Object.freeze(v)
  }
  return v
}

/**
 * A table of shared values: `shared(v)` answers one frozen copy for every value equal to `v`
 * (made by `copy`), or `v` itself when it is not plain data or the table is full (`max`
 * distinct values; they stay for the table's life). For the parts of stored records that many
 * records repeat: a key's limits, mostly its plan's.
 */
export function sharedValues(copy: <T>(v: T) => T, max = 1024): <T>(v: T) => T {
  const table = new Map<string, unknown>()
  return <T>(v: T): T => {
    if (typeof v !== 'object' || v === null) return v
    const empty = sharedIfEmpty(v)
    if (empty !== v) return empty
    if (!plainData(v, 0)) return v
    const text = JSON.stringify(v)
    const had = table.get(text)
    if (had !== undefined) return had as T
    if (table.size >= max) return v
    const frozen = deepFreeze(copy(v))
    table.set(text, frozen)
    return frozen
  }
}
