/**
 * @module test/property/models
 *
 * Brute-force models of the limit algorithms, written for obviousness rather than speed:
 * every admitted unit is kept with its time, and the exact leaky bucket is kept in BigInt.
 * The property tests compare `src/limits/` and the stores against them.
 */

/** Rolling window: every counted unit with its time; the bucket rule recomputed from them. */
export class WindowModel {
  events: Array<{ t: number; cost: number }> = []
  constructor(
    readonly limit: number,
    readonly windowMs: number,
    readonly bucketMs: number,
  ) {}
  /** Units in the buckets from `floor(now/b) - ceil(W/b)` on (all of them when all-time). */
  used(now: number): number {
    if (this.windowMs === 0) return this.events.reduce((s, e) => s + e.cost, 0)
    const first = Math.floor(now / this.bucketMs) - Math.ceil(this.windowMs / this.bucketMs)
    let s = 0
    for (const e of this.events) if (Math.floor(e.t / this.bucketMs) >= first) s += e.cost
    return s
  }
  fits(now: number, cost: number): boolean {
    return this.used(now) + cost <= this.limit
  }
  add(now: number, cost: number): void {
    if (cost > 0) this.events.push({ t: now, cost })
  }
  /** Milliseconds until `cost` fits (0 when it fits now, Infinity when it never will). */
  wait(now: number, cost: number): number {
    if (this.fits(now, cost)) return 0
    if (this.windowMs === 0 || cost > this.limit) return Infinity
    const span = Math.ceil(this.windowMs / this.bucketMs)
    const edges = this.events
      .map((e) => (Math.floor(e.t / this.bucketMs) + span + 1) * this.bucketMs)
      .filter((t) => t > now)
      .sort((a, b) => a - b)
    for (const t of edges) if (this.fits(t, cost)) return t - now
    return Infinity
  }
}

/** The continuous leaky bucket, exact: the level is kept as `level * periodMs` in BigInt. */
export class GcraModel {
  scaled = 0n
  at = 0
  constructor(
    readonly limit: number,
    readonly periodMs: number,
  ) {}
  private drained(now: number): bigint {
    const d = this.scaled - BigInt(Math.max(0, now - this.at)) * BigInt(this.limit)
    return d > 0n ? d : 0n
  }
  fits(now: number, cost: number): boolean {
    const need = BigInt(cost > 0 ? cost : 1) * BigInt(this.periodMs)
    return this.drained(now) + need <= BigInt(this.limit) * BigInt(this.periodMs)
  }
  add(now: number, cost: number): void {
    this.scaled = this.drained(now) + BigInt(cost) * BigInt(this.periodMs)
    this.at = now
  }
  /** Milliseconds until `cost` fits (0 when it fits now). */
  wait(now: number, cost: number): number {
    const need = BigInt(cost > 0 ? cost : 1) * BigInt(this.periodMs)
    const excess = this.drained(now) + need - BigInt(this.limit) * BigInt(this.periodMs)
    if (excess <= 0n) return 0
    const l = BigInt(this.limit)
    return Number((excess + l - 1n) / l)
  }
}

/** Holds: a list of (id, amount, expiry) and a settled total. */
export class HoldModel {
  used = 0
  holds: Array<{ id: string; amount: number; expiresAt: number }> = []
  constructor(readonly limit: number) {}
  live(now: number) {
    return this.holds.filter((h) => h.expiresAt > now)
  }
  total(now: number): number {
    return this.used + this.live(now).reduce((s, h) => s + h.amount, 0)
  }
  fits(now: number, amount: number): boolean {
    return this.total(now) + amount <= this.limit
  }
  add(now: number, id: string, amount: number, ttlMs: number): void {
    this.holds = this.holds.filter((h) => h.id !== id)
    this.holds.push({ id, amount, expiresAt: now + ttlMs })
  }
  release(id: string, charge: number): void {
    this.holds = this.holds.filter((h) => h.id !== id)
    this.used += charge
  }
}
