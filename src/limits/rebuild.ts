/**
 * @module limits/rebuild
 *
 * The store side of the rebuild protocol (`Check.rebuild`, see `storage/types`): a counter that
 * must be rebuilt from the durable usage before it counts is answered with this result, and the
 * whole admission is refused without counting anything. One constructor, so every store answers
 * the same figures.
 */

import type { CheckResult } from '../storage/types.js'

/** The answer to a check whose counter must be rebuilt first: refused, `missing`, no figures. */
export function missingResult(limit: number): CheckResult {
  return {
    allowed: false,
    limit,
    used: 0,
    remaining: 0,
    resetMs: 0,
    retryAfterMs: 0,
    missing: true,
  }
}
