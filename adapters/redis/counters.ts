/**
 * @module tollbooth/redis/counters
 *
 * The counter store on Redis: `consume` is one EVALSHA of the `CONSUME` script, which runs
 * every check of the admission and writes all of them or none (a Lua script runs alone on
 * the server, so concurrent admissions see a serial order). `settle` is one EVALSHA of
 * `SETTLE`; `held` is one GET, summed here in the same order as `limits/hold`.
 */

import type { Check, CheckResult, ConsumeResult, CounterStore, SettleOp } from '../../src/index.js'
import { type Ctx, dec, enc } from './store.js'

/** Hold ids go into a newline-separated state: escape `%` and newlines, injectively. */
export function escapeHoldId(id: string): string {
  return id.replace(/[%\n\r]/g, (c) => (c === '%' ? '%25' : c === '\n' ? '%0A' : '%0D'))
}

function checkArgs(c: Check): string[] {
  switch (c.type) {
    case 'window':
      return ['w', enc(c.limit), enc(c.windowMs), enc(c.bucketMs), enc(c.cost)]
    case 'gcra':
      return ['g', enc(c.limit), enc(c.windowMs), enc(c.cost), '']
    case 'hold':
      return ['h', enc(c.limit), enc(c.amount), enc(c.ttlMs), escapeHoldId(c.holdId)]
  }
}

function opArgs(op: SettleOp): string[] {
  if (op.type === 'release') return ['r', escapeHoldId(op.holdId), enc(op.charge), '']
  const c = op.check
  return c.type === 'window'
    ? ['w', enc(c.windowMs), enc(c.bucketMs), enc(c.cost)]
    : ['g', enc(c.limit), enc(c.windowMs), enc(c.cost)]
}

/**
 * @param ctx the client and key prefix
 * @param slackMs how long an idle counter is kept past the moment it turns idle
 */
export function redisCounters(ctx: Ctx, slackMs: number): CounterStore {
  const { client, prefix } = ctx
  const slack = String(slackMs)
  return {
    async consume(checks, now): Promise<ConsumeResult> {
      if (checks.length === 0) return { allowed: true, results: [] }
      const args: string[] = []
      for (const c of checks) args.push(prefix + c.key)
      args.push(enc(now), slack)
      for (const c of checks) args.push(...checkArgs(c))
      const reply = await client.tollboothConsume(checks.length, ...args)
      const results: CheckResult[] = checks.map((c, i) => {
        const b = 1 + i * 5
        return {
          allowed: reply[b] === '1',
          limit: c.limit,
          used: dec(reply[b + 1]!),
          remaining: dec(reply[b + 2]!),
          resetMs: dec(reply[b + 3]!),
          retryAfterMs: dec(reply[b + 4]!),
        }
      })
      return { allowed: reply[0] === '1', results }
    },
    async settle(ops, now) {
      if (ops.length === 0) return
      const args: string[] = []
      for (const op of ops) args.push(prefix + (op.type === 'release' ? op.key : op.check.key))
      args.push(enc(now), slack)
      for (const op of ops) args.push(...opArgs(op))
      await client.tollboothSettle(ops.length, ...args)
    },
    async held(key, now) {
      const raw = await client.get(prefix + key)
      if (raw === null || !raw.startsWith('h\n')) return 0
      const p = raw.split('\n')
      let total = dec(p[1]!)
      for (let k = 2; k + 2 < p.length; k += 3) {
        if (dec(p[k + 2]!) > now) total += dec(p[k + 1]!)
      }
      return total
    },
  }
}
