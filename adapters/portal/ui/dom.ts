/**
 * @module tollbooth/portal/ui/dom
 *
 * The portal's whole "framework": `h()` builds an element from a tag, attributes and
 * children (text is always set as text, never parsed as HTML, so nothing a server or a user
 * typed can become markup), `field()` pairs a control with its label and hint, and a few
 * helpers for the live region, alerts and buttons that name their row for screen readers.
 */

/** What `h()` takes as children. `null`, `undefined` and `false` are skipped. */
export type Child = Node | string | number | null | undefined | false

type AttrValue = string | number | boolean | null | undefined | ((event: Event) => void)

/** Creates `<tag>` with attributes (`on…` functions become listeners) and children. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs?: Record<string, AttrValue> | null,
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag)
  if (attrs) {
    for (const [name, value] of Object.entries(attrs)) {
      if (value === null || value === undefined || value === false) continue
      if (typeof value === 'function') el.addEventListener(name.slice(2), value)
      else if (name === 'class') el.className = String(value)
      else el.setAttribute(name, value === true ? '' : String(value))
    }
  }
  append(el, children)
  return el
}

/** Appends children (strings as text nodes). */
export function append(el: Node, children: Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue
    el.appendChild(typeof c === 'object' ? c : document.createTextNode(String(c)))
  }
}

/** Removes every child of `el`. */
export function clear(el: Node): void {
  while (el.firstChild) el.removeChild(el.firstChild)
}

let seq = 0
/** A unique element id. */
export const uid = (prefix: string): string => `${prefix}-${++seq}`

type Control = HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement

/** A labelled form field, with an optional hint tied to the control by `aria-describedby`. */
export function field(label: string, control: Control, hint?: string): HTMLDivElement {
  if (!control.id) control.id = uid('f')
  const wrap = h('div', { class: 'field' }, h('label', { for: control.id }, label), control)
  if (hint) {
    const id = `${control.id}-hint`
    wrap.append(h('p', { class: 'hint', id }, hint))
    control.setAttribute('aria-describedby', id)
  }
  return wrap
}

/** A heading that views focus when they open, so a screen reader announces the new view. */
export const title = (text: string): HTMLHeadingElement => h('h1', { tabindex: -1 }, text)

/** A button whose accessible name adds `context` (e.g. the key's alias) to its visible text. */
export function button(
  text: string,
  context: string | null,
  onClick: (event: Event) => void,
  cls = '',
): HTMLButtonElement {
  return h(
    'button',
    { type: 'button', class: cls || null, onclick: onClick },
    text,
    context ? h('span', { class: 'sr-only' }, ` ${context}`) : null,
  )
}

/** An alert region: `show(message)` fills it (read out at once), `show(null)` empties it. */
export function alertBox(): { el: HTMLElement; show(message: string | null): void } {
  const el = h('p', { class: 'alert', role: 'alert', hidden: true })
  return {
    el,
    show(message) {
      el.textContent = message ?? ''
      el.hidden = message === null
    },
  }
}

let live: HTMLElement | null = null
/** Says `message` politely through the page's live region. */
export function announce(message: string): void {
  if (!live) {
    live = h('p', { class: 'sr-only', role: 'status', 'aria-live': 'polite' })
    document.body.append(live)
  }
  live.textContent = ''
  const el = live
  // A change after a tick is announced even when the same text is said twice.
  setTimeout(() => {
    el.textContent = message
  }, 30)
}

/** A table with a caption, headers and rows; every cell carries its header as `data-label`. */
export function table(caption: string, headers: string[], rows: Child[][]): HTMLTableElement {
  return h(
    'table',
    null,
    h('caption', { class: 'sr-only' }, caption),
    h('thead', null, h('tr', null, ...headers.map((t) => h('th', { scope: 'col' }, t)))),
    h(
      'tbody',
      null,
      ...rows.map((cells) =>
        h('tr', null, ...cells.map((c, i) => h('td', { 'data-label': headers[i] ?? '' }, c))),
      ),
    ),
  )
}
