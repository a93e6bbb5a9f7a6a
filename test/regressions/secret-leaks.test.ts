/**
 * @module test/regressions/secret-leaks
 *
 * "Secrets never appear in logs, errors or lists": the places a secret was found to leak,
 * each shown through what a developer would do with the public object.
 */

import { inspect } from 'node:util'
import { describe, expect, it } from 'vitest'
import { createTollbooth } from '../../src/index.js'

const SECRET = 'leak-suite-secret-0123456789abcdefghijklmnop'

describe('the tollbooth secret', () => {
  it('is not in a logged or serialized instance, nor in its options spread', () => {
    const tb = createTollbooth({ secret: SECRET })
    const dumps = [
      inspect(tb),
      inspect(tb, { depth: Infinity }),
      inspect(tb.options),
      JSON.stringify(tb.options),
      JSON.stringify({ ...tb.options }),
      String(Object.values(tb.options)),
    ]
    for (const text of dumps) expect(text).not.toContain(SECRET)
    // Still readable where code asks for it by name.
    expect(tb.options.secret).toBe(SECRET)
  })
})
