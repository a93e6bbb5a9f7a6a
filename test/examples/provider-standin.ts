/**
 * @module test/examples/provider-standin
 *
 * A local stand-in for the BYOK providers' cheapest authenticated endpoints (ElevenLabs
 * `GET /v1/user`, OpenAI `GET /v1/models`, Deepgram `GET /v1/projects`, …) on 127.0.0.1, so
 * provider-key verification makes a real HTTP request in tests. A key containing `revoked` is
 * refused (401), one containing `slow` gets no answer until the server closes, any other is
 * accepted; every request is recorded (path and headers).
 */

import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'

export interface ProviderStandIn {
  url: string
  requests: Array<{ method: string; path: string; headers: IncomingMessage['headers'] }>
  close(): Promise<void>
}

/** The key a request carries, in whichever header its provider uses. */
function keyOf(req: IncomingMessage): string {
  const h = req.headers
  const auth = h.authorization ?? ''
  return String(h['xi-api-key'] ?? h['x-api-key'] ?? auth.replace(/^(Bearer|Token) /, ''))
}

export async function startProviderStandIn(): Promise<ProviderStandIn> {
  const requests: ProviderStandIn['requests'] = []
  const hanging = new Set<ServerResponse>()
  const server = createServer((req, res) => {
    requests.push({ method: req.method ?? '', path: req.url ?? '', headers: req.headers })
    const key = keyOf(req)
    if (key.includes('slow')) {
      hanging.add(res)
      return
    }
    const ok = key !== '' && !key.includes('revoked')
    res.writeHead(ok ? 200 : 401, { 'content-type': 'application/json' })
    res.end(JSON.stringify(ok ? { ok: true } : { error: 'invalid api key' }))
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
  const port = (server.address() as AddressInfo).port
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((r) => {
        for (const res of hanging) res.destroy()
        server.close(() => r())
        server.closeAllConnections()
      }),
  }
}
