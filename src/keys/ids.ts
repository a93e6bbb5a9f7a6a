/**
 * @module keys/ids
 *
 * Record ids: `<type>_<8 base62 chars of milliseconds><12 random base62 chars>`. They sort
 * by creation time as strings, so every store pages "newest first" with `id < cursor`, and
 * the random part (71 bits) makes collisions across instances negligible.
 */

import { encodeBase62, randomBase62 } from './base62.js'

/** A new id such as `key_0Qb1x9aZ…`, sortable by `nowMs`. */
export function newId(type: string, nowMs: number): string {
  // Joined, not a template literal: written flat (see `counterName` in limits/admission).
  return [type, '_', encodeBase62(nowMs, 8), randomBase62(12)].join('')
}
