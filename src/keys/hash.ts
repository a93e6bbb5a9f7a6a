/**
 * @module keys/hash
 *
 * The stored form of a key: HMAC-SHA-256 (@noble/hashes) under a 32-byte key derived from the
 * instance `secret` with HKDF-SHA-256, hex encoded. A database leak therefore reveals no
 * usable key, and without the secret a hash cannot be confirmed by guessing.
 *
 * The HMAC key schedule (inner and outer pads) is absorbed once per instance; each call
 * clones that state, so the per-request cost is two SHA-256 compressions of short input.
 */

import { hkdf } from '@noble/hashes/hkdf.js'
import { hmac } from '@noble/hashes/hmac.js'
import { sha256 } from '@noble/hashes/sha2.js'
import { bytesToHex, utf8ToBytes } from '@noble/hashes/utils.js'

const SALT = utf8ToBytes('tollbooth/v1')

/** 32 bytes derived from `secret` for one purpose (`info`), e.g. 'key-hash' or 'seal'. */
export function deriveKey(secret: string, info: string): Uint8Array {
  return hkdf(sha256, utf8ToBytes(secret), SALT, utf8ToBytes(info), 32)
}

/** A function from plaintext key to its hex lookup hash, bound to one secret. */
export type KeyHasher = (key: string) => string

/**
 * @param secret the instance secret (at least 32 characters, checked by the options schema)
 * @returns a hasher; `hasher(key)` is HMAC-SHA-256(HKDF(secret, 'key-hash'), key) as hex
 */
export function createKeyHasher(secret: string): KeyHasher {
  const base = hmac.create(sha256, deriveKey(secret, 'key-hash'))
  return (key) => bytesToHex(base.clone().update(utf8ToBytes(key)).digest())
}
