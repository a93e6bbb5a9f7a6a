/**
 * @module keys/format
 *
 * The key format: `<prefix><27 random base62 chars><6 base62 chars of CRC-32>`.
 *
 * **Pro:** 27 base62 characters carry 160.7 bits of entropy from `crypto.getRandomValues`;
 * the checksum refuses a typo or a guessed key with no I/O, and gives secret scanners a
 * format to match. **Con:** the checksum is public: it protects against accidents, not
 * attackers (the hash lookup and the failed-auth guard do that).
 */

import { decodeBase62, encodeBase62, isBase62, randomBase62 } from './base62.js'
import { crc32 } from './crc32.js'

/** Random characters in a key: 62^27 ≈ 2^160.7. */
export const RANDOM_LENGTH = 27
/** Base62 characters of the CRC-32 checksum: 62^6 > 2^32. */
export const CHECKSUM_LENGTH = 6
/** How many random characters `start` shows after the prefix. */
export const START_LENGTH = 4

/** Characters allowed in a prefix: letters, digits and `_`, 1 to 32 of them. */
export const PREFIX_PATTERN = /^[A-Za-z0-9_]{1,32}$/

/** A new plaintext key with the given prefix. */
export function generateKey(prefix: string): string {
  const body = prefix + randomBase62(RANDOM_LENGTH)
  return body + encodeBase62(crc32(body), CHECKSUM_LENGTH)
}

/** The display form of a key: its prefix and the first 4 random characters. Never secret. */
export function keyStart(key: string, prefix: string): string {
  return key.slice(0, prefix.length + START_LENGTH)
}

/**
 * Checks a presented key against one prefix with no I/O: prefix, length, charset, checksum.
 * Returns false for anything that cannot be a key tollbooth issued under `prefix`.
 */
export function isWellFormedKey(key: string, prefix: string): boolean {
  const bodyEnd = prefix.length + RANDOM_LENGTH
  if (key.length !== bodyEnd + CHECKSUM_LENGTH || !key.startsWith(prefix)) return false
  if (!isBase62(key, prefix.length, bodyEnd)) return false
  return decodeBase62(key, bodyEnd, CHECKSUM_LENGTH) === crc32(key, bodyEnd)
}
