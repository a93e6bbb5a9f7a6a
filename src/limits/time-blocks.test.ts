/**
 * @module limits/time-blocks.test
 *
 * Unit tests of reserved time blocks: `[start, end)` membership and the next start.
 */

import { describe, expect, it } from 'vitest'
import { nextBlockStart, withinTimeBlocks } from './time-blocks.js'

const blocks = [
  { start: 1000, end: 2000 },
  { start: 5000, end: 6000 },
]

describe('time blocks', () => {
  it('admits any time when the key has no blocks', () => {
    expect(withinTimeBlocks(undefined, 0)).toBe(true)
    expect(withinTimeBlocks([], 123)).toBe(true)
  })

  it('admits from a block start up to, not including, its end', () => {
    expect([999, 1000, 1999, 2000, 5500, 6000].map((t) => withinTimeBlocks(blocks, t))).toEqual([
      false,
      true,
      true,
      false,
      true,
      false,
    ])
  })

  it('tells the next block start, or null when none is left', () => {
    expect(nextBlockStart(blocks, 0)).toBe(1000)
    expect(nextBlockStart(blocks, 1000)).toBe(5000)
    expect(nextBlockStart(blocks, 5000)).toBeNull()
  })
})
