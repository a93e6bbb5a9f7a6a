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
  type ErrorCode,
  type InvalidField,
  InvalidRequestError,
  isTollboothError,
  NotFoundError,
  type TollboothError,
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
