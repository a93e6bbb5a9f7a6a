/**
 * @module tollbooth/portal/ui/key-form
 *
 * The "New key" form of `002_2f2523503321cfc2.txt`: an alias (unique per account), a category
 * (production, development, staging, or any free-text label), optional rolling quotas
 * (total, daily, weekly, monthly; blank means no cap) and an optional expiry date. It posts
 * to `keys` and hands the answer, with its one-time secret, to `onCreated`.
 */

import { ApiError, api, messageOf } from './api.js'
import { alertBox, field, h } from './dom.js'
import type { CreatedJson, Quotas } from './types.js'

const OTHER = '__other__'
const QUOTAS: Array<[keyof Quotas, string, string]> = [
  ['total', 'Total', 'All-time: the key is blocked for good once reached.'],
  ['daily', 'Daily', 'Last 24 hours, rolling.'],
  ['weekly', 'Weekly', 'Last 7 days, rolling.'],
  ['monthly', 'Monthly', 'Last 30 days, rolling.'],
]

/** Names of the API's fields as the form labels them, for error messages. */
export const FIELD_LABELS: Record<string, string> = {
  name: 'Alias',
  category: 'Category',
  expiresAt: 'Expires',
  'limits.quotas.total': 'Total quota',
  'limits.quotas.daily': 'Daily quota',
  'limits.quotas.weekly': 'Weekly quota',
  'limits.quotas.monthly': 'Monthly quota',
}

const today = () => new Date().toISOString().slice(0, 10)

/** Builds the form. */
export function keyForm(
  categories: string[],
  onCreated: (created: CreatedJson) => Promise<void>,
): HTMLFormElement {
  const alias = h('input', { name: 'alias', required: true, maxlength: 100, autocomplete: 'off' })
  const category = h(
    'select',
    { name: 'category' },
    ...categories.map((c) => h('option', { value: c }, c)),
    h('option', { value: OTHER }, 'Other (type a label)…'),
  )
  const custom = h('input', { name: 'customCategory', maxlength: 64, autocomplete: 'off' })
  const customField = field('Custom category', custom, 'Any label, e.g. sandbox or partner-acme.')
  customField.hidden = true
  category.addEventListener('change', () => {
    customField.hidden = category.value !== OTHER
    custom.required = category.value === OTHER
  })
  const quota = new Map<keyof Quotas, HTMLInputElement>()
  const quotaFields = QUOTAS.map(([k, label, hint]) => {
    const input = h('input', {
      name: `quota-${k}`,
      type: 'number',
      min: 1,
      step: 1,
      inputmode: 'numeric',
    })
    quota.set(k, input)
    return field(`${label} requests`, input, hint)
  })
  const expires = h('input', { name: 'expires', type: 'date', min: today() })
  const error = alertBox()
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Create key')

  const form = h(
    'form',
    { class: 'key-form', 'aria-label': 'New key' },
    field('Alias', alias, 'A unique label for this key in your account.'),
    h('div', { class: 'row' }, field('Category', category), customField),
    h(
      'fieldset',
      null,
      h('legend', null, 'Request quotas (optional)'),
      h('p', { class: 'hint' }, 'Leave a field blank for no cap on that window.'),
      h('div', { class: 'quotas' }, ...quotaFields),
    ),
    field(
      'Expires (optional)',
      expires,
      'The key stops working at the end of this day (UTC). Leave blank for no expiry.',
    ),
    error.el,
    h('div', { class: 'actions' }, submit),
  )

  form.addEventListener('submit', async (event) => {
    event.preventDefault()
    error.show(null)
    const quotas: Quotas = {}
    for (const [k, input] of quota) if (input.value !== '') quotas[k] = Number(input.value)
    const body: Record<string, unknown> = {
      name: alias.value.trim(),
      category: category.value === OTHER ? custom.value.trim() : category.value,
    }
    if (Object.keys(quotas).length > 0) body['limits'] = { quotas }
    if (expires.value) body['expiresAt'] = `${expires.value}T23:59:59.999Z`
    submit.disabled = true
    try {
      const created = await api<CreatedJson>('POST', 'keys', body)
      form.reset()
      customField.hidden = true
      await onCreated(created)
    } catch (err) {
      error.show(messageOf(err, FIELD_LABELS))
      if (err instanceof ApiError && err.issues.some((i) => i.path === 'name')) alias.focus()
    } finally {
      submit.disabled = false
    }
  })
  return form
}
