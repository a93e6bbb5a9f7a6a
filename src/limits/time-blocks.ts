/**
 * @module limits/time-blocks
 *
 * Reserved time blocks (the pool keys of `004_8209d5d9c76b9400.txt`): a key that carries
 * blocks may be used only inside one of them. Pure: blocks and `now` in, verdict out.
 */

import type { TimeBlock } from '../storage/types.js'

/** True when `now` lies in some `[start, end)` block, or when the key has no blocks. */
export function withinTimeBlocks(
  blocks: ReadonlyArray<TimeBlock> | undefined,
  now: number,
): boolean {
  if (!blocks || blocks.length === 0) return true
  for (const b of blocks) if (now >= b.start && now < b.end) return true
  return false
}

/** The next block start after `now`, or null when none is left. */
export function nextBlockStart(
  blocks: ReadonlyArray<TimeBlock> | undefined,
  now: number,
): number | null {
  let next: number | null = null
  for (const b of blocks ?? [])
    if (b.start > now && (next === null || b.start < next)) next = b.start
  return next
}
