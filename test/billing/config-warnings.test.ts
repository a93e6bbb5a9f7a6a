/**
 * `stripeBilling` warns once (`TOLLBOOTH_UNBILLED_OVERAGE`) when a tier's plan allows overage
 * that would never reach an invoice: no meter event name, or no metered price on the tier.
 */

import Stripe from 'stripe'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { stripeBilling } from '../../adapters/stripe/index.js'
import { createTollbooth } from '../../src/internal.js'

const make = () =>
  createTollbooth({
    secret: 'billing-suite-secret-billing-suite-secret-0005',
    plans: {
      free: { monthlyCredits: 10 },
      pro: { monthlyCredits: 1_000, allowOverage: true, overageRate: 0.01 },
    },
    defaultTier: 'free',
  })
const stripe = new Stripe('sk_test_unused')

afterEach(() => {
  vi.restoreAllMocks()
})

describe('overage that no invoice would bill', () => {
  it('is named once, with the tier and what is missing; a complete setup says nothing', () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {})
    const tb = make()
    stripeBilling(tb, {
      stripe,
      webhookSecret: 'whsec_warnings_0005',
      tiers: { pro: { priceId: 'price_pro', meteredPriceId: 'price_overage' } },
      meterEventName: 'api_overage',
    })
    expect(warn).not.toHaveBeenCalled()
    stripeBilling(tb, {
      stripe,
      webhookSecret: 'whsec_warnings_0005',
      tiers: { pro: { priceId: 'price_pro' } },
      meterEventName: 'api_overage',
    })
    expect(warn).toHaveBeenCalledTimes(1)
    expect(String(warn.mock.calls[0]![0])).toMatch(
      /TOLLBOOTH_UNBILLED_OVERAGE.*tiers\.pro.*meteredPriceId/,
    )
  })

  it('without meterEventName, overage is recorded and never sent', async () => {
    vi.resetModules()
    const fresh = await import('../../adapters/stripe/index.js')
    const internal = await import('../../src/internal.js')
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {})
    fresh.stripeBilling(
      internal.createTollbooth({
        secret: 'billing-suite-secret-billing-suite-secret-0005',
        plans: { free: { monthlyCredits: 10 }, pro: { monthlyCredits: 1_000, allowOverage: true } },
        defaultTier: 'free',
      }),
      {
        stripe,
        webhookSecret: 'whsec_warnings_0005',
        tiers: { pro: { priceId: 'price_pro', meteredPriceId: 'price_overage' } },
      },
    )
    expect(String(warn.mock.calls.at(-1)?.[0])).toMatch(
      /TOLLBOOTH_UNBILLED_OVERAGE.*meterEventName/,
    )
  })
})
