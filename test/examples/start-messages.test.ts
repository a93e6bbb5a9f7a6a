/**
 * What the examples' `server.ts` say on start, run as a user runs them (a subprocess, the
 * in-memory storage): on a busy port, one line naming the address and what to do, exit 1, no
 * `EADDRINUSE` stack; without `TOLLBOOTH_SECRET` / `SESSION_SECRET`, that the built-in
 * development secrets are used and how to set real ones; with both set, nothing about them.
 */

import { createServer, type Server } from 'node:net'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { startServer } from './spawn.js'

const SECRETS = {
  TOLLBOOTH_SECRET: 'start-test-secret-start-test-secret-0123',
  SESSION_SECRET: 'start-test-session-secret-0123456789abcdef',
}

let busy: Server
let busyPort = 0
beforeAll(async () => {
  busy = createServer()
  await new Promise<void>((ok) => busy.listen(0, '127.0.0.1', ok))
  busyPort = (busy.address() as { port: number }).port
})
afterAll(() => new Promise<void>((ok) => busy.close(() => ok())))

describe('the examples on start', () => {
  test.each(['voice-api', 'pdf-api', 'inference-api'])(
    '%s on a busy port: one line saying so and what to do, exit 1',
    async (example) => {
      const script = `examples/${example}/server.ts`
      const started = startServer(script, [], {
        ...SECRETS,
        PORT: String(busyPort),
        HOST: '127.0.0.1',
      })
      await expect(started).rejects.toThrow(
        new Error(
          `${script} exited with 1: cannot listen on 127.0.0.1:${busyPort}: the port is in use ` +
            '(another server, or this one still running). Stop it, or start with PORT=<another port>.\n',
        ),
      )
    },
    60_000,
  )

  test('the demo says it uses the built-in development secrets, and how to set them', async () => {
    const server = await startServer('examples/voice-api/server.ts', [], {
      TOLLBOOTH_SECRET: '',
      SESSION_SECRET: '',
    })
    try {
      const out = server.output()
      expect(out).toMatch(
        /using the built-in development secrets \(TOLLBOOTH_SECRET, SESSION_SECRET not set\)/,
      )
      expect(out).toContain('TOLLBOOTH_SECRET="$(openssl rand -base64 32)"')
      expect(out).toContain('SESSION_SECRET="$(openssl rand -base64 32)"')
    } finally {
      await server.stop()
    }
  }, 60_000)

  test('with both secrets set, the demo says nothing about them', async () => {
    const server = await startServer('examples/voice-api/server.ts', [], SECRETS)
    try {
      expect(server.output()).toMatch(/voice-api listening on/)
      expect(server.output()).not.toMatch(/development secret/)
    } finally {
      await server.stop()
    }
  }, 60_000)
})
