/**
 * @module tollbooth/portal/ui/api
 *
 * The page's one way to the server: `api(method, path, body)` calls `<base>/api/<path>` on
 * the same origin, with the session cookie (the browser adds it; the page never sees it) and,
 * on every change, the CSRF token in `X-CSRF-Token`. The token lives in this module's memory
 * only, never in storage or a URL. An error answer becomes an {@link ApiError} carrying the
 * server's message and the fields it names; a 401 also tells the page the session is over.
 */

/** `<base>/api/`, from where this script was loaded (`<base>/assets/app-….js`). */
const API_BASE = new URL('../api/', import.meta.url)

let csrfToken = ''
let onSignedOut: () => void = () => {}

/** Keeps the CSRF token for the next changes. */
export function setCsrf(token: string): void {
  csrfToken = token
}

/** Called when an answer says the session is gone (401). */
export function whenSignedOut(handler: () => void): void {
  onSignedOut = handler
}

/** A field the server found wrong. */
export interface Issue {
  path: string
  message: string
}

/** An error answer of the API. */
export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly code: string,
    readonly issues: Issue[],
  ) {
    super(message)
    this.name = 'ApiError'
  }
}

const SAFE = new Set(['GET', 'HEAD'])

/**
 * Calls the API and returns its JSON (undefined for a 204).
 *
 * @throws {ApiError} for any answer but 2xx, or when the server cannot be reached
 */
export async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json' }
  if (body !== undefined) headers['content-type'] = 'application/json'
  if (!SAFE.has(method)) headers['x-csrf-token'] = csrfToken
  let res: Response
  try {
    res = await fetch(new URL(path, API_BASE), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
      cache: 'no-store',
      redirect: 'error',
    })
  } catch {
    throw new ApiError(
      'The server cannot be reached; check your connection and retry',
      0,
      'network',
      [],
    )
  }
  if (res.status === 204) return undefined as T
  const data = (await res.json().catch(() => null)) as Record<string, unknown> | null
  if (!res.ok) {
    const message =
      typeof data?.['error'] === 'string' ? data['error'] : `The server answered ${res.status}`
    const issues = Array.isArray(data?.['issues']) ? (data['issues'] as Issue[]) : []
    const err = new ApiError(message, res.status, String(data?.['code'] ?? ''), issues)
    if (res.status === 401 && path !== 'session') onSignedOut()
    throw err
  }
  return data as T
}

/** The message of any error, for an alert. */
export function messageOf(err: unknown, fields: Record<string, string> = {}): string {
  if (!(err instanceof ApiError)) return err instanceof Error ? err.message : String(err)
  if (err.status !== 400 || err.issues.length === 0) return err.message
  return err.issues
    .map((i) => `${fields[i.path] ?? i.path}: ${i.message}`)
    .join('. ')
    .concat('.')
}
