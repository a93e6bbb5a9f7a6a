/**
 * @module request.test
 *
 * The client's address from the socket and the forwarding headers: only the hops the
 * proxies in front add are believed, whatever a client writes to their left.
 */

import { describe, expect, it } from 'vitest'
import { clientIp, extractKey, isForwarded } from './request.js'

const xff = (v: string) => ({ 'x-forwarded-for': v })
const fwd = (v: string) => ({ forwarded: v })

describe('clientIp', () => {
  it('is the socket address without trustProxy, whatever the headers say', () => {
    expect(clientIp('10.0.0.1', xff('203.0.113.7'), false)).toBe('10.0.0.1')
    expect(clientIp('::ffff:10.0.0.1', {}, false)).toBe('10.0.0.1')
    expect(clientIp('::1', {}, false)).toBe('::1')
    expect(clientIp(undefined, {}, false)).toBeNull()
  })

  it('with n hops, is the n-th address from the right: spoofed left-most entries change nothing', () => {
    expect(clientIp('10.0.0.1', xff('203.0.113.7'), 1)).toBe('203.0.113.7')
    expect(clientIp('10.0.0.1', xff('1.2.3.4, 203.0.113.7'), 1)).toBe('203.0.113.7')
    expect(clientIp('10.0.0.1', xff('9.9.9.9,1.2.3.4 ,  203.0.113.7'), 1)).toBe('203.0.113.7')
    expect(clientIp('10.0.0.2', xff('1.2.3.4, 203.0.113.7, 10.0.0.1'), 2)).toBe('203.0.113.7')
    // Fewer hops than proxies: the left-most there is (the first proxy saw no header).
    expect(clientIp('10.0.0.2', xff('203.0.113.7'), 2)).toBe('203.0.113.7')
    // No header at all: the socket.
    expect(clientIp('10.0.0.1', {}, 1)).toBe('10.0.0.1')
  })

  it('stops at a hop that is not an address: nothing to its left is vouched for', () => {
    expect(clientIp('10.0.0.1', xff('1.2.3.4, evil.example, 203.0.113.7'), true)).toBe(
      '203.0.113.7',
    )
    expect(clientIp('10.0.0.1', xff('x'.repeat(100)), 1)).toBe('10.0.0.1')
    expect(clientIp('10.0.0.1', xff('unknown'), 1)).toBe('10.0.0.1')
  })

  it('takes only whole IPv4 and IPv6 addresses: hex words and broken forms end the walk', () => {
    for (const junk of [
      'cafe',
      'dead.beef',
      'ff',
      '1.2.3',
      '1.2.3.4.5',
      '256.1.1.1',
      '01.2.3.4',
      ':::',
      '1::2::3',
      '1:2:3:4:5:6:7:8:9',
      '12345::1',
      '..',
      '::ffff:1.2.3',
    ])
      expect(clientIp('10.0.0.1', xff(`1.2.3.4, ${junk}`), true), junk).toBe('10.0.0.1')
    for (const [hop, ip] of <Array<[string, string]>>[
      ['::', '::'],
      ['::1', '::1'],
      ['fe80::1:2', 'fe80::1:2'],
      ['1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7:8'],
      ['64:ff9b::203.0.113.7', '64:ff9b::203.0.113.7'],
      ['0.0.0.0', '0.0.0.0'],
    ])
      expect(clientIp('10.0.0.1', xff(hop), 1), hop).toBe(ip)
  })

  it('true trusts every hop: the left-most address', () => {
    expect(clientIp('10.0.0.1', xff('1.2.3.4, 203.0.113.7'), true)).toBe('1.2.3.4')
  })

  it('reads ports, brackets and IPv4-mapped addresses as the bare address', () => {
    expect(clientIp('10.0.0.1', xff('203.0.113.7:4711'), 1)).toBe('203.0.113.7')
    expect(clientIp('10.0.0.1', xff('[2001:db8::7]:4711'), 1)).toBe('2001:db8::7')
    expect(clientIp('10.0.0.1', xff('2001:db8::7'), 1)).toBe('2001:db8::7')
    expect(clientIp('10.0.0.1', xff('2001:DB8::7'), 1)).toBe('2001:db8::7')
    expect(clientIp('10.0.0.1', xff('::ffff:203.0.113.7'), 1)).toBe('203.0.113.7')
  })

  it('reads the for= parameters of RFC 7239 Forwarded when told to', () => {
    const trust = { hops: 1, header: 'forwarded' } as const
    expect(
      clientIp('10.0.0.1', fwd('for=1.2.3.4;proto=https, for="[2001:db8:cafe::17]:4711"'), trust),
    ).toBe('2001:db8:cafe::17')
    expect(clientIp('10.0.0.1', fwd('for=1.2.3.4, For=203.0.113.7;by=10.0.0.1'), trust)).toBe(
      '203.0.113.7',
    )
    expect(clientIp('10.0.0.1', fwd('for=1.2.3.4, proto=https'), trust)).toBe('10.0.0.1')
    expect(clientIp('10.0.0.1', fwd('for=_hidden'), trust)).toBe('10.0.0.1')
    // The other header is not read.
    expect(clientIp('10.0.0.1', xff('203.0.113.7'), trust)).toBe('10.0.0.1')
    expect(clientIp('10.0.0.1', fwd('for=203.0.113.7'), 1)).toBe('10.0.0.1')
  })

  it('reads the one address of X-Real-IP when told to, and no list in it', () => {
    const trust = { hops: 1, header: 'x-real-ip' } as const
    const real = (v: string) => ({ 'x-real-ip': v, 'x-forwarded-for': '198.51.100.1' })
    expect(clientIp('10.0.0.1', real('203.0.113.7'), trust)).toBe('203.0.113.7')
    expect(clientIp('10.0.0.1', real('::ffff:203.0.113.7'), trust)).toBe('203.0.113.7')
    // Not one address: the socket's.
    expect(clientIp('10.0.0.1', real('1.2.3.4, 203.0.113.7'), trust)).toBe('10.0.0.1')
    expect(clientIp('10.0.0.1', real('unknown'), trust)).toBe('10.0.0.1')
    expect(clientIp('10.0.0.1', xff('203.0.113.7'), trust)).toBe('10.0.0.1')
    // The other readings leave it alone.
    expect(clientIp('10.0.0.1', { 'x-real-ip': '203.0.113.7' }, 1)).toBe('10.0.0.1')
  })
})

describe('isForwarded', () => {
  it('sees X-Forwarded-For, Forwarded or X-Real-IP', () => {
    expect(isForwarded(xff('1.2.3.4'))).toBe(true)
    expect(isForwarded(fwd('for=1.2.3.4'))).toBe(true)
    expect(isForwarded(new Headers({ Forwarded: 'for=1.2.3.4' }))).toBe(true)
    // nginx's `proxy_set_header X-Real-IP $remote_addr` alone: still a proxy in front.
    expect(isForwarded({ 'x-real-ip': '1.2.3.4' })).toBe(true)
    expect(isForwarded({})).toBe(false)
  })
})

describe('extractKey', () => {
  const get = (authorization: string) =>
    extractKey({ headers: { authorization }, ip: null, method: 'GET', path: '/' }, ['bearer'])

  it('reads the scheme Bearer in any case, and nothing else', () => {
    for (const scheme of ['Bearer', 'bearer', 'BEARER', 'bEaReR'])
      expect(get(`${scheme} sk_test_1`)).toBe('sk_test_1')
    // Near misses: a look-alike outside ASCII, another character, a tab for the space.
    for (const scheme of [
      'Bearer'.replace('B', '\u0102'),
      'Be@rer',
      'Bearer'.replace('r', '\u0152'),
      'Bearer\t',
    ])
      expect(get(`${scheme} sk_test_1`)).toBeUndefined()
    for (const other of ['Basic sk_test_1', 'Token sk_test_1', 'Bearer', 'Bearer ', 'sk_test_1'])
      expect(get(other)).toBeUndefined()
  })
})
