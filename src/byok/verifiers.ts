/**
 * @module byok/verifiers
 *
 * Provider-key verifiers that verify: each makes one request to the provider's cheapest
 * authenticated endpoint with the key (a model or account listing, no billable work) and
 * reads the status: 2xx valid, 401 or 403 invalid. Anything else (a timeout, a network
 * failure, a 5xx, a 429) says nothing about the key and throws, so `tb.providerKeys.verify`
 * answers `valid: false` without recording a verification. The key goes in a request header
 * only: never in a URL, a log line or an error message.
 *
 * **Pro:** a pasted key is checked against the provider itself. **Con:** one outbound request
 * per verification, bounded by `timeoutMs`.
 */

import { z } from 'zod'
import { fnOption, integer, parseOptions } from '../options.js'
import type { ProviderVerifier } from './service.js'

/** How to reach one provider: the endpoint and the headers that carry the key. */
export interface VerifierEndpoint {
  /** The endpoint's URL (origin and path). */
  url: string
  /** The request headers for `apiKey`. */
  headers: (apiKey: string) => Record<string, string>
}

/** The cheapest authenticated endpoint of each provider tollbooth knows how to verify. */
export const PROVIDER_ENDPOINTS: Readonly<Record<string, VerifierEndpoint>> = {
  elevenlabs: {
    url: 'https://api.elevenlabs.io/v1/user',
    headers: (k) => ({ 'xi-api-key': k }),
  },
  openai: {
    url: 'https://api.openai.com/v1/models',
    headers: (k) => ({ authorization: `Bearer ${k}` }),
  },
  anthropic: {
    url: 'https://api.anthropic.com/v1/models',
    headers: (k) => ({ 'x-api-key': k, 'anthropic-version': '2023-06-01' }),
  },
  deepgram: {
    url: 'https://api.deepgram.com/v1/projects',
    headers: (k) => ({ authorization: `Token ${k}` }),
  },
  groq: {
    url: 'https://api.groq.com/openai/v1/models',
    headers: (k) => ({ authorization: `Bearer ${k}` }),
  },
  huggingface: {
    url: 'https://huggingface.co/api/whoami-v2',
    headers: (k) => ({ authorization: `Bearer ${k}` }),
  },
}

export interface HttpVerifierOptions {
  /** Abort the request after this many milliseconds. Default 5,000. */
  timeoutMs?: number
  /** The fetch to use. Default: the global `fetch`. */
  fetch?: typeof fetch
}

/** An http(s) origin or URL, as `new URL()` and `fetch` take it. */
const httpUrl = z
  .string()
  .refine((u) => /^https?:\/\//i.test(u) && URL.canParse(u), 'must be an http(s) URL')

const verifierOptions = z
  .object({
    timeoutMs: integer(1).optional(),
    fetch: fnOption<typeof fetch>('a fetch function').optional(),
    baseUrls: z.record(z.string(), httpUrl).optional(),
  })
  .strict()

/**
 * A verifier that calls `endpoint` with the key: true on 2xx, false on 401/403; throws an
 * error that names the provider's answer (never the key) on anything else.
 *
 * @throws {ConfigError} naming a bad option: `httpVerifier: options.timeoutMs must be an integer >= 1 (milliseconds), got 0`
 */
export function httpVerifier(
  endpoint: VerifierEndpoint,
  options: HttpVerifierOptions = {},
): ProviderVerifier {
  const timeoutMs = parseOptions('httpVerifier', verifierOptions, options).timeoutMs ?? 5_000
  const url = new URL(endpoint.url).href
  return async function verifyProviderKey(apiKey: string): Promise<boolean> {
    const f = options.fetch ?? fetch
    let res: Response
    try {
      res = await f(url, {
        method: 'GET',
        headers: endpoint.headers(apiKey),
        redirect: 'manual',
        signal: AbortSignal.timeout(timeoutMs),
      })
    } catch (err) {
      // The cause may hold the request (and its headers): it is not passed on.
      const what =
        (err as Error)?.name === 'TimeoutError' ? `no answer within ${timeoutMs} ms` : 'unreachable'
      throw new Error(`provider key verification: ${new URL(url).host} ${what}`)
    }
    await res.body?.cancel().catch(() => {})
    if (res.ok) return true
    if (res.status === 401 || res.status === 403) return false
    throw new Error(`provider key verification: ${new URL(url).host} answered ${res.status}`)
  }
}

/**
 * Verifiers for the providers of {@link PROVIDER_ENDPOINTS}, for `createTollbooth({ verifiers })`.
 *
 * @param [options.baseUrls] provider -> origin to call instead (a proxy, or a stand-in in tests)
 * @param [options.timeoutMs=5000] per request
 * @throws {ConfigError} naming each bad or unknown option:
 *   `providerVerifiers: options.baseUrls.openai must be an http(s) URL, got "localhost:8080"`
 * @example
 * ```ts
 * const tb = createTollbooth({ secret, verifiers: providerVerifiers() })
 * ```
 */
export function providerVerifiers(
  options: HttpVerifierOptions & { baseUrls?: Readonly<Record<string, string>> } = {},
): Record<string, ProviderVerifier> {
  parseOptions('providerVerifiers', verifierOptions, options)
  const out: Record<string, ProviderVerifier> = {}
  for (const [provider, endpoint] of Object.entries(PROVIDER_ENDPOINTS)) {
    const base = options.baseUrls?.[provider]
    const url = base ? new URL(new URL(endpoint.url).pathname, base).href : endpoint.url
    out[provider] = httpVerifier({ ...endpoint, url }, options)
  }
  return out
}
