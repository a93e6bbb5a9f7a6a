/**
 * @module tollbooth/portal/ui/logs
 *
 * "API Keys → Logs" of `002_2f2523503321cfc2.txt`: a key's requests, newest first, each with
 * its endpoint (method and path), status (and the error code of a refused one), duration as
 * time to first byte beside the total, caller IP, credits and time, twenty to a page, with
 * Newer / Older buttons over the API's cursors.
 */

import { api, messageOf } from './api.js'
import { alertBox, clear, h, table, title } from './dom.js'
import { none, num, when } from './format.js'
import type { KeyJson, LogJson, Page } from './types.js'
import type { View } from './view.js'

const PAGE_SIZE = 20

/** Renders the log of the key `ctx.params[0]`. */
export const logsView: View = async (root, ctx) => {
  const id = ctx.params[0] ?? ''
  const key = await api<KeyJson>('GET', `keys/${encodeURIComponent(id)}`)
  const error = alertBox()
  const list = h('div', { class: 'list' })
  const position = h('p', { class: 'hint', 'aria-live': 'polite' })
  const newer = h('button', { type: 'button' }, 'Newer')
  const older = h('button', { type: 'button' }, 'Older')
  /** Cursor of each page seen so far; the last is the page shown. */
  const cursors: Array<string | null> = [null]
  let next: string | null = null

  const load = async () => {
    error.show(null)
    const q = new URLSearchParams({ limit: String(PAGE_SIZE) })
    const at = cursors[cursors.length - 1]
    if (at) q.set('cursor', at)
    try {
      const page = await api<Page<LogJson>>('GET', `keys/${encodeURIComponent(id)}/logs?${q}`)
      next = page.nextCursor
      clear(list)
      list.append(
        page.data.length === 0
          ? h('p', { class: 'empty' }, 'No requests yet.')
          : table(
              `Requests made with ${key.name}`,
              ['Time', 'Endpoint', 'Status', 'Duration (first byte)', 'Total', 'IP', 'Credits'],
              page.data.map((e) => [
                when(e.time),
                h('code', null, `${e.method} ${e.path}`),
                h(
                  'span',
                  { class: e.status >= 400 ? 'status bad' : 'status' },
                  e.code ? `${e.status} ${e.code}` : String(e.status),
                ),
                e.ttfbMs === null ? none(e.code ? 'refused' : 'unknown') : `${num(e.ttfbMs)} ms`,
                `${num(e.durationMs)} ms`,
                e.ip ?? none('unknown'),
                e.bypassed ? 'BYOK (0)' : num(e.units),
              ]),
            ),
      )
      newer.disabled = cursors.length === 1
      older.disabled = next === null
      position.textContent = `Page ${cursors.length}`
    } catch (err) {
      error.show(messageOf(err))
    }
  }
  newer.addEventListener('click', () => {
    if (cursors.length > 1) cursors.pop()
    void load()
  })
  older.addEventListener('click', () => {
    if (next === null) return
    cursors.push(next)
    void load()
  })

  root.append(
    h('p', null, h('a', { href: '#/keys' }, '← All keys')),
    title(`Request logs: ${key.name}`),
    h(
      'p',
      { class: 'lead' },
      h('code', null, key.prefix),
      key.category ? ` · ${key.category}` : '',
      key.active ? '' : ' · inactive',
    ),
    error.el,
    list,
    h(
      'div',
      { class: 'pager' },
      newer,
      older,
      h('button', { type: 'button', onclick: () => void load() }, 'Refresh'),
      position,
    ),
  )
  await load()
}
