/**
 * @module byok/seal
 *
 * Provider keys at rest: JWE compact serialization with `alg: dir`, `enc: A256GCM` (jose),
 * under a 256-bit key derived from the instance secret. The account and provider are bound
 * as additional authenticated data through the protected header, so a sealed value copied to
 * another account or provider does not open.
 */

import { CompactEncrypt, compactDecrypt } from 'jose'

export interface Sealer {
  seal(plaintext: string, accountId: string, provider: string): Promise<string>
  /** The plaintext, or throws when the value was not sealed by this secret for this owner. */
  open(sealed: string, accountId: string, provider: string): Promise<string>
}

const enc = new TextEncoder()
const dec = new TextDecoder()

export function createSealer(key: Uint8Array): Sealer {
  return {
    seal: (plaintext, accountId, provider) =>
      new CompactEncrypt(enc.encode(plaintext))
        .setProtectedHeader({
          alg: 'dir',
          enc: 'A256GCM',
          kid: 'tb1',
          sub: accountId,
          prv: provider,
        })
        .encrypt(key),
    async open(sealed, accountId, provider) {
      const { plaintext, protectedHeader } = await compactDecrypt(sealed, key, {
        keyManagementAlgorithms: ['dir'],
        contentEncryptionAlgorithms: ['A256GCM'],
      })
      if (protectedHeader['sub'] !== accountId || protectedHeader['prv'] !== provider) {
        throw new Error('sealed provider key belongs to another account or provider')
      }
      return dec.decode(plaintext)
    },
  }
}
