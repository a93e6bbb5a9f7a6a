/**
 * @module tollbooth/portal/ui/secret
 *
 * The one time a key's secret is shown: after create and after rotate. It sits in a
 * read-only field with a Copy button and the warning of `002_2f2523503321cfc2.txt`, and it
 * lives only in this panel's DOM: "Done", another view or a reload drops it for good. It is
 * never written to storage, a URL or the console.
 */

import { announce, h, uid } from './dom.js'
import type { CreatedJson } from './types.js'

/** The warning shown beside a new secret (`002_2f2523503321cfc2.txt`, "Copy the secret"). */
export const SECRET_WARNING =
  'After saving, the secret is shown once. Copy it immediately and store it in an environment variable. It cannot be retrieved again.'

async function copy(text: string, input: HTMLInputElement): Promise<boolean> {
  try {
    await navigator.clipboard.writeText(text)
    return true
  } catch {
    // No clipboard permission (or an old browser): select it for Ctrl+C / long-press.
    input.focus()
    input.select()
    return false
  }
}

/**
 * Shows `created`'s secret in `slot` (replacing an earlier one) and moves focus to it.
 *
 * @param how 'created' or 'rotated', for the heading
 */
export function showSecret(slot: HTMLElement, created: CreatedJson, how: 'created' | 'rotated') {
  const headingId = uid('secret')
  const input = h('input', {
    id: uid('secret-value'),
    class: 'mono',
    type: 'text',
    readonly: true,
    autocomplete: 'off',
    spellcheck: 'false',
    'data-secret': '',
  })
  input.value = created.key
  input.addEventListener('focus', () => input.select())
  const status = h('p', { class: 'hint', role: 'status' })
  const heading = h(
    'h2',
    { id: headingId, tabindex: -1 },
    how === 'created' ? `Key “${created.name}” created` : `Key “${created.name}” rotated`,
  )
  const panel = h(
    'section',
    { class: 'secret', 'aria-labelledby': headingId },
    heading,
    h('p', { class: 'warning' }, h('strong', null, 'Copy the secret now. '), SECRET_WARNING),
    h('label', { for: input.id }, `Secret of “${created.name}”`),
    h(
      'div',
      { class: 'secret-row' },
      input,
      h(
        'button',
        {
          type: 'button',
          class: 'primary',
          onclick: async () => {
            const ok = await copy(created.key, input)
            status.textContent = ok ? 'Copied to the clipboard.' : 'Selected: press Ctrl+C to copy.'
          },
        },
        'Copy',
        h('span', { class: 'sr-only' }, ' secret'),
      ),
    ),
    status,
    how === 'rotated'
      ? h(
          'p',
          null,
          'The old secret stopped working. Deploy this one wherever the old one was used.',
        )
      : null,
    h(
      'button',
      {
        type: 'button',
        onclick: () => {
          input.value = ''
          slot.replaceChildren()
          announce('Secret hidden. It cannot be shown again.')
        },
      },
      'Done, I stored it',
    ),
  )
  slot.replaceChildren(panel)
  heading.focus()
}
