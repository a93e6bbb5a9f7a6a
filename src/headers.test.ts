import { describe, expect, it } from 'vitest'
import {
  setBypassHeaders,
  setIetfHeaders,
  setRateLimitHeaders,
  setRetryAfter,
  setUsageHeaders,
  wireName,
} from './headers.js'

describe('wireName', () => {
  it('is each header name of every family in lowercase', () => {
    const out: Record<string, string> = { 'X-Request-Id': 'req_1' }
    const figures = {
      name: 'per-minute',
      limit: 60,
      remaining: 59,
      resetMs: 1000,
      windowMs: 60_000,
    }
    setRateLimitHeaders(out, figures)
    setIetfHeaders(out, figures)
    setRetryAfter(out, 1000)
    setUsageHeaders(out, 1, 100)
    setBypassHeaders(out, false, 'openai')
    out['WWW-Authenticate'] = 'Bearer'
    out['Content-Type'] = 'application/json'
    const names = Object.keys(out)
    expect(names).toHaveLength(14)
    for (const name of names) expect(wireName(name)).toBe(name.toLowerCase())
  })

  it('lowercases a name outside the table', () => {
    expect(wireName('X-Custom-Header')).toBe('x-custom-header')
    expect(wireName('already-lower')).toBe('already-lower')
  })
})
