/**
 * @module storage/typed-arrays
 *
 * Growing the typed arrays the memory store keeps its rows in, off the V8 heap
 * (`storage/counter-slots`, `storage/usage-tallies`): a typed array cannot grow in place.
 */

/** A copy of `a` in an array twice as long (the new half zeros). */
export function doubled<T extends Float64Array | Int32Array>(a: T): T {
  const grown = new (a.constructor as new (length: number) => T)(a.length * 2)
  grown.set(a)
  return grown
}
