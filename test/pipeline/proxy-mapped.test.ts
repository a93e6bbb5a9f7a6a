/**
 * @module test/pipeline/proxy-mapped
 *
 * On a dual-stack server every IPv4 client comes as `::ffff:a.b.c.d`: the core unmaps it for
 * the guard and the log, and still looks for forwarding headers (the warning fires once per
 * process, hence a file of its own).
 */

import { expect, it, vi } from 'vitest'
import { request, setup } from '../support/core.js'

it('unmaps an IPv4-mapped socket address and still warns about X-Forwarded-For', async () => {
  const { tb } = setup()
  const { key } = await tb.keys.create({ accountId: 'acct_1' })
  const warn = vi.spyOn(console, 'warn').mockImplementation(() => {})
  try {
    const d = await tb.authenticate(
      request(key, { ip: '::ffff:203.0.113.7', headers: { 'x-forwarded-for': '198.51.100.9' } }),
    )
    expect(d.allowed).toBe(true)
    expect(warn).toHaveBeenCalledTimes(1)
    expect(String(warn.mock.calls[0]![0])).toContain('TOLLBOOTH_UNTRUSTED_FORWARDED_FOR')
    const event = await tb.settle(d, { status: 200 })
    expect(event?.ip).toBe('203.0.113.7')
  } finally {
    warn.mockRestore()
  }
})
