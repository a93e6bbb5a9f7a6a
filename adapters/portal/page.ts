/**
 * @module tollbooth/portal/page
 *
 * The page itself: one HTML shell (no inline script or style: the strict CSP allows neither)
 * that loads the built script and stylesheet, served at `<base>/`, and the two assets under
 * `<base>/assets/`, named by a hash of their content and so cached for a year. The shell
 * refers to the assets relatively, so the portal works under any base path; a request for
 * `<base>` without the trailing slash is redirected to `<base>/`.
 */

import type { Context, Hono } from 'hono'
import { ASSETS } from './assets.gen.js'

const escapeHtml = (s: string) =>
  s.replace(
    /[&<>"']/g,
    (ch) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[ch]!,
  )

/** The HTML shell of the page. */
export function shell(title: string): string {
  const t = escapeHtml(title)
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<link rel="icon" href="data:,">
<title>${t}</title>
<link rel="stylesheet" href="assets/${ASSETS.css.name}">
<script type="module" src="assets/${ASSETS.js.name}"></script>
</head>
<body>
<div id="app"><p class="loading">Loading ${t}…</p></div>
<noscript><p>The ${t} needs JavaScript.</p></noscript>
</body>
</html>
`
}

type NodeEnv = { incoming?: { url?: string; originalUrl?: string } }

/**
 * The path the browser asked for. Under Express and Fastify's `mountFetch` the request's URL
 * has the mount path removed, so the Node request's own URL is read when there is one.
 */
function requestedPath(c: Context): string {
  const node = (c.env as NodeEnv | undefined)?.incoming
  const raw = node?.originalUrl ?? node?.url
  const path = raw ?? new URL(c.req.url).pathname
  const q = path.indexOf('?')
  return q === -1 ? path : path.slice(0, q)
}

/** Registers the page and its assets on `app`. */
export function pageRoutes(app: Hono, title: string): void {
  const html = shell(title)
  const assets = new Map<string, { type: string; body: string }>([
    [ASSETS.js.name, ASSETS.js],
    [ASSETS.css.name, ASSETS.css],
  ])

  app.get('/assets/:name', (c) => {
    const a = assets.get(c.req.param('name'))
    if (!a) return c.text('Not found', 404, { 'cache-control': 'no-store' })
    return c.body(a.body, 200, {
      'content-type': a.type,
      'cache-control': 'public, max-age=31536000, immutable',
    })
  })

  const page = (c: Context) => {
    const path = requestedPath(c)
    if (!path.endsWith('/')) {
      // One leading slash: `//host` would be read as another site.
      const location = `${path.replace(/^\/+/, '/')}/${new URL(c.req.url).search}`
      return c.body(null, 308, { location, 'cache-control': 'no-store' })
    }
    return c.html(html, 200, { 'cache-control': 'no-store' })
  }
  // `/` is `<base>` itself under app.route(); `/:rest` with an empty rest is `<base>/`.
  app.get('/', page)
  app.get('/:rest{.*}', (c) =>
    c.req.param('rest') === ''
      ? page(c)
      : c.text('Not found', 404, { 'cache-control': 'no-store' }),
  )
}
