/**
 * @module byok/providers
 *
 * The BYOK providers tollbooth knows by default: the ten of `001_da102ff7c76ebfc9.txt`, each
 * with the header a caller sends its own key in. `createTollbooth({ providers })` replaces
 * the list.
 */

/** Provider id (lowercase) -> request header carrying the caller's key for it. */
export const DEFAULT_PROVIDERS: Readonly<Record<string, string>> = {
  elevenlabs: 'X-Provider-Key-ElevenLabs',
  openai: 'X-Provider-Key-OpenAI',
  anthropic: 'X-Provider-Key-Anthropic',
  cartesia: 'X-Provider-Key-Cartesia',
  deepgram: 'X-Provider-Key-Deepgram',
  fishaudio: 'X-Provider-Key-FishAudio',
  inworld: 'X-Provider-Key-Inworld',
  resembleai: 'X-Provider-Key-ResembleAI',
  groq: 'X-Provider-Key-Groq',
  huggingface: 'X-Provider-Key-HuggingFace',
}
