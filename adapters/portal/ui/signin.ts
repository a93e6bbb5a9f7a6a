/**
 * @module tollbooth/portal/ui/signin
 *
 * The signed-out page: a link to the application's own sign-in (`signInUrl`) and, where the
 * portal takes session JWTs, a form to sign in with one. The token is posted in a JSON body
 * (never in a URL), the server keeps it in an HttpOnly cookie, and the field is emptied at
 * once. If the browser then still is not signed in, it refused the cookie: the page says why.
 */

import { api, messageOf } from './api.js'
import { alertBox, field, h, title } from './dom.js'
import type { SessionInfo } from './types.js'

/** Renders the sign-in page; `onSignedIn` runs once the session cookie is set. */
export function signInView(root: HTMLElement, s: SessionInfo, onSignedIn: () => Promise<boolean>) {
  const error = alertBox()
  const parts: Node[] = [title(`Sign in to the ${s.portal.title}`)]
  if (s.portal.signInUrl)
    parts.push(
      h(
        'p',
        null,
        h('a', { class: 'button primary', href: s.portal.signInUrl }, 'Sign in with your account'),
      ),
    )
  if (s.portal.tokenSignIn) {
    const token = h('textarea', {
      name: 'token',
      required: true,
      rows: 3,
      autocomplete: 'off',
      spellcheck: 'false',
      class: 'mono',
    })
    const submit = h('button', { type: 'submit', class: 'primary' }, 'Sign in')
    const form = h(
      'form',
      null,
      field(
        'Session token',
        token,
        'The session token (JWT) your sign-in issued. It is kept in a secure cookie, never in this page.',
      ),
      error.el,
      h('div', { class: 'actions' }, submit),
    )
    form.addEventListener('submit', async (event) => {
      event.preventDefault()
      error.show(null)
      const value = token.value.trim()
      token.value = ''
      submit.disabled = true
      try {
        await api('POST', 'session', { token: value })
        if (!(await onSignedIn()))
          error.show(
            s.secureCookies
              ? 'Your browser did not keep the session cookie: the portal needs HTTPS (or localhost).'
              : 'Your browser did not keep the session cookie: allow cookies for this site.',
          )
      } catch (err) {
        error.show(messageOf(err, { token: 'Session token' }))
      } finally {
        submit.disabled = false
      }
    })
    parts.push(form)
  }
  if (!s.portal.signInUrl && !s.portal.tokenSignIn)
    parts.push(h('p', null, 'Sign in to the application first, then come back to this page.'))
  root.replaceChildren(h('main', { id: 'main', class: 'narrow' }, ...parts))
}
