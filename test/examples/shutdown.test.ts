/**
 * @module test/examples/shutdown
 *
 * Each example stops on SIGTERM without losing usage (issue 20, item 4). Its server process is
 * started on PostgreSQL (a fresh schema, which outlives the process). Five requests are sent
 * with half their body, so they are in flight for as long as the test likes; then 300 requests
 * over 16 keep-alive connections, and SIGTERM after the first 30 answers. The five bodies are
 * finished 500 ms after the last of the 300 is answered (or cut). The process must answer those five through tollbooth
 * (in-flight requests are drained, not cut), exit with code 0, and every request that got an answer
 * through tollbooth (an `X-Request-Id`: served, or refused for its key's rate limit) must have
 * its usage event in the database. Before, the voice example exited without waiting for
 * requests in flight (whose usage, when answered after `tb.close()`, was lost) and the PDF
 * example cut their connections.
 */

import { Agent, request } from 'node:http'
import pg from 'pg'
import { afterAll, describe, expect, it } from 'vitest'
import { startServer } from './spawn.js'

const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
const REQUIRED = process.env.TOLLBOOTH_REQUIRE_SERVICES === '1'
const TOTAL = 300
const STOP_AFTER = 30
const SLOW = 5

async function reachable(): Promise<boolean> {
  const client = new pg.Client({ connectionString: DATABASE_URL, connectionTimeoutMillis: 2000 })
  try {
    await client.connect()
    return true
  } catch {
    return false
  } finally {
    await client.end().catch(() => {})
  }
}
const skip = !REQUIRED && !(await reachable())

interface Example {
  script: string
  path: string
  body: unknown
}

const EXAMPLES: Array<[string, Example]> = [
  [
    'voice-api',
    { script: 'examples/voice-api/server.ts', path: '/v1/synthesize', body: { text: 'Hello' } },
  ],
  [
    'pdf-api',
    {
      script: 'examples/pdf-api/server.ts',
      path: '/api/v1/compress',
      body: { file: 'https://example.com/report.pdf' },
    },
  ],
  [
    'inference-api',
    {
      script: 'examples/inference-api/server.ts',
      path: '/v1/chat/completions',
      body: { model: 'echo-1', messages: [{ role: 'user', content: 'Hello' }] },
    },
  ],
]

interface Answer {
  status: number
  requestId: string | undefined
}

/** One POST on `agent`; resolves with the answer, or null when the connection failed. */
function post(agent: Agent, url: string, key: string, body: unknown): Promise<Answer | null> {
  return new Promise((resolve) => {
    const data = JSON.stringify(body)
    const req = request(
      url,
      {
        method: 'POST',
        agent,
        headers: {
          authorization: `Bearer ${key}`,
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(data),
        },
      },
      (res) => {
        res.resume()
        res.on('end', () => {
          const id = res.headers['x-request-id']
          resolve({
            status: res.statusCode ?? 0,
            requestId: typeof id === 'string' ? id : undefined,
          })
        })
        res.on('error', () => resolve(null))
      },
    )
    req.on('error', () => resolve(null))
    req.end(data)
  })
}

/**
 * A POST on its own connection whose body is sent in two halves: the second when `finish` is
 * called. Resolves with the answer, or null when the connection failed.
 */
function slowPost(url: string, key: string, body: unknown) {
  const data = Buffer.from(JSON.stringify(body))
  const half = Math.floor(data.length / 2)
  let req: ReturnType<typeof request>
  const answer = new Promise<Answer | null>((resolve) => {
    req = request(
      url,
      {
        method: 'POST',
        agent: false,
        headers: {
          authorization: `Bearer ${key}`,
          'content-type': 'application/json',
          'content-length': data.length,
        },
      },
      (res) => {
        res.resume()
        res.on('end', () => {
          const id = res.headers['x-request-id']
          resolve({
            status: res.statusCode ?? 0,
            requestId: typeof id === 'string' ? id : undefined,
          })
        })
        res.on('error', () => resolve(null))
      },
    )
    req.on('error', () => resolve(null))
    req.write(data.subarray(0, half))
  })
  return { answer, finish: () => req.end(data.subarray(half)) }
}

describe.skipIf(skip)('examples on SIGTERM', () => {
  const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 2 })
  const schemas: string[] = []
  afterAll(async () => {
    for (const s of schemas) await pool.query(`DROP SCHEMA IF EXISTS "${s}" CASCADE`)
    await pool.end()
  })

  it.each(EXAMPLES)(
    '%s drains in-flight requests and records the usage of every answered one',
    { timeout: 60_000 },
    async (_, ex) => {
      const schema = `tb_shutdown_${Math.random().toString(36).slice(2, 10)}`
      schemas.push(schema)
      const server = await startServer(ex.script, ['consumption key'], {
        DATABASE_URL,
        DATABASE_SCHEMA: schema,
      })
      const key = server.lines['consumption key']!
      const slow = Array.from({ length: SLOW }, () =>
        slowPost(`${server.url}${ex.path}`, key, ex.body),
      )
      await new Promise((r) => setTimeout(r, 300))
      const agent = new Agent({ keepAlive: true, maxSockets: 16 })
      let answered = 0
      let stopped: Promise<void> | null = null
      let signalled: () => void = () => {}
      const signal = new Promise<void>((r) => {
        signalled = r
      })
      const burst = Promise.all(
        Array.from({ length: TOTAL }, async () => {
          const r = await post(agent, `${server.url}${ex.path}`, key, ex.body)
          if (r && ++answered === STOP_AFTER) {
            stopped = server.stop()
            signalled()
          }
          return r
        }),
      )
      await signal
      const fast = await burst
      // The burst is over: an example that does not wait for requests in flight exits now.
      await new Promise((r) => setTimeout(r, 500))
      for (const s of slow) s.finish()
      const slowAnswers = await Promise.all(slow.map((s) => s.answer))
      const results = [...fast, ...slowAnswers]
      await (stopped ?? server.stop())
      agent.destroy()
      expect(server.exitCode(), server.output()).toBe(0)
      // The requests in flight at the signal were finished and answered through tollbooth (200,
      // or 429 where the burst used up the key's rate limit first), not cut.
      for (const r of slowAnswers) {
        expect(r?.requestId).toBeDefined()
        expect([200, 429]).toContain(r?.status)
      }

      const through = results.filter(
        (r): r is Answer & { requestId: string } => r !== null && r.requestId !== undefined,
      )
      const served = through.filter((r) => r.status === 200).length
      expect(served).toBeGreaterThan(0)
      // Some answers came after SIGTERM: the drain let requests in flight finish.
      expect(through.length).toBeGreaterThan(STOP_AFTER)
      const { rows } = await pool.query<{ request_id: string }>(
        `SELECT request_id FROM "${schema}".usage_events WHERE request_id = ANY($1)`,
        [through.map((r) => r.requestId)],
      )
      const recorded = new Set(rows.map((r) => r.request_id))
      const lost = through.filter((r) => !recorded.has(r.requestId))
      console.log(
        `${ex.script}: ${through.length} answered through tollbooth (${served} served), ` +
          `${results.filter((r) => r === null).length} connections refused or cut, ${lost.length} events lost`,
      )
      expect(lost).toEqual([])
    },
  )
})
