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

/**
 * @param key the current sealing key: every value is sealed under it
 * @param previous keys of `previousSecrets`, newest first: a value the current key does not
 *   open is tried with each (`onPrevious` is told when one of them opened it)
 */
export function createSealer(
  key: Uint8Array,
  previous: readonly Uint8Array[] = [],
  onPrevious: () => void = () => {},
): Sealer {
  const openWith = async (k: Uint8Array, sealed: string, accountId: string, provider: string) => {
    const { plaintext, protectedHeader } = await compactDecrypt(sealed, k, {
      keyManagementAlgorithms: ['dir'],
      contentEncryptionAlgorithms: ['A256GCM'],
    })
    if (protectedHeader['sub'] !== accountId || protectedHeader['prv'] !== provider) {
      throw new Error('sealed provider key belongs to another account or provider')
    }
    return dec.decode(plaintext)
  }
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
      try {
        return await openWith(key, sealed, accountId, provider)
      } catch (err) {
        for (const k of previous) {
          const opened = await openWith(k, sealed, accountId, provider).catch(() => undefined)
          if (opened !== undefined) {
            onPrevious()
            return opened
          }
        }
        throw err
      }
    },
  }
}
