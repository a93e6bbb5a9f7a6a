/**
 * @module keys/hash
 *
 * The stored form of a key: HMAC-SHA-256 (RFC 2104, SHA-256 from @noble/hashes) under a
 * 32-byte key derived from the instance `secret` with HKDF-SHA-256, hex encoded. A database
 * leak therefore reveals no usable key, and without the secret a hash cannot be confirmed by
 * guessing.
 *
 * This runs on every request, so it allocates nothing: the inner and outer states (the key
 * XOR ipad/opad blocks, absorbed once per instance) are cloned into two scratch hashes with
 * `_cloneInto`, the key's ASCII bytes are written into a scratch buffer, and the digest is
 * hex-encoded from a table. The result equals `hmac(sha256, key, message)` (test/vectors).
 */

import { hkdf } from '@noble/hashes/hkdf.js'
import { sha256 } from '@noble/hashes/sha2.js'
import { utf8ToBytes } from '@noble/hashes/utils.js'

const SALT = utf8ToBytes('tollbooth/v1')

/** 32 bytes derived from `secret` for one purpose (`info`), e.g. 'key-hash' or 'seal'. */
export function deriveKey(secret: string, info: string): Uint8Array {
  return hkdf(sha256, utf8ToBytes(secret), SALT, utf8ToBytes(info), 32)
}

/** A function from plaintext key to its hex lookup hash, bound to one secret. */
export type KeyHasher = (key: string) => string

/** The two hex digits of each byte value, as character codes. */
const HEX_CODES = new Uint8Array(512)
for (let i = 0; i < 256; i++) {
  const h = i.toString(16).padStart(2, '0')
  HEX_CODES[2 * i] = h.charCodeAt(0)
  HEX_CODES[2 * i + 1] = h.charCodeAt(1)
}

type Sha256 = ReturnType<typeof sha256.create>

/**
 * @param secret the instance secret (at least 32 characters, checked by the options schema)
 * @returns a hasher; `hasher(key)` is HMAC-SHA-256(HKDF(secret, 'key-hash'), key) as hex
 */
export function createKeyHasher(secret: string): KeyHasher {
  const k = deriveKey(secret, 'key-hash')
  const pad = new Uint8Array(64)
  pad.set(k)
  for (let i = 0; i < 64; i++) pad[i]! ^= 0x36
  const inner = sha256.create().update(pad)
  for (let i = 0; i < 64; i++) pad[i]! ^= 0x36 ^ 0x5c
  const outer = sha256.create().update(pad)
  pad.fill(0)
  const si = sha256.create() as Sha256
  const so = sha256.create() as Sha256
  const mid = new Uint8Array(32)
  const out = new Uint8Array(32)
  const hexCodes = new Uint8Array(64)
  const text = new TextDecoder()
  // One scratch buffer per key length (keys are short and few lengths occur).
  const scratch: Uint8Array[] = []

  return (key) => {
    let bytes: Uint8Array
    const n = key.length
    let ascii = n <= 512
    if (ascii) {
      bytes = scratch[n] ?? new Uint8Array(n)
      scratch[n] = bytes
      for (let i = 0; i < n; i++) {
        const c = key.charCodeAt(i)
        if (c > 127) {
          ascii = false
          break
        }
        bytes[i] = c
      }
    }
    if (!ascii) bytes = utf8ToBytes(key)
    ;(inner as Sha256)._cloneInto(si)
    si.update(bytes!)
    si.digestInto(mid)
    ;(outer as Sha256)._cloneInto(so)
    so.update(mid)
    so.digestInto(out)
    // Written flat in one go (ASCII bytes decoded): `+=` makes a rope of 32 parts (a V8
    // cons string) that the key store and the cache would keep as long as the key.
    for (let i = 0; i < 32; i++) {
      const b = out[i]!
      hexCodes[2 * i] = HEX_CODES[2 * b]!
      hexCodes[2 * i + 1] = HEX_CODES[2 * b + 1]!
    }
    return text.decode(hexCodes)
  }
}
