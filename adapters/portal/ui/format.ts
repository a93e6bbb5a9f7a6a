/**
 * @module tollbooth/portal/ui/format
 *
 * How the page writes times and numbers: in the reader's locale, inside `<time>` elements
 * that keep the exact ISO time in `datetime`, and a dash for "never" or "none".
 */

import { type Child, h } from './dom.js'

const dateTimeFormat = new Intl.DateTimeFormat(undefined, {
  dateStyle: 'medium',
  timeStyle: 'short',
})
const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeZone: 'UTC' })
const numberFormat = new Intl.NumberFormat()

/** An em dash with a spoken label, for an empty cell. */
export const none = (spoken = 'none'): HTMLElement =>
  h(
    'span',
    null,
    h('span', { 'aria-hidden': 'true' }, '—'),
    h('span', { class: 'sr-only' }, spoken),
  )

/** A date and time, or `spoken` when null. */
export function when(iso: string | null, spoken = 'never'): Child {
  if (iso === null) return none(spoken)
  return h('time', { datetime: iso }, dateTimeFormat.format(new Date(iso)))
}

/** A calendar day (UTC), or `spoken` when null. */
export function day(iso: string | null, spoken = 'none'): Child {
  if (iso === null) return none(spoken)
  return h('time', { datetime: iso }, dateFormat.format(new Date(iso)))
}

/** A number with the locale's grouping. */
export const num = (n: number): string => numberFormat.format(n)

/** `YYYY-MM` as "November 2026". */
export function monthName(id: string): string {
  const [y, m] = id.split('-').map(Number)
  return new Intl.DateTimeFormat(undefined, {
    month: 'long',
    year: 'numeric',
    timeZone: 'UTC',
  }).format(new Date(Date.UTC(y!, m! - 1, 1)))
}
