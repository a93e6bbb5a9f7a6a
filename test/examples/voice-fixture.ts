/**
 * @module test/examples/voice-fixture
 *
 * The voice example served for a test: on a manual clock at {@link T0}, with the portal's
 * session secret, its demo billing pages pointed at the server itself, and a JSON client.
 */

import { createVoiceApi, type VoiceApiOptions } from '../../examples/voice-api/app.js'
import { manualClock, PROVIDER_ENDPOINTS, type TollboothOptions } from '../../src/internal.js'
import { type Client, clientOf, type Res, serveHono, trackSettles } from './http.js'
import { startProviderStandIn } from './provider-standin.js'

export const SECRET = 'voice-example-secret-voice-example-secret'
export const SESSION_SECRET = 'voice-example-session-secret-0123456789'
export const T0 = Date.UTC(2026, 2, 21)

/**
 * Starts the example; `plans` replaces the shipped plans, `stripe` sells them through Stripe.
 * Provider keys are verified against a local stand-in provider (`provider-standin.ts`).
 */
export async function startVoice(
  plans?: TollboothOptions['plans'],
  stripe?: VoiceApiOptions['stripe'],
  options: { verifyTimeoutMs?: number } = {},
) {
  const clock = manualClock(T0)
  let url = ''
  const providers = await startProviderStandIn()
  const baseUrls = Object.fromEntries(
    Object.keys(PROVIDER_ENDPOINTS).map((p) => [p, providers.url]),
  )
  const voice = createVoiceApi({
    secret: SECRET,
    clock,
    sessionSecret: SESSION_SECRET,
    publicUrl: () => url,
    providerBaseUrls: baseUrls,
    ...(options.verifyTimeoutMs ? { verifyTimeoutMs: options.verifyTimeoutMs } : {}),
    ...(plans ? { plans } : {}),
    ...(stripe ? { stripe } : {}),
  })
  const settles = trackSettles(voice.tb)
  const served = await serveHono(voice.app)
  url = served.url
  const api: Client = clientOf(served)
  const close = async () => {
    await served.close()
    await providers.close()
  }
  return { ...voice, clock, api, url, settles, providers, close }
}

export type VoiceFixture = Awaited<ReturnType<typeof startVoice>>

/** `POST /v1/synthesize` with `text`. */
export const synth = (
  api: Client,
  token: string,
  text = 'Hello',
  headers: Record<string, string> = {},
): Promise<Res> => api('POST', '/v1/synthesize', { token, json: { text }, headers })
