/**
 * @module billing/meter-heal
 *
 * Makes metered overage reach the provider without an operator, after a crash, a restart or
 * a meter out-box past its bound. The out-box's queue is in the process; what a dead process
 * held is still in `tb.storage.usage` (`billing/reconcile` finds it), but only per account,
 * and tollbooth keeps no list of accounts. This module keeps that list, small and durable:
 *
 * - **The journal.** One record in the account store (id {@link METER_JOURNAL_ID}, which no
 *   account id can be), whose metadata maps each account with overage not yet known
 *   delivered to `{ from, at }`: the earliest time of such overage, and when it was last
 *   noted. It is changed by compare-and-set on the record's `periodStart` (a version), so
 *   instances never lose each other's notes. A process notes an account as its overage is
 *   written, ahead of the write (`noteAhead`) and again after it (`note`), once per
 *   {@link HEAL_SETTLE_MS}/2 for recent events.
 * - **Healing.** At start and every `intervalMs`, `heal()` takes the noted accounts (at most
 *   {@link HEAL_ACCOUNTS} a pass: those it healed least recently, then the oldest; one
 *   instance at a time each, by a marker), reconciles each from its `from` to now, queues
 *   what is missing again and flushes. Once everything up to now is delivered, the account
 *   leaves the journal (or its `from` moves up, when noted within the settle time), unless
 *   it was noted again meanwhile (the compare-and-set sees it).
 *
 * Never twice: a send is skipped for an event with a delivered marker, and Stripe answers a
 * repeated identifier as a duplicate for at least 24 hours. Healing reaches back 34 days
 * (Stripe takes 35) where the markers are durable (`counters.durable`), else 23 hours, so a
 * store that lost its markers cannot have old overage sent again.
 */

import { endsWithin } from '../context.js'
import { blankAccount } from '../metering/accounts.js'
import type { Period } from '../metering/periods.js'
import { reportClosedOnce } from '../storage/closed.js'
import type { AccountRecord, UsageEvent } from '../storage/types.js'
import type { Tollbooth } from '../tollbooth.js'
import { createMarkers, markerKey } from './markers.js'
import type { MeterOutbox } from './meter-outbox.js'
import { reconcilePeriod } from './reconcile.js'

/** The journal's record in the account store (a `/`: never an account id). */
export const METER_JOURNAL_ID = 'tollbooth/meter-journal'
/** How long a noted account is left to its own process before healing may clear it. */
export const HEAL_SETTLE_MS = 10 * 60_000
/** Accounts healed per pass, the oldest noted first; the rest wait for the next pass. */
export const HEAL_ACCOUNTS = 100
const DAY = 86_400_000
/** How far back healing reaches with durable delivered markers (Stripe takes 35 days). */
const DURABLE_REACH_MS = 34 * DAY
/** Without them: within Stripe's deduplication of meter identifiers (at least 24 hours). */
const DEDUP_REACH_MS = 23 * 3_600_000
const CAS_TRIES = 20
/** How long one instance holds an account's healing (a crashed holder's lapses then). */
const CLAIM_MS = 5 * 60_000

interface Entry {
  /** Earliest time of the account's overage not known delivered (ms). */
  from: number
  /** When it was last noted (ms). */
  at: number
}
type Journal = Record<string, Entry>

/** What one `heal()` did. */
export interface MeterHealResult {
  /** Accounts reconciled. */
  accounts: number
  /** Overage events queued again. */
  redelivered: number
  /** Accounts that left the journal, everything delivered. */
  cleared: number
  /** Accounts left in the journal (not delivered yet, noted too recently, or past the pass). */
  left: number
}

export interface MeterHealer {
  /**
   * Notes the accounts of `events` with overage in the journal before their usage is
   * written (`tb.onUsageWriting`), so a process that dies right after the write loses
   * nothing; resolves once written, never rejects (a failure is reported, and noted again).
   */
  noteAhead(events: ReadonlyArray<UsageEvent>): Promise<void>
  /** The same once written (`tb.onUsageFlushed`): in the background, only what is not noted. */
  note(events: ReadonlyArray<UsageEvent>): void
  /** One healing pass (a pass already running is joined). */
  heal(): Promise<MeterHealResult>
  /**
   * Stops the timer, waits for a running pass (to the end of its account under way), writes
   * pending notes; each wait at most `storageTimeoutMs` (1 s at least), then reported.
   */
  close(): Promise<void>
}

/**
 * The journal of a record; an entry that is not `{ from, at }` in numbers is dropped. Keyed
 * by account ids, which may be `__proto__` or `constructor`: an object with no prototype, so
 * every id is an own entry (a plain object took `__proto__` as its prototype and read
 * `constructor` as `Object`, and those accounts' overage was never healed).
 */
const entriesOf = (r: AccountRecord | null): Journal => {
  const d = r?.metadata?.['dirty']
  const j: Journal = Object.create(null)
  if (!d || typeof d !== 'object') return j
  for (const [a, e] of Object.entries(d as Record<string, Partial<Entry> | null>))
    if (Number.isFinite(e?.from) && Number.isFinite(e?.at)) j[a] = { from: e!.from!, at: e!.at! }
  return j
}

/**
 * @param options.intervalMs time between passes after the first (at creation); 0: no pass
 *   runs by itself
 */
export function createMeterHealer(
  tb: Tollbooth,
  outbox: MeterOutbox,
  options: { intervalMs: number },
  report: (err: unknown) => void,
): MeterHealer {
  const onError = reportClosedOnce(tb.storage, report)
  const storage = tb.storage
  const now = () => tb.options.clock?.now() ?? Date.now()
  const reach = storage.counters.durable ? DURABLE_REACH_MS : DEDUP_REACH_MS
  /** Account -> when this process last wrote its note, and the `from` it wrote. */
  const noted = new Map<string, Entry>()
  /** Account -> when this process last healed it: the least recent go first. */
  const tried = new Map<string, number>()
  const markers = createMarkers(storage, now)
  /** Account -> earliest overage time, not written yet. */
  let waiting = new Map<string, number>()
  let writing: Promise<void> | null = null
  let healing: Promise<MeterHealResult> | null = null
  let timer: ReturnType<typeof setInterval> | null = null
  let first = true
  /** Set by close(): a running pass stops after the account under way. */
  let closing = false

  /** Applies `fn` to the journal by compare-and-set; `fn` returns false for no change. */
  const change = async (fn: (j: Journal) => boolean): Promise<boolean> => {
    for (let i = 0; i < CAS_TRIES; i++) {
      const rec =
        (await storage.accounts.get(METER_JOURNAL_ID)) ??
        // `periodStart` is the journal's version (compare-and-set), from 0.
        (await storage.accounts.ensure(blankAccount(METER_JOURNAL_ID, 0)))
      const j = entriesOf(rec)
      if (!fn(j)) return false
      const v = rec.periodStart
      const w = await storage.accounts.update(
        METER_JOURNAL_ID,
        { metadata: { dirty: j }, periodStart: v + 1 },
        v,
      )
      if (w) return true
      await new Promise((r) => setTimeout(r, 5 + Math.random() * 20 * (i + 1)))
    }
    throw new Error(`meter journal: ${CAS_TRIES} concurrent writes in a row, retried later`)
  }

  const writeNotes = (): Promise<void> => {
    if (writing) return writing.then(writeNotes)
    if (waiting.size === 0) return Promise.resolve()
    const batch = waiting
    waiting = new Map()
    const at = now()
    writing = change((j) => {
      for (const [a, from] of batch) {
        const cur = j[a]
        j[a] = { from: cur ? Math.min(cur.from, from) : from, at }
      }
      return true
    })
      .then(() => {
        for (const [a, from] of batch) noted.set(a, { from, at })
      })
      .catch((err) => {
        // Kept for the next note or pass.
        for (const [a, from] of batch) waiting.set(a, Math.min(waiting.get(a) ?? from, from))
        onError(err)
      })
      .finally(() => {
        writing = null
      })
    return writing
  }

  /** Adds the accounts of `events` not noted lately to `waiting`; true when any was. */
  const collect = (events: ReadonlyArray<UsageEvent>) => {
    const t = now()
    let added = false
    for (const e of events) {
      if (!(e.overage > 0) || e.bypassed) continue
      // Noted lately and recent: the journal holds it until a pass after HEAL_SETTLE_MS,
      // which sees this event recorded (see `advance`). Not one older than the note's `from`
      // (a long request's event carries its start): healing reaches back to `from` only.
      const last = noted.get(e.accountId)
      if (
        last !== undefined &&
        t - last.at < HEAL_SETTLE_MS / 2 &&
        e.time >= t - HEAL_SETTLE_MS / 2 &&
        e.time >= last.from
      )
        continue
      const w = waiting.get(e.accountId)
      if (w === undefined || e.time < w) waiting.set(e.accountId, e.time)
      added = true
    }
    return added
  }

  /**
   * Everything of `accountId` up to the pass's start is delivered: it leaves the journal when
   * last noted before `cut` (each note's events were recorded before the pass looked);
   * else its `from` moves to `cut` (events after `cut` may not be noted yet). Unless noted
   * meanwhile: then the next pass decides.
   */
  const advance = (accountId: string, seen: Entry, cut: number) =>
    change((j) => {
      const cur = j[accountId]
      if (!cur || cur.from !== seen.from || cur.at !== seen.at) return false
      if (cur.at < cut) delete j[accountId]
      else if (cur.from < cut) j[accountId] = { from: cut, at: cur.at }
      else return false
      return true
    })

  /**
   * Reconciles one account from its `from` to `t`, sends what is missing (counted in `r`),
   * and moves it in the journal when all of it is delivered.
   */
  const healOne = async (
    accountId: string,
    seen: Entry,
    t: number,
    cut: number,
    r: MeterHealResult,
  ) => {
    const period: Period = { id: 'heal', start: Math.max(seen.from, t - reach), end: t + 1 }
    // What the provider refused for good is not sent again by every pass (an unknown meter
    // would cost a call per event each time): `reconcile` reports it.
    const undelivered = async () => {
      const { result, lost } = await reconcilePeriod(tb, outbox, accountId, period)
      const kept: UsageEvent[] = []
      for (let i = 0; i < lost.length; i += 16) {
        const part = lost.slice(i, i + 16)
        const refused = await Promise.all(part.map((e) => outbox.isRejected(e)))
        kept.push(...part.filter((_, j) => !refused[j]))
      }
      return { pending: result.pending.events, lost: kept }
    }
    const first = await undelivered()
    if (first.lost.length > 0) {
      outbox.enqueue(first.lost)
      r.redelivered += first.lost.length
    }
    let clean = first.lost.length === 0 && first.pending === 0
    if (!clean) {
      await outbox.flush()
      const again = await undelivered()
      clean = again.lost.length === 0 && again.pending === 0
    }
    if (clean && (await advance(accountId, seen, cut)) && seen.at < cut) r.cleared++
  }

  const pass = async (): Promise<MeterHealResult> => {
    const r: MeterHealResult = { accounts: 0, redelivered: 0, cleared: 0, left: 0 }
    await tb.flush() // recorded usage noted first
    await writeNotes()
    const all = first
    first = false
    const journal = entriesOf(await storage.accounts.get(METER_JOURNAL_ID))
    const t = now()
    const cut = t - HEAL_SETTLE_MS
    for (const [a, n] of noted) if (t - n.at >= HEAL_SETTLE_MS / 2) noted.delete(a)
    for (const a of tried.keys()) if (!journal[a]) tried.delete(a)
    const due = Object.entries(journal)
      // The first pass takes every account (a process that died a moment ago); later ones
      // leave recent overage to the process that noted it. Accounts this process healed
      // last go last, so some that never clear (no customer yet) hold up no other.
      .filter(([, e]) => all || e.from < cut)
      .sort((a, b) => (tried.get(a[0]) ?? 0) - (tried.get(b[0]) ?? 0) || a[1].from - b[1].from)
    for (const [accountId, seen] of due.slice(0, HEAL_ACCOUNTS)) {
      // close() waits for one account, not the pass (100 accounts, each up to a send's
      // timeout while the provider does not answer); the next process heals the rest.
      if (closing) break
      tried.set(accountId, t)
      // Each account on its own: one whose healing fails (a store error on its usage, its
      // claim) is reported and left in the journal for the next pass; the others go on.
      try {
        // One instance at a time heals an account (two would both send what is missing).
        const claim = markerKey(accountId, 'meter-heal', 'pass')
        if (!(await markers.set(claim, CLAIM_MS))) continue
        r.accounts++
        try {
          await healOne(accountId, seen, t, cut, r)
        } finally {
          await markers.clear(claim).catch(onError)
        }
      } catch (err) {
        onError(err)
      }
    }
    r.left = Object.keys(journal).length - r.cleared
    return r
  }

  const heal = (): Promise<MeterHealResult> => {
    if (!healing)
      healing = pass().finally(() => {
        healing = null
      })
    return healing
  }

  if (options.intervalMs > 0) {
    void heal().catch(onError)
    timer = setInterval(() => heal().catch(onError), options.intervalMs)
    ;(timer as { unref?: () => void }).unref?.()
  }

  return {
    noteAhead: (events) => (collect(events) ? writeNotes() : Promise.resolve()),
    note(events) {
      if (collect(events)) void writeNotes()
    },
    heal,
    async close() {
      if (timer) clearInterval(timer)
      timer = null
      closing = true
      // Each wait is bounded (a store that does not answer, the journal's table locked, held
      // close() for as long): a pass then ends by itself, the notes are written when the
      // store answers, or by the next process's pass at start, which takes every account.
      const bound = Math.max(tb.options.storageTimeoutMs, 1_000)
      const ended = async (p: Promise<unknown> | null | undefined, what: string) => {
        if (p && !(await endsWithin(p, bound)))
          onError(new Error(`meter healing: close() did not wait past ${bound} ms for ${what}`))
      }
      await ended(healing, 'the pass under way')
      await ended(writeNotes(), 'the notes to the journal')
    },
  }
}
