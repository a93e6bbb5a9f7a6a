/**
 * @module tollbooth/stripe/meter
 *
 * Overage to Stripe as billing meter events (`POST /v1/billing/meter_events`): one meter
 * event per usage event with overage, for the account's Stripe customer, at the time of the
 * request, under an identifier derived from the usage event id. Stripe deduplicates
 * identifiers (for at least 24 hours) and answers a repeat with the error code
 * `billing_meter_event_duplicate`, which counts as delivered; the out-box's delivered markers
 * cover the time beyond that.
 *
 * No `Idempotency-Key` is sent on purpose: Stripe replays the stored answer of a key, a 500
 * included, so a retry under the same key could never succeed. The identifier is the
 * deduplication that matters.
 */

import { sha256 } from '@noble/hashes/sha2.js'
import { bytesToHex, utf8ToBytes } from '@noble/hashes/utils.js'
import { type MeterSink, roundAmount, type UsageEvent } from '../../src/internal.js'

/** The part of the Stripe client the meter uses. */
export interface MeterClient {
  billing: {
    meterEvents: {
      create(
        params: {
          event_name: string
          identifier: string
          timestamp: number
          payload: { stripe_customer_id: string; value: string }
        },
        options?: { timeout?: number },
      ): Promise<unknown>
    }
  }
}

/** Stripe's error code for a meter event identifier it already has. */
export const DUPLICATE_CODE = 'billing_meter_event_duplicate'

/** The meter event identifier of a usage event: `tb_<id>`, hashed when over Stripe's 100 chars. */
export function meterIdentifier(eventId: string): string {
  const id = `tb_${eventId}`
  return id.length <= 100 ? id : `tb_${bytesToHex(sha256(utf8ToBytes(eventId)))}`
}

/**
 * Formats a meter value (Stripe takes decimals as strings): the decimal it stands for on the
 * amount grid (`roundAmount`, 9 decimals at most), with no exponent. A fixed number of
 * decimals would write a large amount's binary noise (`99999.3` as `99999.300000000003`).
 */
export function meterValue(value: number): string {
  const v = roundAmount(value)
  // String() writes an exponent below 1e-6; the grid has 9 decimals there.
  return v !== 0 && Math.abs(v) < 1e-6 ? v.toFixed(9).replace(/0+$/, '') : String(v)
}

/**
 * True when a failed call may succeed later: no answer, a 5xx, 429, 409 (a lock), or an
 * authentication problem an operator can fix. A 400 or 404 (bad customer, no such meter, a
 * timestamp past 35 days) will never succeed and is dropped; reconciliation reports it.
 */
export function isRetryable(err: unknown): boolean {
  const e = err as { type?: string; statusCode?: number } | null
  if (!e || typeof e !== 'object') return true
  if (e.type === 'StripeInvalidRequestError' || e.type === 'StripeCardError')
    return e.statusCode === undefined || e.statusCode >= 500
  if (typeof e.statusCode === 'number')
    return (
      e.statusCode >= 500 ||
      e.statusCode === 429 ||
      e.statusCode === 409 ||
      e.statusCode === 401 ||
      e.statusCode === 403
    )
  return true
}

/** How long one meter event call may take by default (the client's own default is 80 s). */
export const METER_TIMEOUT_MS = 10_000

/**
 * The sink that sends overage of `eventName` to Stripe. Each call is bounded by `timeoutMs`: a
 * Stripe that does not answer fails the send (retried later) instead of holding the flush,
 * and `close()`, for the client's timeout.
 */
export function stripeMeterSink(
  stripe: MeterClient,
  eventName: string,
  timeoutMs = METER_TIMEOUT_MS,
): MeterSink {
  return {
    async send(event: UsageEvent, value: number, customerId: string) {
      try {
        await stripe.billing.meterEvents.create(
          {
            event_name: eventName,
            identifier: meterIdentifier(event.id),
            timestamp: Math.floor(event.time / 1000),
            payload: { stripe_customer_id: customerId, value: meterValue(value) },
          },
          { timeout: timeoutMs },
        )
        return 'delivered'
      } catch (err) {
        if ((err as { code?: string } | null)?.code === DUPLICATE_CODE) return 'duplicate'
        throw err
      }
    },
    retryable: isRetryable,
  }
}
