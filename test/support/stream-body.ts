/**
 * @module test/support/stream-body
 *
 * A client that streams a chunked POST body (no Content-Length) and counts the bytes it could
 * write before the server answered: how a suite shows a body bound stops reading early.
 */

import { request } from 'node:http'

const CHUNK = new Uint8Array(64 * 1024).fill(0x61)

/** POSTs up to `max` bytes to `url`, chunked; resolves with the answer and the bytes sent before it. */
export function streamBody(
  url: string,
  max: number,
): Promise<{ status: number; body: string; sent: number }> {
  return new Promise((resolve, reject) => {
    let sent = 0
    let answered = false
    const req = request(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked' },
    })
    req.on('response', (res) => {
      answered = true
      const at = sent
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (d) => {
        body += d
      })
      res.on('end', () => {
        resolve({ status: res.statusCode!, body, sent: at })
        req.destroy()
      })
    })
    req.on('error', (err) => {
      if (!answered) reject(err)
    })
    const pump = () => {
      while (!answered && sent < max) {
        sent += CHUNK.byteLength
        if (!req.write(CHUNK)) return void req.once('drain', pump)
      }
      if (!answered && sent >= max) req.end()
    }
    pump()
  })
}
