/**
 * @module tollbooth/portal/ui/chart
 *
 * Usage per day, stacked by category, drawn with uPlot as bars: each category's bar is drawn
 * at the running total of the categories below it, tallest first, so the visible segments
 * add up to the day's total. The chart is an image to assistive technology (with a summary
 * as its label); the same figures are in a data table beside it, and in a legend of text.
 */

import uPlot from 'uplot'
import { h, table } from './dom.js'
import { num } from './format.js'
import type { DailyJson } from './types.js'

/** Okabe-Ito colours: told apart with every common colour vision deficiency. */
const COLORS = [
  '#0072B2',
  '#E69F00',
  '#009E73',
  '#CC79A7',
  '#56B4E9',
  '#D55E00',
  '#7F7F00',
  '#333333',
]
const DAY_S = 86_400

export type Metric = 'credits' | 'requests'

/** Series of `metric` per category, in the order of `daily.categories`. */
function seriesOf(daily: DailyJson, metric: Metric): number[][] {
  return daily.categories.map((cat) => daily.days.map((d) => d.byCategory[cat]?.[metric] ?? 0))
}

/**
 * Draws the chart into `host` and returns the element holding its data table and a way to
 * remove it. `host` must be in the document (uPlot measures it).
 */
export function usageChart(
  host: HTMLElement,
  daily: DailyJson,
  metric: Metric,
): { table: HTMLElement; destroy(): void } {
  const cats = daily.categories
  const xs = daily.days.map((d) => Date.parse(`${d.date}T00:00:00Z`) / 1000)
  const per = seriesOf(daily, metric)
  // Running totals: stacked[i] = per[0] + … + per[i].
  const stacked: number[][] = []
  for (const [i, s] of per.entries())
    stacked.push(s.map((v, j) => v + (i > 0 ? stacked[i - 1]![j]! : 0)))
  const order = cats.map((_, i) => i).reverse()
  const label = metric === 'credits' ? 'Credits' : 'Requests'
  const total = daily.days.reduce((n, d) => n + d[metric], 0)

  const figure = h('div', {
    class: 'chart',
    role: 'img',
    'aria-label': `${label} per day in ${daily.period.id}, stacked by category: ${num(total)} in total.`,
  })
  host.append(figure)
  const bars = uPlot.paths.bars!({ size: [0.7, 48] })
  const opts: uPlot.Options = {
    width: Math.max(260, figure.clientWidth || host.clientWidth || 600),
    height: 240,
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), 'Etc/UTC'),
    legend: { show: false },
    cursor: { drag: { x: false, y: false }, points: { show: false } },
    scales: {
      x: { time: true, range: (_u, min, max) => [min - DAY_S / 2, max + DAY_S / 2] },
      y: { range: (_u, _min, max) => [0, Math.max(1, Math.ceil(max * 1.1))] },
    },
    axes: [
      { stroke: '#333', grid: { stroke: '#e5e5e5' }, ticks: { stroke: '#999' } },
      {
        stroke: '#333',
        grid: { stroke: '#e5e5e5' },
        ticks: { stroke: '#999' },
        values: (_u, vals) => vals.map((v) => (Number.isInteger(v) ? num(v) : '')),
      },
    ],
    series: [
      {},
      ...order.map((i) => ({
        label: cats[i],
        fill: COLORS[i % COLORS.length],
        stroke: COLORS[i % COLORS.length],
        width: 0,
        paths: bars,
        points: { show: false },
      })),
    ],
  }
  const data: uPlot.AlignedData = [xs, ...order.map((i) => stacked[i]!)]
  const plot = new uPlot(opts, data, figure)
  const resize = new ResizeObserver(() => {
    const w = Math.max(260, figure.clientWidth)
    if (w !== plot.width) plot.setSize({ width: w, height: 240 })
  })
  resize.observe(figure)

  const swatch = (i: number) => {
    const s = h('span', { class: 'swatch', 'aria-hidden': 'true' })
    s.style.background = COLORS[i % COLORS.length]!
    return s
  }
  const legend = h(
    'ul',
    { class: 'legend', 'aria-label': 'Categories' },
    ...cats.map((c, i) => h('li', null, swatch(i), c)),
  )
  host.append(cats.length ? legend : h('p', { class: 'empty' }, 'No usage in this period yet.'))

  const tableHost = h(
    'details',
    { class: 'data-table' },
    h('summary', null, `${label} per day as a table`),
    table(
      `${label} per day by category`,
      ['Day', ...cats, 'Total'],
      daily.days.map((d, j) => [d.date, ...per.map((s) => num(s[j] ?? 0)), num(d[metric])]),
    ),
  )
  host.append(tableHost)
  return {
    table: tableHost,
    destroy() {
      resize.disconnect()
      plot.destroy()
    },
  }
}
