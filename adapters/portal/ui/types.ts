/**
 * @module tollbooth/portal/ui/types
 *
 * The JSON the page reads: the management API's answers (`adapters/management/views.ts`) and
 * the portal's own (`/session`, `/usage/daily`). Types only; nothing here runs.
 */

/** What `GET <base>/api/session` says about the page. */
export interface PortalConfig {
  title: string
  categories: string[]
  providers: string[]
  signInUrl: string | null
  signOutUrl: string | null
  tokenSignIn: boolean
}

export interface SessionInfo {
  signedIn: boolean
  accountId: string | null
  csrfToken: string
  secureCookies: boolean
  portal: PortalConfig
}

export interface Quotas {
  total?: number
  daily?: number
  weekly?: number
  monthly?: number
}

/** A key as listed: its display prefix, never its secret. */
export interface KeyJson {
  id: string
  name: string
  prefix: string
  category: string | null
  active: boolean
  createdAt: string
  expiresAt: string | null
  lastUsedAt: string | null
  revokedAt: string | null
  limits: { quotas?: Quotas }
}

/** The answer to create and rotate: the secret, this once. */
export interface CreatedJson {
  id: string
  key: string
  name: string
  prefix: string
  expiresAt: string | null
}

export interface Page<T> {
  data: T[]
  nextCursor: string | null
  hasMore: boolean
}

/** One request of a key's log. */
export interface LogJson {
  id: string
  requestId: string
  time: string
  method: string
  path: string
  status: number
  /** Total duration (ms); 0 for a refused request. */
  durationMs: number
  /** Time to first byte (ms); null when unknown (a refused request, an older event). */
  ttfbMs: number | null
  /** The error code of a refused request; null when it was served. */
  code: string | null
  ip: string | null
  units: number
  category: string | null
  bypassed: boolean
}

export interface UsageJson {
  /**
   * `carryover` and `balance`: what the limit holds beyond the plan's credits (a past month's
   * as it was closed); null for a month closed before they were kept.
   */
  credits: {
    used: number
    limit: number | null
    remaining: number | null
    carryover: number | null
    balance: number | null
  }
  /** What `breakdown` and `requests` are keyed by. */
  groupBy: 'category' | 'keyCategory'
  breakdown: Record<string, number>
  requests: Record<string, number>
  requestCount: number
  resetDate: string
  period: { id: string; start: string; end: string }
}

export interface DayJson {
  date: string
  requests: number
  credits: number
  byCategory: Record<string, { requests: number; credits: number }>
}

export interface DailyJson {
  period: { id: string; start: string; end: string }
  /** What `categories` and each day's `byCategory` hold. */
  groupBy: 'category' | 'keyCategory'
  categories: string[]
  days: DayJson[]
}

export interface ProviderKeyJson {
  provider: string
  masked: string
  createdAt: string
  verifiedAt: string | null
}
