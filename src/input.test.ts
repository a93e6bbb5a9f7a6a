import { describe, expect, it } from 'vitest'
import {
  METADATA_MAX_BYTES,
  METADATA_MAX_DEPTH,
  metadataProblems,
  ownValue,
  storableText,
  textProblem,
} from './input.js'

/** An object nested `depth` deep (the outer object is level 1), built without recursion. */
function nested(depth: number): Record<string, unknown> {
  const root: Record<string, unknown> = {}
  let at = root
  for (let i = 1; i < depth; i++) {
    const next: Record<string, unknown> = {}
    at['a'] = next
    at = next
  }
  return root
}

describe('textProblem', () => {
  it('accepts any valid Unicode, surrogate pairs included', () => {
    for (const s of [
      '',
      'plain',
      'Ünïcödé',
      '日本語',
      '😀 emoji',
      '\ud83d\ude00',
      'tab\tnew\nline',
    ])
      expect(textProblem(s), s).toBeNull()
  })

  it('refuses a NUL and a lone surrogate, high or low, anywhere', () => {
    expect(textProblem('a\u0000b')).toBe('must not contain a NUL character')
    for (const s of ['\ud800', 'x\udbff', '\udc00y', 'a\ude00\ud83d', '\ud83d\ude00\ud83d'])
      expect(textProblem(s), JSON.stringify(s)).toMatch(/lone UTF-16 surrogate/)
  })

  it('storableText replaces what textProblem refuses with U+FFFD, and nothing else', () => {
    expect(storableText('/v1/a\u0000b')).toBe('/v1/a\ufffdb')
    expect(storableText('x\ud800\ud83d\ude00')).toBe('x\ufffd\ud83d\ude00')
    expect(storableText('/v1/ok')).toBe('/v1/ok')
    // Every one of them, a low surrogate alone, at either end; text outside Latin-1 kept.
    expect(storableText('\u0000a\u0000\udc00b\ud800')).toBe('\ufffda\ufffd\ufffdb\ufffd')
    expect(storableText('\udc00\ud800')).toBe('\ufffd\ufffd')
    expect(storableText('/v1/日本語/é')).toBe('/v1/日本語/é')
    expect(storableText('')).toBe('')
    // Whatever it answers, textProblem accepts.
    for (const s of ['\u0000', '\ud800', 'a\udfff\u0000\ud83d\ude00', '\ud83d\ude00\ud83d'])
      expect(textProblem(storableText(s)), s).toBeNull()
  })
})

describe('metadataProblems', () => {
  it(`accepts JSON nested ${METADATA_MAX_DEPTH} deep and up to ${METADATA_MAX_BYTES} bytes`, () => {
    expect(metadataProblems(nested(METADATA_MAX_DEPTH))).toEqual([])
    const fits = { s: 'x'.repeat(METADATA_MAX_BYTES - '{"s":""}'.length) }
    expect(metadataProblems(fits)).toEqual([])
    expect(metadataProblems({ a: [1, 'b', null, true, { c: [] }], constructor: 'ok' })).toEqual([])
    expect(metadataProblems(Object.create(null))).toEqual([])
  })

  it('refuses one level deeper or one byte larger, counting UTF-8 bytes', () => {
    expect(metadataProblems(nested(METADATA_MAX_DEPTH + 1))).toEqual([
      {
        path: Array(METADATA_MAX_DEPTH).fill('a'),
        message: `must be nested at most ${METADATA_MAX_DEPTH} levels deep`,
      },
    ])
    const over = { s: 'x'.repeat(METADATA_MAX_BYTES - '{"s":""}'.length + 1) }
    expect(metadataProblems(over)[0]!.message).toMatch(/^must be at most 8192 bytes/)
    // 'é' is 2 bytes in UTF-8: 4,096 of them plus the braces are over the bound.
    expect(metadataProblems({ s: 'é'.repeat(4096) })).toHaveLength(1)
  })

  it('refuses 20,000 levels in a bounded number of steps, without recursion', () => {
    const deep = nested(20_000)
    const t0 = performance.now()
    const problems = metadataProblems(deep)
    expect(performance.now() - t0).toBeLessThan(50)
    expect(problems).toHaveLength(1)
    expect(problems[0]!.path).toHaveLength(METADATA_MAX_DEPTH)
    // The same from JSON text, as a request body arrives.
    const text = `{"a":${'['.repeat(20_000)}${']'.repeat(20_000)}}`
    expect(metadataProblems(JSON.parse(text))).toHaveLength(1)
  })

  it('names the path of each bad value, and refuses what is not JSON', () => {
    const fn = () => 1
    expect(
      metadataProblems({
        a: 'x\u0000',
        b: [1, '\ud800'],
        c: { d: Number.POSITIVE_INFINITY },
        e: 10n,
        f: fn,
        g: new Date(0),
        h: new Map(),
        i: undefined,
      }),
    ).toEqual([
      { path: ['a'], message: 'must not contain a NUL character' },
      { path: ['b', 1], message: 'must be valid Unicode (it contains a lone UTF-16 surrogate)' },
      { path: ['c', 'd'], message: 'must be a finite number' },
      ...['e', 'f', 'g', 'h', 'i'].map((k) => ({
        path: [k],
        message: 'must be JSON: a string, finite number, boolean, null, array or object',
      })),
    ])
  })

  it('refuses a bad name on its object without echoing it, and "__proto__" as a name', () => {
    expect(metadataProblems({ ok: { ['\ud800']: 1 } })).toEqual([
      {
        path: ['ok'],
        message: 'a name must be valid Unicode (it contains a lone UTF-16 surrogate)',
      },
    ])
    expect(metadataProblems(JSON.parse('{"x":{"__proto__":{"admin":true}}}'))).toEqual([
      { path: ['x'], message: 'a name must not be "__proto__" (reserved)' },
    ])
  })

  it('wants an object at the top', () => {
    for (const v of [null, [], 'x', 1, new Date(0)])
      expect(metadataProblems(v)).toEqual([{ path: [], message: 'must be an object' }])
  })
})

describe('ownValue', () => {
  it('finds own entries only, never an inherited member', () => {
    const plans: Record<string, number> = { pro: 1, constructor: 2 }
    expect(ownValue(plans, 'pro')).toBe(1)
    expect(ownValue(plans, 'constructor')).toBe(2)
    for (const name of ['toString', 'hasOwnProperty', '__proto__', 'valueOf', 'missing'])
      expect(ownValue(plans, name), name).toBeUndefined()
  })
})
