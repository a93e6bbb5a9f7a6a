/**
 * @module examples/inference-api/model
 *
 * The stand-in model behind both inference routes: deterministic, instant and free, so the
 * example is about the API around it. It answers `Echo: <the last user message>`, cut at
 * `maxTokens`, and counts tokens with a simple rule (a run of letters and digits is one token,
 * each other visible character is one), the same on both routes, so the tokens a response
 * reports are the tokens charged.
 */

/** A chat turn, with its content already flattened to text. */
export interface Turn {
  role: string
  content: string
}

export interface Completion {
  text: string
  promptTokens: number
  completionTokens: number
  /** `stop`: the whole answer; `length`: cut at `maxTokens`. */
  finish: 'stop' | 'length'
}

/** The models the API serves; any other name is a 404. */
export const MODELS = ['echo-1', 'echo-1-mini'] as const

/** Tokens each turn costs beyond its text (role and separators), as real chat formats do. */
const TURN_OVERHEAD = 3

const TOKEN = /[\p{L}\p{N}]+|[^\s\p{L}\p{N}]/gu

/** The number of tokens in `text`. */
export function countTokens(text: string): number {
  let n = 0
  for (const _ of text.matchAll(TOKEN)) n++
  return n
}

/** The tokens of a conversation as the model reads it (each turn's text and overhead). */
export function countPrompt(turns: ReadonlyArray<Turn>): number {
  return turns.reduce((n, t) => n + countTokens(t.content) + TURN_OVERHEAD, 0)
}

/** `text` cut after its first `max` tokens. */
function truncate(text: string, max: number): string {
  let n = 0
  for (const m of text.matchAll(TOKEN)) {
    if (++n === max) return text.slice(0, m.index + m[0].length)
  }
  return text
}

/**
 * Runs the stand-in model.
 *
 * @param turns the conversation, system prompt first when there is one
 * @param maxTokens the most tokens the answer may have (at least 1)
 */
export function complete(turns: ReadonlyArray<Turn>, maxTokens: number): Completion {
  const promptTokens = countPrompt(turns)
  const last = [...turns].reverse().find((t) => t.role === 'user')
  const full = `Echo: ${last?.content ?? ''}`.trimEnd()
  const fullTokens = countTokens(full)
  const finish = fullTokens > maxTokens ? 'length' : 'stop'
  const text = finish === 'length' ? truncate(full, maxTokens) : full
  return { text, promptTokens, completionTokens: Math.min(fullTokens, maxTokens), finish }
}

/**
 * Message content as text: a string, or the text parts of a content array (OpenAI's
 * `{ type: 'text', text }` and Anthropic's text blocks have the same shape).
 */
export function textOf(content: unknown): string {
  if (typeof content === 'string') return content
  if (!Array.isArray(content)) return ''
  return content
    .map((part) =>
      typeof part === 'object' && part !== null && typeof part.text === 'string' ? part.text : '',
    )
    .join('')
}

/** Splits `text` into pieces for a streamed answer (words with their leading space). */
export function pieces(text: string): string[] {
  return text.match(/\s*\S+/g) ?? []
}
