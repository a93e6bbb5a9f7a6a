/**
 * @module keys/crc32
 *
 * CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320) over the char codes of an ASCII
 * string. Detects every single-character change and every burst of up to 32 bits, so a typo
 * in a key is refused without a storage lookup.
 */

const TABLE = new Uint32Array(256)
for (let n = 0; n < 256; n++) {
  let c = n
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1
  TABLE[n] = c >>> 0
}

/** CRC-32 of `s[0..end)`; `s` must be ASCII (key material always is). */
export function crc32(s: string, end = s.length): number {
  let c = 0xffffffff
  for (let i = 0; i < end; i++) c = TABLE[(c ^ s.charCodeAt(i)) & 0xff]! ^ (c >>> 8)
  return (c ^ 0xffffffff) >>> 0
}
