/**
 * @module fast-object
 *
 * An object literal with a getter is made in V8's dictionary mode (Node 20: `{ get size() {…},
 * find }` reports `%HasFastProperties` false, and stays so), and every property read from such
 * an object in optimized code is then a call to the generic load IC, a hash lookup: the memory
 * store's counter rows, the pipeline's context and the usage out-box were read that way on every
 * request, about 2,900 instructions of 36,500 (bench/NOTES.md, session 29). Defined on the
 * object afterwards, a getter closing over one instance's state keeps the first instance fast
 * only: a second one's getter is another function, which the shared shape cannot hold.
 */

/**
 * `target` with the properties of `extra` (an object literal: `{ get size() { return n }, sweep }`):
 * its getters and setters inherited, from an object placed between `target` and its prototype,
 * and the rest defined on `target` itself, so `target` keeps fast properties (and a shape of its
 * own when it has accessors) and reads everything as before. A spread copy of `target` leaves
 * the accessors out.
 */
export function withAccessors<T extends object, A extends object>(target: T, extra: A): T & A {
  const descriptors: PropertyDescriptorMap = Object.getOwnPropertyDescriptors(extra)
  const accessors: PropertyDescriptorMap = {}
  for (const name of Reflect.ownKeys(descriptors)) {
    const d = descriptors[name]!
    if (d.get !== undefined || d.set !== undefined) accessors[name] = d
    else Object.defineProperty(target, name, d)
  }
  if (Reflect.ownKeys(accessors).length > 0)
    Object.setPrototypeOf(target, Object.create(Object.getPrototypeOf(target), accessors))
  return target as T & A
}
