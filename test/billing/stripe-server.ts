/**
 * @module test/billing/stripe-server
 *
 * A stand-in for the Stripe API on 127.0.0.1, for the real `stripe` client configured with
 * `host`, `port` and `protocol: 'http'`. It records every request (method, path, headers, the
 * form body flattened to `line_items[0][price]`-style keys) and answers the few endpoints
 * tollbooth calls the way Stripe does, including Stripe's error shape and the meter's
 * duplicate-identifier answer. Faults are scripted: `failNext` answers 500 (optionally after
 * recording, like a response lost on the way back), `stop()`/`start()` take it down and bring
 * it back on the same port.
 */

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import Stripe from 'stripe'

export interface RecordedRequest {
  method: string
  path: string
  headers: IncomingMessage['headers']
  form: Record<string, string>
}

export interface MeterEventRecord {
  identifier: string
  event_name: string
  timestamp: number
  customer: string
  value: number
}

export interface SessionRecord {
  id: string
  object: 'checkout.session'
  customer: string | null
  mode: string
  status: 'open' | 'complete' | 'expired'
  url: string | null
}

export interface FakeStripe {
  port: number
  requests: RecordedRequest[]
  /** Checkout sessions created (listed by `GET /v1/checkout/sessions`, closed by `…/expire`). */
  sessions: SessionRecord[]
  /**
   * Subscriptions `GET /v1/subscriptions` lists and `GET /v1/subscriptions/:id` retrieves: a
   * test adds the ones Stripe would have.
   */
  subscriptions: Array<{ id: string; customer: string; status: string } & Record<string, unknown>>
  /** Meter events Stripe accepted (each identifier once): what would be billed. */
  meterEvents: MeterEventRecord[]
  /** Answer the next `n` requests to `path` with a 500; `afterRecord` keeps their effect. */
  failNext(path: string, n: number, options?: { afterRecord?: boolean }): void
  /** Answer requests to `path` with a 400 invalid_request_error (e.g. an unknown customer). */
  rejectAll(path: string | null): void
  /** Never answer requests to `path` (recorded, left hanging until `stop()`). */
  hang(path: string | null): void
  stop(): Promise<void>
  start(): Promise<void>
  close(): Promise<void>
  /** A real Stripe client pointed at this server, retries off (tollbooth does its own). */
  client(): Stripe
}

const json = (res: ServerResponse, status: number, body: unknown) => {
  res.writeHead(status, { 'content-type': 'application/json', 'request-id': 'req_fake' })
  res.end(JSON.stringify(body))
}

const stripeError = (res: ServerResponse, status: number, message: string, code?: string) =>
  json(res, status, {
    error: { type: status >= 500 ? 'api_error' : 'invalid_request_error', message, code },
  })

export async function startFakeStripe(): Promise<FakeStripe> {
  const requests: RecordedRequest[] = []
  const sessions: SessionRecord[] = []
  const subscriptions: FakeStripe['subscriptions'] = []
  const meterEvents: MeterEventRecord[] = []
  const failures = new Map<string, { n: number; afterRecord: boolean }>()
  let rejected: string | null = null
  let hanging: string | null = null
  let seq = 0
  let server: Server | null = null
  let port = 0

  const handle = (req: IncomingMessage, res: ServerResponse, raw: string) => {
    const [path = '', search = ''] = (req.url ?? '').split('?')
    const query = Object.fromEntries(new URLSearchParams(search))
    const form = Object.fromEntries(new URLSearchParams(raw))
    const listOf = (data: unknown[]) => ({
      object: 'list',
      url: path,
      has_more: false,
      data: data.slice(0, Number(query['limit'] ?? 10)),
    })
    const expire = /^\/v1\/checkout\/sessions\/([^/]+)\/expire$/.exec(path)
    const subscription = /^\/v1\/subscriptions\/([^/]+)$/.exec(path)
    requests.push({ method: req.method ?? '', path, headers: req.headers, form })
    if (hanging === path) return
    const fail = failures.get(path)
    const failing = fail && fail.n > 0
    if (failing) fail.n--
    if (failing && !fail.afterRecord) return stripeError(res, 500, 'An unknown error occurred')
    if (rejected === path) return stripeError(res, 400, 'No such customer', 'resource_missing')
    let answer: [number, unknown]
    if (req.method === 'POST' && path === '/v1/customers') {
      answer = [200, { id: `cus_${++seq}`, object: 'customer', metadata: {} }]
    } else if (req.method === 'POST' && path === '/v1/checkout/sessions') {
      const id = `cs_test_${++seq}`
      const session: SessionRecord = {
        id,
        object: 'checkout.session',
        customer: form['customer'] ?? null,
        mode: form['mode'] ?? '',
        status: 'open',
        url: `https://checkout.stripe.com/c/pay/${id}`,
      }
      sessions.push(session)
      answer = [200, session]
    } else if (req.method === 'GET' && path === '/v1/checkout/sessions') {
      const found = sessions.filter(
        (x) =>
          (!query['customer'] || x.customer === query['customer']) &&
          (!query['status'] || x.status === query['status']),
      )
      answer = [200, listOf(found.reverse())]
    } else if (req.method === 'POST' && expire) {
      const session = sessions.find((x) => x.id === expire[1])
      if (!session) return stripeError(res, 404, `No such checkout.session: '${expire[1]}'`)
      if (session.status !== 'open')
        return stripeError(res, 400, 'Only Checkout Sessions with a status of open can be expired.')
      session.status = 'expired'
      session.url = null
      answer = [200, session]
    } else if (req.method === 'GET' && path === '/v1/subscriptions') {
      const status = query['status'] ?? 'active'
      const found = subscriptions.filter(
        (x) =>
          (!query['customer'] || x.customer === query['customer']) &&
          (status === 'all' || x.status === status),
      )
      answer = [200, listOf(found)]
    } else if (req.method === 'GET' && subscription) {
      const found = subscriptions.find((x) => x.id === subscription[1])
      if (!found)
        return stripeError(
          res,
          404,
          `No such subscription: '${subscription[1]}'`,
          'resource_missing',
        )
      answer = [200, found]
    } else if (req.method === 'POST' && path === '/v1/billing_portal/sessions') {
      const id = `bps_${++seq}`
      answer = [
        200,
        { id, object: 'billing_portal.session', url: `https://billing.stripe.com/p/session/${id}` },
      ]
    } else if (req.method === 'POST' && path === '/v1/billing/meter_events') {
      const identifier = form['identifier'] ?? ''
      if (meterEvents.some((e) => e.identifier === identifier)) {
        return stripeError(
          res,
          400,
          `An event already exists with identifier ${identifier}.`,
          'billing_meter_event_duplicate',
        )
      }
      meterEvents.push({
        identifier,
        event_name: form['event_name'] ?? '',
        timestamp: Number(form['timestamp']),
        customer: form['payload[stripe_customer_id]'] ?? '',
        value: Number(form['payload[value]']),
      })
      answer = [200, { object: 'billing.meter_event', identifier, created: 0 }]
    } else {
      answer = [404, { error: { type: 'invalid_request_error', message: `Unrecognized ${path}` } }]
    }
    if (failing) return stripeError(res, 500, 'An unknown error occurred')
    json(res, answer[0], answer[1])
  }

  const start = () =>
    new Promise<void>((resolve, reject) => {
      if (server) return resolve()
      server = createServer((req, res) => {
        let raw = ''
        req.setEncoding('utf8')
        req.on('data', (c: string) => {
          raw += c
        })
        req.on('end', () => handle(req, res, raw))
      })
      server.once('error', reject)
      server.listen(port, '127.0.0.1', () => {
        port = (server!.address() as AddressInfo).port
        resolve()
      })
    })
  const stop = () =>
    new Promise<void>((resolve) => {
      if (!server) return resolve()
      const s = server
      server = null
      s.close(() => resolve())
      s.closeAllConnections()
    })

  await start()
  return {
    get port() {
      return port
    },
    requests,
    sessions,
    subscriptions,
    meterEvents,
    failNext(path, n, options = {}) {
      failures.set(path, { n, afterRecord: options.afterRecord === true })
    },
    rejectAll(path) {
      rejected = path
    },
    hang(path) {
      hanging = path
    },
    stop,
    start,
    close: stop,
    client: () =>
      new Stripe('sk_test_fake_key_for_the_stand_in', {
        host: '127.0.0.1',
        port,
        protocol: 'http',
        maxNetworkRetries: 0,
        telemetry: false,
      }),
  }
}
