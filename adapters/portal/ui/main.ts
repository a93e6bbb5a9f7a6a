/**
 * @module tollbooth/portal/ui/main
 *
 * The page's entry point: asks who is signed in (`GET session`, which also hands over the
 * CSRF token), shows the sign-in page or the portal, and routes between the views by the URL
 * fragment (`#/keys`, `#/keys/<id>` for a key's logs, `#/usage`, `#/provider-keys`). Each
 * view opens with its heading focused, so keyboard and screen reader users land on it.
 */

import 'uplot/dist/uPlot.min.css'
import './portal.css'
import { api, messageOf, setCsrf, whenSignedOut } from './api.js'
import { h } from './dom.js'
import { keysView } from './keys.js'
import { logsView } from './logs.js'
import { providerKeysView } from './provider-keys.js'
import { signInView } from './signin.js'
import type { SessionInfo } from './types.js'
import { usageView } from './usage.js'
import type { View } from './view.js'

const NAV: Array<[string, string, View]> = [
  ['keys', 'API keys', keysView],
  ['usage', 'Usage', usageView],
  ['provider-keys', 'Provider keys', providerKeysView],
]

const app = document.getElementById('app')!

function showFatal(message: string): void {
  app.replaceChildren(
    h(
      'main',
      { id: 'main', class: 'narrow' },
      h('h1', null, 'The portal could not load'),
      h('p', { role: 'alert' }, message),
    ),
  )
}

/** Shows the portal for a signed-in account. */
function shell(s: SessionInfo): void {
  const links = NAV.map(([id, label]) => h('a', { href: `#/${id}`, 'data-view': id }, label))
  const main = h('main', { id: 'main' })
  const signOut = h('button', { type: 'button', class: 'link' }, 'Sign out')
  signOut.addEventListener('click', async () => {
    try {
      const r = await api<{ csrfToken: string; signOutUrl: string | null }>('DELETE', 'session')
      setCsrf(r.csrfToken)
      if (r.signOutUrl) window.location.assign(r.signOutUrl)
      else await start()
    } catch (err) {
      showFatal(messageOf(err))
    }
  })
  app.replaceChildren(
    h('a', { class: 'skip', href: '#main' }, 'Skip to content'),
    h(
      'header',
      { class: 'top' },
      h('p', { class: 'brand' }, s.portal.title),
      h('nav', { 'aria-label': 'Portal' }, ...links),
      h(
        'p',
        { class: 'who' },
        h('span', { class: 'sr-only' }, 'Signed in as '),
        s.accountId ?? '',
        ' ',
        signOut,
      ),
    ),
    main,
  )
  // The skip link targets #main: keep the router from reading it as a view.
  app.querySelector('.skip')!.addEventListener('click', (e) => {
    e.preventDefault()
    main.focus()
  })
  main.tabIndex = -1

  const route = async () => {
    const [name = 'keys', ...params] = window.location.hash.replace(/^#\/?/, '').split('/')
    const entry = NAV.find(([id]) => id === name)
    const view: View = name === 'keys' && params.length > 0 ? logsView : (entry?.[2] ?? keysView)
    const current = entry ? name : 'keys'
    for (const a of links) {
      if (a.dataset['view'] === current) a.setAttribute('aria-current', 'page')
      else a.removeAttribute('aria-current')
    }
    const container = h('div', { class: 'view', 'aria-busy': 'true' })
    main.replaceChildren(container)
    try {
      await view(container, { config: s.portal, accountId: s.accountId ?? '', params })
    } catch (err) {
      container.append(h('p', { class: 'alert', role: 'alert' }, messageOf(err)))
    }
    container.removeAttribute('aria-busy')
    if (container.isConnected) container.querySelector<HTMLElement>('h1')?.focus()
  }
  window.onhashchange = () => void route()
  void route()
}

/** Asks who is signed in and shows the right page; resolves to whether someone is. */
async function start(): Promise<boolean> {
  let s: SessionInfo
  try {
    s = await api<SessionInfo>('GET', 'session')
  } catch (err) {
    showFatal(messageOf(err))
    return false
  }
  setCsrf(s.csrfToken)
  document.title = s.portal.title
  if (s.signedIn) shell(s)
  else {
    window.onhashchange = null
    signInView(app, s, start)
  }
  return s.signedIn
}

whenSignedOut(() => void start())
void start()
