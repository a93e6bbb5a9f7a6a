/**
 * @module storage/min-heap
 *
 * A min-heap of numbers in a plain array: the memory store's expiry queues (the counters'
 * buckets, the top-ups' records) take the earliest first without a walk over what they hold.
 */

/** Adds `x` to `heap`, a min-heap of numbers. */
export function heapPush(heap: number[], x: number): void {
  let i = heap.length
  heap.push(x)
  while (i > 0) {
    const p = (i - 1) >> 1
    if (heap[p]! <= x) break
    heap[i] = heap[p]!
    i = p
  }
  heap[i] = x
}

/** Takes the least number off `heap` (not empty). */
export function heapPop(heap: number[]): number {
  const top = heap[0]!
  const last = heap.pop()!
  const n = heap.length
  if (n > 0) {
    let i = 0
    for (;;) {
      const l = 2 * i + 1
      if (l >= n) break
      const c = l + 1 < n && heap[l + 1]! < heap[l]! ? l + 1 : l
      if (heap[c]! >= last) break
      heap[i] = heap[c]!
      i = c
    }
    heap[i] = last
  }
  return top
}
