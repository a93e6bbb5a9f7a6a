/**
 * @module byok/service
 *
 * Stored provider keys, `tb.providerKeys`: store (sealed), list (masked: provider, last four
 * characters, dates; never the secret), get for use, verify through the integrator's verifier,
 * delete. A provider key never appears in a log line, an error or a list answer.
 */

import { z } from 'zod'
import { throughBound } from '../bounded-calls.js'
import type { Context } from '../context.js'
import { InvalidRequestError, NotFoundError, NotImplementedError } from '../errors.js'
import { ownValue, text } from '../input.js'
import { checkAccountId } from '../metering/accounts.js'
import { parseInput } from '../options.js'
import type { Sealer } from './seal.js'

/** A stored provider key as listed: masked. */
export interface ProviderKeyView {
  provider: string
  /** `••••` and the last four characters. */
  masked: string
  createdAt: number
  verifiedAt: number | null
}

/** Checks a provider key against the provider (e.g. a cheap authenticated GET); true when valid. */
export type ProviderVerifier = (apiKey: string) => Promise<boolean> | boolean

/**
 * A provider key to store: `tb.providerKeys.store`'s input and the body of
 * `POST /provider-keys`, which the management API parses once and hands over as it is.
 */
/**
 * A control character (C0 or DEL). A provider key goes out as a header value, where one is
 * refused (by fetch, with the key in its message) or, worse, splits the header.
 */
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it finds
const CONTROL = /[\u0000-\u001f\u007f]/

export const providerKeyBody = z
  .object({
    provider: text(z.string().trim().min(1).max(64)),
    apiKey: text(
      z
        .string()
        .min(8, 'must be at least 8 characters')
        .max(4096)
        .refine(
          (v) => !CONTROL.test(v),
          'must not contain a control character (a line break, a tab)',
        ),
    ),
  })
  .strict()

type ProviderKeyInput = z.output<typeof providerKeyBody>

let storeParsed: (
  s: ProviderKeyService,
) => (accountId: string, v: ProviderKeyInput) => Promise<ProviderKeyView>

/**
 * `tb.providerKeys.store` for a body parsed already by {@link providerKeyBody} (internal: the
 * management API's one validation).
 */
export function storeParsedProviderKey(
  service: ProviderKeyService,
  accountId: string,
  input: ProviderKeyInput,
): Promise<ProviderKeyView> {
  return throughBound(service, (s) => ({ store: storeParsed(s) })).store(accountId, input)
}

export class ProviderKeyService {
  static {
    storeParsed = (s) => (accountId, v) => s.#store(accountId, v)
  }

  constructor(
    private readonly ctx: Context,
    private readonly sealer: Sealer,
    private readonly verifiers: Record<string, ProviderVerifier>,
  ) {}

  private provider(provider: unknown): string {
    const p = typeof provider === 'string' ? provider.toLowerCase() : ''
    if (!Object.hasOwn(this.ctx.providers, p)) {
      const known = Object.keys(this.ctx.providers).join(', ')
      throw new InvalidRequestError(
        `Invalid request: provider: unknown provider; expected one of ${known}`,
        [{ path: 'provider', message: `must be one of ${known}` }],
      )
    }
    return p
  }

  /** Seals and stores `apiKey` for the account, replacing a previous one. */
  async store(
    accountId: string,
    input: { provider: string; apiKey: string },
  ): Promise<ProviderKeyView> {
    checkAccountId(accountId)
    return this.#store(accountId, parseInput(providerKeyBody, input))
  }

  async #store(accountId: string, v: ProviderKeyInput): Promise<ProviderKeyView> {
    const provider = this.provider(v.provider)
    const record = {
      accountId,
      provider,
      sealed: await this.sealer.seal(v.apiKey, accountId, provider),
      last4: v.apiKey.slice(-4),
      createdAt: this.ctx.clock.now(),
      verifiedAt: null,
    }
    await this.ctx.storage.secrets.put(record)
    return view(record)
  }

  async list(accountId: string): Promise<ProviderKeyView[]> {
    checkAccountId(accountId)
    return (await this.ctx.storage.secrets.list(accountId)).map(view)
  }

  /** The plaintext for calling the provider, or undefined when none is stored. */
  async get(accountId: string, provider: string): Promise<string | undefined> {
    const r = await this.ctx.storage.secrets.get(accountId, provider.toLowerCase())
    return r ? this.sealer.open(r.sealed, accountId, r.provider) : undefined
  }

  /**
   * Runs the provider's verifier on the stored key; records when it passed. Its store steps are
   * bounded by `storageTimeoutMs` one by one (the verifier has its own bound).
   */
  async verify(
    accountId: string,
    provider: string,
  ): Promise<{ provider: string; valid: boolean; verifiedAt: number | null }> {
    checkAccountId(accountId)
    const p = this.provider(provider)
    const r = await this.ctx.guard(this.ctx.storage.secrets.get(accountId, p))
    if (!r) throw new NotFoundError('Provider key not found')
    const verifier = ownValue(this.verifiers, p)
    if (!verifier) throw new NotImplementedError(`No verifier is configured for provider "${p}"`)
    let valid = false
    try {
      valid = (await verifier(await this.sealer.open(r.sealed, accountId, p))) === true
    } catch {
      valid = false
    }
    const verifiedAt = valid ? this.ctx.clock.now() : r.verifiedAt
    if (valid) await this.ctx.guard(this.ctx.storage.secrets.put({ ...r, verifiedAt }))
    return { provider: p, valid, verifiedAt }
  }

  async delete(accountId: string, provider: string): Promise<void> {
    checkAccountId(accountId)
    const p = this.provider(provider)
    if (!(await this.ctx.storage.secrets.delete(accountId, p)))
      throw new NotFoundError('Provider key not found')
  }
}

function view(r: {
  provider: string
  last4: string
  createdAt: number
  verifiedAt: number | null
}): ProviderKeyView {
  return {
    provider: r.provider,
    masked: `••••${r.last4}`,
    createdAt: r.createdAt,
    verifiedAt: r.verifiedAt,
  }
}
