/**
 * @module keys/base62
 *
 * Base62 (0-9, A-Z, a-z) for key material and checksums: URL-safe, double-click selectable,
 * and free of the `+/=_-` characters that break copy-paste and secret scanners' word bounds.
 */

export const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'

/** Lookup table: char code -> digit value, or -1 for a character outside base62. */
const DIGIT = new Int8Array(128).fill(-1)
for (let i = 0; i < BASE62.length; i++) DIGIT[BASE62.charCodeAt(i)] = i

/**
 * `length` uniformly random base62 characters from `crypto.getRandomValues`, by rejection
 * sampling (bytes >= 248 are dropped), so every character carries log2(62) ≈ 5.95 bits.
 */
export function randomBase62(length: number): string {
  let out = ''
  const buf = new Uint8Array(length + 16)
  while (out.length < length) {
    crypto.getRandomValues(buf)
    for (let i = 0; i < buf.length && out.length < length; i++) {
      const b = buf[i]!
      if (b < 248) out += BASE62[b % 62]
    }
  }
  return out
}

/** A non-negative integer below 2^53 as exactly `width` base62 digits (zero-padded). */
export function encodeBase62(value: number, width: number): string {
  let out = ''
  let v = value
  for (let i = 0; i < width; i++) {
    out = BASE62[v % 62] + out
    v = Math.floor(v / 62)
  }
  return out
}

/** The value of `s[from..from+width)` as base62, or -1 if any character is outside base62. */
export function decodeBase62(s: string, from: number, width: number): number {
  let v = 0
  for (let i = from; i < from + width; i++) {
    const c = s.charCodeAt(i)
    const d = c < 128 ? DIGIT[c]! : -1
    if (d < 0) return -1
    v = v * 62 + d
  }
  return v
}

/** True when every character of `s[from..to)` is base62. */
export function isBase62(s: string, from = 0, to = s.length): boolean {
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i)
    if (c >= 128 || DIGIT[c]! < 0) return false
  }
  return true
}
