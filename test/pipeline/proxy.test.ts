/**
 * @module test/pipeline/proxy
 *
 * The forwarding-header warning in a process of its own (it fires once per process): the RFC
 * 7239 `Forwarded` header alone raises it, and so does a failed authentication that comes
 * after the first 1,000 requests were looked at.
 */

import { describe, expect, it, vi } from 'vitest'
import { request, setup } from '../support/core.js'

// Order matters: the warning fires once per process, so the silent case runs first.
describe('TOLLBOOTH_UNTRUSTED_FORWARDED_FOR', () => {
  it('does not warn when the route trusts proxies', async () => {
    const { tb } = setup()
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {})
    try {
      const route = tb.route({ trustProxy: 1 })
      await tb.authenticate(
        request('sk_live_bogus', { headers: { 'x-forwarded-for': '1.2.3.4' } }),
        route,
      )
      expect(warn).not.toHaveBeenCalled()
    } finally {
      warn.mockRestore()
    }
  })

  it('warns once on Forwarded with trustProxy off, naming the option, even after 1,000 requests', async () => {
    const { tb } = setup()
    const { key } = await tb.keys.create({ accountId: 'acct_1' })
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {})
    try {
      // The first 1,000 requests carry no forwarding header: nothing to say.
      for (let i = 0; i < 1000; i++)
        expect((await tb.authenticate(request(key))).allowed).toBe(true)
      const served = await tb.authenticate(request(key, { headers: { forwarded: 'for=1.2.3.4' } }))
      expect(served.allowed).toBe(true)
      expect(warn).not.toHaveBeenCalled()
      // A failed authentication is always looked at.
      for (let i = 0; i < 3; i++) {
        const d = await tb.authenticate(
          request('sk_live_bogus', { headers: { forwarded: 'for=198.51.100.9' } }),
        )
        expect(d.allowed).toBe(false)
      }
      const calls = warn.mock.calls.filter((c) =>
        String(c[0]).includes('TOLLBOOTH_UNTRUSTED_FORWARDED_FOR'),
      )
      expect(calls).toHaveLength(1)
      expect(String(calls[0]![0])).toMatch(/set trustProxy/)
    } finally {
      warn.mockRestore()
    }
  })
})
