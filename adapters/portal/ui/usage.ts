/**
 * @module tollbooth/portal/ui/usage
 *
 * The "Usage" view: for the current billing period or any of the eleven before it, the
 * credits used, the limit and what remains, the request count, the breakdown by category
 * (`GET usage`), and the chart of usage per day stacked by category (`GET usage/daily`),
 * in credits or in requests. Both break down by the requests' usage category or, chosen in
 * "Group by", by the category of the keys that made them (`groupBy=keyCategory`).
 */

import { api, messageOf } from './api.js'
import { type Metric, usageChart } from './chart.js'
import { alertBox, clear, field, h, table, title, uid } from './dom.js'
import { day, monthName, num } from './format.js'
import type { DailyJson, UsageJson } from './types.js'
import type { View } from './view.js'

/** The current month and the eleven before it, as `YYYY-MM` (UTC, like billing periods). */
function months(): string[] {
  const now = new Date()
  const out: string[] = []
  for (let i = 0; i < 12; i++) {
    const d = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - i, 1))
    out.push(`${d.getUTCFullYear()}-${String(d.getUTCMonth() + 1).padStart(2, '0')}`)
  }
  return out
}

const stat = (label: string, value: string | Node) =>
  h('div', { class: 'stat' }, h('dt', null, label), h('dd', null, value))

/** Renders the usage view into `root`. */
export const usageView: View = async (root) => {
  const list = months()
  const period = h(
    'select',
    { name: 'period' },
    ...list.map((m, i) =>
      h(
        'option',
        { value: i === 0 ? '' : m },
        i === 0 ? `Current period (${monthName(m)})` : monthName(m),
      ),
    ),
  )
  const groupBy = h(
    'select',
    { name: 'groupBy' },
    h('option', { value: 'category' }, 'Usage category'),
    h('option', { value: 'keyCategory' }, 'Key category'),
  )
  const metricName = uid('metric')
  const metricInputs = (['credits', 'requests'] as const).map((m, i) =>
    h('input', {
      type: 'radio',
      name: metricName,
      value: m,
      id: `${metricName}-${m}`,
      checked: i === 0,
    }),
  )
  const error = alertBox()
  const summary = h('div', { class: 'summary' })
  const breakdown = h('div', { class: 'list' })
  const chartHost = h('div', { class: 'chart-host' })
  let chart: { destroy(): void } | null = null
  let daily: DailyJson | null = null

  const metric = (): Metric =>
    (metricInputs.find((i) => i.checked)?.value as Metric | undefined) ?? 'credits'

  const draw = () => {
    chart?.destroy()
    clear(chartHost)
    if (daily) chart = usageChart(chartHost, daily, metric())
  }

  const load = async () => {
    error.show(null)
    const params = new URLSearchParams()
    if (period.value) params.set('month', period.value)
    if (groupBy.value === 'keyCategory') params.set('groupBy', 'keyCategory')
    const q = params.toString() ? `?${params}` : ''
    const byKey = groupBy.value === 'keyCategory'
    try {
      const [usage, days] = await Promise.all([
        api<UsageJson>('GET', `usage${q}`),
        api<DailyJson>('GET', `usage/daily${q}`),
      ])
      daily = days
      const limit = usage.credits.limit
      clear(summary)
      summary.append(
        h(
          'dl',
          { class: 'stats' },
          stat('Credits used', num(usage.credits.used)),
          stat('Credit limit', limit === null ? 'Unlimited' : num(limit)),
          // What the limit holds beyond the plan's credits (a past month's as it was closed).
          usage.credits.carryover === null
            ? null
            : stat('Carried over', num(usage.credits.carryover)),
          usage.credits.balance === null
            ? null
            : stat('Prepaid balance', num(usage.credits.balance)),
          stat(
            'Remaining',
            usage.credits.remaining === null ? 'Unlimited' : num(usage.credits.remaining),
          ),
          stat('Requests', num(usage.requestCount)),
          stat(period.value ? 'Period ended' : 'Resets on', h('span', null, day(usage.resetDate))),
        ),
      )
      const cats = Object.keys(usage.requests).sort()
      clear(breakdown)
      breakdown.append(
        cats.length === 0
          ? h('p', { class: 'empty' }, 'No requests in this period.')
          : table(
              byKey ? 'Usage by key category' : 'Usage by category',
              [byKey ? 'Key category' : 'Category', 'Requests', 'Credits'],
              cats.map((c) => [c, num(usage.requests[c] ?? 0), num(usage.breakdown[c] ?? 0)]),
            ),
      )
      draw()
    } catch (err) {
      error.show(messageOf(err))
    }
  }
  period.addEventListener('change', () => void load())
  groupBy.addEventListener('change', () => void load())
  for (const input of metricInputs) input.addEventListener('change', draw)

  const byCat = uid('by-category')
  const perDay = uid('per-day')
  root.append(
    title('Usage'),
    h(
      'p',
      { class: 'lead' },
      'Credits and requests of your account, by billing period (calendar months, UTC).',
    ),
    field('Billing period', period),
    field(
      'Group by',
      groupBy,
      'Usage category: what the requests were for. Key category: the category of the keys that made them, as it was then; keys without one, and requests before key categories were recorded, count as uncategorized.',
    ),
    error.el,
    summary,
    h('section', { 'aria-labelledby': byCat }, h('h2', { id: byCat }, 'By category'), breakdown),
    h(
      'section',
      { 'aria-labelledby': perDay },
      h('h2', { id: perDay }, 'Usage per day'),
      h(
        'fieldset',
        { class: 'inline' },
        h('legend', null, 'Show'),
        ...metricInputs.flatMap((input) => [
          h(
            'label',
            { for: input.id, class: 'choice' },
            input,
            input.value === 'credits' ? 'Credits' : 'Requests',
          ),
        ]),
      ),
      chartHost,
    ),
  )
  await load()
}
