/**
 * @module tollbooth/redis/scan
 *
 * A SCAN-family walk (SCAN, HSCAN, SSCAN) run to its end, one reply at a time.
 */

/**
 * The elements of each reply of a SCAN-family command, from cursor 0 until the server answers
 * cursor 0 again. `step` sends one call from a cursor (the `COUNT` is the caller's). A batch may
 * be empty, and an element may come twice, as Redis guarantees no more. The next call is sent
 * only when the caller asks for the next batch.
 *
 * @example
 * ```ts
 * for await (const ids of scanBatches((c) => client.sscan(key, c, 'COUNT', 100))) { … }
 * ```
 */
export async function* scanBatches(
  step: (cursor: string) => Promise<[cursor: string, elements: string[]]>,
): AsyncGenerator<string[], void, undefined> {
  let cursor = '0'
  do {
    const [next, elements] = await step(cursor)
    cursor = next
    yield elements
  } while (cursor !== '0')
}
