/**
 * @module test/package/types
 *
 * What a `tsc --strict` consumer of `tollbooth` sees. This file is part of `npm run
 * typecheck`: each `@ts-expect-error` fails the typecheck if the line below it compiles, so
 * a loosened type is caught there; the runtime assertions run as an ordinary suite.
 */

import { describe, expect, expectTypeOf, it } from 'vitest'
import {
  type AnyTollboothError,
  ConfigError,
  createTollbooth,
  type ErrorCode,
  type InvalidField,
  InvalidRequestError,
  isTollboothError,
  NotFoundError,
  type Tollbooth,
  type TollboothError,
  type TollboothOptions,
} from '../../src/index.js'

describe('error types', () => {
  it('gives each error class a literal code', () => {
    expectTypeOf(new ConfigError('x').code).toEqualTypeOf<'config_invalid'>()
    expectTypeOf(new InvalidRequestError('x').code).toEqualTypeOf<'invalid_request'>()
    expectTypeOf(new NotFoundError().code).toEqualTypeOf<'not_found'>()
    expectTypeOf<TollboothError['code']>().toEqualTypeOf<ErrorCode>()
    expect(new NotFoundError().code).toBe('not_found')
  })

  it('narrows AnyTollboothError on its code', () => {
    const caught: unknown = new InvalidRequestError('Invalid request: name: too long', [
      { path: 'name', message: 'too long' },
    ])
    if (!isTollboothError(caught)) throw new Error('not a tollbooth error')
    expectTypeOf(caught).toEqualTypeOf<AnyTollboothError>()
    if (caught.code === 'invalid_request') {
      expectTypeOf(caught).toEqualTypeOf<InvalidRequestError>()
      expectTypeOf(caught.issues).toEqualTypeOf<InvalidField[]>()
      expect(caught.issues).toEqual([{ path: 'name', message: 'too long' }])
    } else throw new Error('not narrowed')
    const other = caught as AnyTollboothError
    if (other.code === 'forbidden') expectTypeOf(other.code).toEqualTypeOf<'forbidden'>()
    // @ts-expect-error: `issues` is there only once the code says so
    other.issues
    // @ts-expect-error: not a code of tollbooth
    if (other.code === 'teapot') throw other
  })
})

describe('createTollbooth options', () => {
  it('types the options, so a misspelt or mistyped option does not compile', () => {
    expectTypeOf(createTollbooth).parameter(0).toEqualTypeOf<TollboothOptions | undefined>()
    expectTypeOf<TollboothOptions['secret']>().toEqualTypeOf<string>()
    expectTypeOf<TollboothOptions['quotaStatus']>().toEqualTypeOf<401 | 403 | 429 | undefined>()
    // Never called: the calls below only have to fail the typecheck (and would throw).
    const misuse = (): Tollbooth[] => [
      // @ts-expect-error: misspelt option
      createTollbooth({ secrt: 'x' }),
      // @ts-expect-error: a secret is a string
      createTollbooth({ secret: 1 }),
      // @ts-expect-error: an unknown nested option
      createTollbooth({ secret: 'x'.repeat(32), cache: { ttl: 5 } }),
      // @ts-expect-error: quotaStatus is 401, 403 or 429
      createTollbooth({ secret: 'x'.repeat(32), quotaStatus: 500 }),
    ]
    expect(typeof misuse).toBe('function')
    expect(() => createTollbooth({ secret: 1 } as never)).toThrow(ConfigError)
  })
})

describe('tb.accounts', () => {
  it("has no entry that credits under a key of billing's (a grant's key is not the caller's)", () => {
    const tb = createTollbooth({ secret: 'x'.repeat(32) })
    // Never called: only has to fail the typecheck.
    const misuse = () =>
      // @ts-expect-error: billing's credit under its grant's key is not on the public surface
      tb.accounts.credit('acct_1', 10, { key: 'grant cs_paid_1', ttlMs: 1 })
    expect(typeof misuse).toBe('function')
  })
})
