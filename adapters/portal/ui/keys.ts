/**
 * @module tollbooth/portal/ui/keys
 *
 * The "API keys" view: the new-key form, the one-time secret panel, and the account's keys
 * (prefix, category, status, created, last used, expiry), filtered by category, each with
 * its actions as `002_2f2523503321cfc2.txt` describes them: logs, deactivate / reactivate,
 * rotate (a new secret, the old key revoked at once) and delete, which only a key that was
 * never used allows (the server says so otherwise, and the page adds the seed's advice).
 */

import { ApiError, api, messageOf } from './api.js'
import { alertBox, announce, button, clear, field, h, table, title } from './dom.js'
import { day, none, when } from './format.js'
import { keyForm } from './key-form.js'
import { showSecret } from './secret.js'
import type { CreatedJson, KeyJson, Page } from './types.js'
import type { View } from './view.js'

const ALL = ''

/** Active, Inactive or Expired, as the API would answer the key. */
function status(k: KeyJson): string {
  if (k.expiresAt !== null && Date.parse(k.expiresAt) <= Date.now()) return 'Expired'
  return k.active ? 'Active' : 'Inactive'
}

function quotaText(k: KeyJson): string | null {
  const q = k.limits.quotas
  if (!q) return null
  const parts = (['total', 'daily', 'weekly', 'monthly'] as const)
    .filter((w) => q[w] !== undefined)
    .map((w) => `${w} ${q[w]}`)
  return parts.length ? parts.join(', ') : null
}

/** Renders the keys view into `root`. */
export const keysView: View = async (root, ctx) => {
  const secretSlot = h('div', { class: 'secret-slot' })
  const error = alertBox()
  const filter = h('select', { name: 'filter' })
  const list = h('div', { class: 'list' })
  const more = h('button', { type: 'button', hidden: true }, 'Load more keys')
  let keys: KeyJson[] = []
  let cursor: string | null = null

  const load = async (reset: boolean) => {
    const q = new URLSearchParams({ limit: '100' })
    if (!reset && cursor) q.set('cursor', cursor)
    const page = await api<Page<KeyJson>>('GET', `keys?${q}`)
    keys = reset ? page.data : keys.concat(page.data)
    cursor = page.nextCursor
    more.hidden = !page.hasMore
    render()
  }

  const act = async (what: () => Promise<void>) => {
    error.show(null)
    try {
      await what()
    } catch (err) {
      error.show(messageOf(err))
    }
  }

  const row = (k: KeyJson) => [
    h('span', { class: 'alias' }, k.name),
    h('code', null, k.prefix),
    k.category ?? none(),
    h('span', { class: `badge ${status(k).toLowerCase()}` }, status(k)),
    when(k.createdAt),
    when(k.lastUsedAt),
    k.expiresAt === null ? none('no expiry') : day(k.expiresAt),
    quotaText(k) ?? none('no quotas'),
    h(
      'div',
      { class: 'row-actions' },
      h(
        'a',
        { href: `#/keys/${encodeURIComponent(k.id)}` },
        'Logs',
        h('span', { class: 'sr-only' }, ` of ${k.name}`),
      ),
      button(k.active ? 'Deactivate' : 'Reactivate', k.name, () =>
        act(async () => {
          await api('PATCH', `keys/${encodeURIComponent(k.id)}`, { active: !k.active })
          await load(true)
          announce(`Key ${k.name} ${k.active ? 'deactivated' : 'reactivated'}.`)
        }),
      ),
      button('Rotate', k.name, () =>
        act(async () => {
          const ok = window.confirm(
            `Rotate “${k.name}”? A new secret replaces it and the old secret stops working at once.`,
          )
          if (!ok) return
          const created = await api<CreatedJson>(
            'POST',
            `keys/${encodeURIComponent(k.id)}/rotate`,
            {},
          )
          showSecret(secretSlot, created, 'rotated')
          await load(true)
        }),
      ),
      button(
        'Delete',
        k.name,
        () =>
          act(async () => {
            if (
              !window.confirm(
                `Delete “${k.name}” for good? Only a key that was never used can be deleted.`,
              )
            )
              return
            try {
              await api('DELETE', `keys/${encodeURIComponent(k.id)}?permanent=true`)
            } catch (err) {
              if (err instanceof ApiError && err.status === 409)
                throw new Error(
                  `${err.message}. Prefer deactivation over deletion: the history is retained for billing and auditing.`,
                )
              throw err
            }
            await load(true)
            announce(`Key ${k.name} deleted.`)
          }),
        'danger',
      ),
    ),
  ]

  function render() {
    const chosen = filter.value
    const cats = [...new Set(keys.map((k) => k.category ?? ''))].filter(Boolean).sort()
    filter.replaceChildren(
      h('option', { value: ALL }, 'All categories'),
      ...cats.map((c) => h('option', { value: c }, c)),
    )
    filter.value = cats.includes(chosen) ? chosen : ALL
    const shown = filter.value === ALL ? keys : keys.filter((k) => k.category === filter.value)
    clear(list)
    if (shown.length === 0) {
      list.append(
        h(
          'p',
          { class: 'empty' },
          keys.length ? 'No key in this category.' : 'No keys yet: create one above.',
        ),
      )
      return
    }
    list.append(
      table(
        'API keys',
        [
          'Alias',
          'Prefix',
          'Category',
          'Status',
          'Created',
          'Last used',
          'Expires',
          'Quotas',
          'Actions',
        ],
        shown.map(row),
      ),
    )
  }
  filter.addEventListener('change', render)
  more.addEventListener('click', () => act(() => load(false)))

  const newKeyId = 'new-key-heading'
  const listId = 'key-list-heading'
  root.append(
    title('API keys'),
    h('p', { class: 'lead' }, 'Create, configure and manage the API keys of your account.'),
    secretSlot,
    h(
      'section',
      { 'aria-labelledby': newKeyId },
      h('h2', { id: newKeyId }, 'New key'),
      keyForm(ctx.config.categories, async (created) => {
        showSecret(secretSlot, created, 'created')
        await load(true)
      }),
    ),
    h(
      'section',
      { 'aria-labelledby': listId },
      h('h2', { id: listId }, 'Your keys'),
      field('Filter by category', filter),
      error.el,
      list,
      more,
    ),
  )
  await load(true)
}
