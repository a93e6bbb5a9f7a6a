/**
 * @module tollbooth/stripe/webhooks
 *
 * The Stripe webhook endpoint's logic, framework-free: raw body and headers in, status and
 * JSON body out. In order:
 *
 * 1. verify the `Stripe-Signature` header over the raw body with the endpoint secret
 *    (`stripe.webhooks.constructEventAsync`, 5 minutes of tolerance on the tollbooth clock);
 *    a bad one is a 400 and changes nothing;
 * 2. skip an event already processed: a marker per event id in the counter store makes a
 *    replay (Stripe retries, a resend from the dashboard, a second instance) a 200 no-op;
 * 3. take a short lease on the event id, so two instances never apply it at once (the loser
 *    answers 409 and Stripe retries later);
 * 4. map it to changes (`events.ts`) and apply them (`applyBillingChanges`), then mark the
 *    event processed. A failure releases the lease and answers 500: Stripe retries. Two
 *    subscription events of the same second (Stripe's times are whole seconds, its delivery
 *    order is not guaranteed) that set different things are settled by the subscription's
 *    current state, retrieved from Stripe (one API call, for such ties only).
 *
 * Each step on the store (a marker call, the apply, the processed marker) is bounded by
 * `tb.options.storageTimeoutMs`: a store that does not answer in time makes it answer 503
 * `webhook_failed` (Stripe retries) instead of holding Stripe's delivery for as long as the
 * store is frozen. The step itself goes on, its outcome unknown: the lease is then not
 * released at the answer but once the step ends (or it lapses after 60 s), so a retry never
 * applies the event beside it; an apply that lands late marks the event processed, and a
 * retry after it is a duplicate (the grant marker and the account's billing state make a
 * retry that comes before the mark a no-op too).
 */

import {
  type AppliedChange,
  applyBillingChanges,
  type BillingChange,
  createMarkers,
  type ErrorCode,
  headerOf,
  isTollboothError,
  StorageUnavailableError,
  type Tollbooth,
  type WebhookInput,
  type WebhookResult,
} from '../../src/internal.js'
import { changesOf, type EventContext, type StripeEventLike } from './events.js'

/** How long another instance may hold an event before it is given up as crashed. */
const LEASE_MS = 60_000

/** How long asking Stripe for a subscription may take (its client's default is 80 s). */
const RETRIEVE_TIMEOUT_MS = 10_000

/** The part of the Stripe client the webhook endpoint uses. */
export interface WebhookVerifier {
  subscriptions: {
    retrieve(id: string, params?: undefined, options?: { timeout?: number }): Promise<unknown>
  }
  webhooks: {
    constructEventAsync(
      payload: string | Uint8Array,
      header: string,
      secret: string,
      tolerance?: number,
      cryptoProvider?: undefined,
      receivedAt?: number,
    ): Promise<unknown>
  }
}

export interface WebhookOptions extends EventContext {
  webhookSecret: string
  /** Maximum age of a signature, in seconds (Stripe's default, 300). */
  toleranceSec: number
  /** How long a processed event id is remembered (ms). */
  markerTtlMs: number
  onError: (err: unknown) => void
}

type StateChange = Extract<BillingChange, { type: 'tier' | 'cancel' }>

/**
 * The subscription's state now (`GET /v1/subscriptions/:id`), mapped as an event of the tied
 * change's time: Stripe's own advice for events it cannot order.
 */
async function currentState(
  stripe: WebhookVerifier,
  ctx: EventContext,
  change: StateChange,
): Promise<StateChange | null> {
  const sub = (await stripe.subscriptions.retrieve(change.subscriptionId, undefined, {
    timeout: RETRIEVE_TIMEOUT_MS,
  })) as { status?: unknown }
  const type =
    sub.status === 'canceled' || sub.status === 'incomplete_expired'
      ? 'customer.subscription.deleted'
      : 'customer.subscription.updated'
  const mapped = changesOf(
    { id: 'current', type, created: change.at / 1000, data: { object: sub } },
    ctx,
  )
  if ('ignored' in mapped) return null
  const found = mapped.changes.find(
    (c): c is StateChange => c.type === 'tier' || c.type === 'cancel',
  )
  return found && found.accountId === change.accountId ? found : null
}

const fail = (status: number, error: string, code: ErrorCode): WebhookResult => ({
  status,
  body: { error, code },
  applied: [],
})

/** Verifies, deduplicates and applies one Stripe webhook call. Never throws. */
export async function handleStripeWebhook(
  tb: Tollbooth,
  stripe: WebhookVerifier,
  options: WebhookOptions,
  input: WebhookInput,
): Promise<WebhookResult> {
  const now = () => tb.options.clock?.now() ?? Date.now()
  const signature = input?.headers ? headerOf(input.headers, 'stripe-signature') : undefined
  if (!signature) return fail(400, 'Missing Stripe-Signature header', 'invalid_request')
  if (typeof input.body !== 'string' && !(input.body instanceof Uint8Array))
    return fail(400, 'Webhook body must be the raw request body', 'invalid_request')
  let event: StripeEventLike
  try {
    event = (await stripe.webhooks.constructEventAsync(
      input.body,
      signature,
      options.webhookSecret,
      options.toleranceSec,
      undefined,
      now(),
    )) as StripeEventLike
  } catch (err) {
    const bad = (err as { type?: string }).type === 'StripeSignatureVerificationError'
    return bad
      ? fail(400, 'Invalid Stripe signature', 'invalid_signature')
      : fail(400, 'Invalid webhook body', 'invalid_request')
  }
  if (typeof event?.id !== 'string' || typeof event.type !== 'string')
    return fail(400, 'Invalid webhook body', 'invalid_request')

  const markers = createMarkers(tb.storage, now)
  const done = `{${event.id}}:billing:event`
  const lease = `{${event.id}}:billing:lease`
  const ok = (applied: AppliedChange[], extra: Record<string, unknown> = {}): WebhookResult => ({
    status: 200,
    body: { received: true, id: event.id, type: event.type, ...extra },
    applied,
  })
  // A store step not answered within the storage timeout: its outcome is unknown, so the
  // lease stays until it ends (`unknown`), never released at the answer.
  const ms = tb.options.storageTimeoutMs
  let unknown: Promise<unknown> | null = null
  const bound = <T>(p: Promise<T>, then?: (value: T) => Promise<unknown>): Promise<T> => {
    let timer: ReturnType<typeof setTimeout> | undefined
    return Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          unknown = then ? p.then(then) : p
          reject(new StorageUnavailableError(`Storage did not answer within ${ms} ms`))
        }, ms)
      }),
    ]).finally(() => clearTimeout(timer))
  }
  const unanswered = () =>
    fail(503, 'Storage did not answer in time; Stripe will retry', 'webhook_failed')
  try {
    if (await bound(markers.has(done))) return ok([], { duplicate: true })
    // A lease taken late (after the answer) lapses by its TTL: nothing runs under it.
    if (!(await bound(markers.set(lease, LEASE_MS))))
      return fail(409, 'This event is being processed', 'conflict')
  } catch (err) {
    options.onError(err)
    if (unknown) {
      ;(unknown as Promise<unknown>).catch(() => {})
      return unanswered()
    }
    return fail(500, 'Webhook could not be processed; Stripe will retry', 'webhook_failed')
  }
  const markDone = () => markers.set(done, options.markerTtlMs)
  try {
    if (await bound(markers.has(done))) return ok([], { duplicate: true })
    const mapped = changesOf(event, options)
    if ('ignored' in mapped) {
      await bound(markDone())
      return ok([], { ignored: mapped.ignored })
    }
    // Applied late, it is marked processed then (a retry after it is a duplicate).
    // A subscription event carries the whole subscription: a tie of two is settled by asking
    // Stripe for the subscription now.
    const snapshot = event.type.startsWith('customer.subscription.')
    const applied = await bound(
      applyBillingChanges(tb, mapped.changes, {
        grantTtlMs: options.markerTtlMs,
        ...(snapshot ? { current: (c: StateChange) => currentState(stripe, options, c) } : {}),
      }),
      markDone,
    )
    await bound(markDone())
    return ok(applied, { applied: applied.filter((a) => a.applied).length })
  } catch (err) {
    options.onError(err)
    if (unknown) return unanswered()
    if (isTollboothError(err) && err.status === 400) {
      // Bad data in the event (an account id or tier tollbooth refuses): a retry cannot help.
      await bound(markDone()).catch(options.onError)
      if (!unknown) return ok([], { ignored: err.message })
      return unanswered()
    }
    return fail(500, 'Webhook could not be processed; Stripe will retry', 'webhook_failed')
  } finally {
    const pending = unknown as Promise<unknown> | null
    // The outcome known, the lease goes (a retry then finds the event processed, or redoes it).
    if (pending)
      void pending
        .catch(options.onError)
        .then(() => markers.clear(lease))
        .catch(options.onError)
    else await bound(markers.clear(lease)).catch(options.onError)
  }
}
