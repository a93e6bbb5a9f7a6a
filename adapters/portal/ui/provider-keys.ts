/**
 * @module tollbooth/portal/ui/provider-keys
 *
 * The "Provider keys" view (BYOK, `001_da102ff7c76ebfc9.txt`): store a provider's API key so
 * requests use it automatically, list the stored keys masked (`••••` and the last four
 * characters: a stored key is never shown again), verify one with the provider, delete one.
 * The key typed in is cleared from the form as soon as it is sent.
 */

import { api, messageOf } from './api.js'
import { alertBox, announce, button, clear, field, h, table, title, uid } from './dom.js'
import { none, when } from './format.js'
import type { ProviderKeyJson } from './types.js'
import type { View } from './view.js'

/** Renders the provider keys view into `root`. */
export const providerKeysView: View = async (root, ctx) => {
  const listId = uid('providers')
  const provider = h('input', {
    name: 'provider',
    required: true,
    maxlength: 64,
    list: listId,
    autocomplete: 'off',
    spellcheck: 'false',
  })
  const secret = h('input', {
    name: 'apiKey',
    type: 'password',
    required: true,
    minlength: 8,
    maxlength: 4096,
    autocomplete: 'off',
    spellcheck: 'false',
  })
  const formError = alertBox()
  const error = alertBox()
  const list = h('div', { class: 'list' })
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Store key')

  const act = async (what: () => Promise<void>) => {
    error.show(null)
    try {
      await what()
    } catch (err) {
      error.show(messageOf(err))
    }
  }

  const load = async () => {
    const { data } = await api<{ data: ProviderKeyJson[] }>('GET', 'provider-keys')
    clear(list)
    list.append(
      data.length === 0
        ? h('p', { class: 'empty' }, 'No provider keys stored.')
        : table(
            'Stored provider keys',
            ['Provider', 'Key', 'Stored', 'Verified', 'Actions'],
            data.map((p) => [
              p.provider,
              h('code', { 'data-masked': '' }, p.masked),
              when(p.createdAt),
              p.verifiedAt === null ? none('not verified') : when(p.verifiedAt),
              h(
                'div',
                { class: 'row-actions' },
                button('Verify', p.provider, () =>
                  act(async () => {
                    const r = await api<{ valid: boolean }>(
                      'POST',
                      `provider-keys/${encodeURIComponent(p.provider)}/verify`,
                      {},
                    )
                    announce(
                      r.valid
                        ? `The ${p.provider} key works.`
                        : `The ${p.provider} key was refused by ${p.provider}.`,
                    )
                    await load()
                    if (!r.valid) error.show(`The ${p.provider} key was refused by ${p.provider}.`)
                  }),
                ),
                button(
                  'Delete',
                  p.provider,
                  () =>
                    act(async () => {
                      if (!window.confirm(`Delete the stored ${p.provider} key?`)) return
                      await api('DELETE', `provider-keys/${encodeURIComponent(p.provider)}`)
                      await load()
                      announce(`The ${p.provider} key was deleted.`)
                    }),
                  'danger',
                ),
              ),
            ]),
          ),
    )
  }

  const form = h(
    'form',
    { class: 'provider-form', 'aria-label': 'Store a provider key' },
    h(
      'div',
      { class: 'row' },
      field('Provider', provider, 'e.g. openai, elevenlabs'),
      field('API key', secret),
    ),
    h('datalist', { id: listId }, ...ctx.config.providers.map((p) => h('option', { value: p }))),
    formError.el,
    h('div', { class: 'actions' }, submit),
  )
  form.addEventListener('submit', async (event) => {
    event.preventDefault()
    formError.show(null)
    const body = { provider: provider.value.trim().toLowerCase(), apiKey: secret.value }
    secret.value = ''
    submit.disabled = true
    try {
      await api('POST', 'provider-keys', body)
      form.reset()
      await load()
      announce(`The ${body.provider} key was stored.`)
    } catch (err) {
      formError.show(messageOf(err, { provider: 'Provider', apiKey: 'API key' }))
    } finally {
      submit.disabled = false
    }
  })

  const formHeading = uid('h')
  const listHeading = uid('h')
  root.append(
    title('Provider keys'),
    h(
      'p',
      { class: 'lead' },
      'Store your own provider keys (bring your own key): requests that need a provider then use your key for it. A stored key is never shown again, only its last four characters.',
    ),
    h(
      'section',
      { 'aria-labelledby': formHeading },
      h('h2', { id: formHeading }, 'Store a key'),
      form,
    ),
    h(
      'section',
      { 'aria-labelledby': listHeading },
      h('h2', { id: listHeading }, 'Stored keys'),
      error.el,
      list,
    ),
  )
  await load()
}
