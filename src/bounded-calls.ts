/**
 * @module bounded-calls
 *
 * The calls off the request path (`tb.keys`, `tb.accounts`, `tb.usage`, `tb.providerKeys`,
 * `tb.ipBlocks`, and so the management API and the portal) as the request path's `guard`
 * bounds its own: each answers within `storageTimeoutMs`, or rejects with a
 * {@link StorageUnavailableError} naming the call and why (no answer in time, the client
 * closed, the store's error code), the store's own error as its `cause`. Before, a frozen
 * store (SIGSTOP) held such a call for as long as the freeze lasted (Redis with ioredis's
 * offline queue; PostgreSQL on a connection it already had), and a store that refused
 * answered with the driver's error (a 500 on the management API).
 *
 * As with `guard`, the call itself goes on: a write whose caller stopped waiting still runs to
 * its end (its change feed message included) and may land, never half of it. Its error says
 * that its outcome is unknown.
 */

import { withTimeout } from './context.js'
import { isTollboothError, StorageUnavailableError } from './errors.js'
import { closedMessage } from './storage/closed.js'
import type { Storage } from './storage/types.js'

/** Methods that only read; every other method of a service may change something. */
const READS = new Set(['get', 'list', 'statement', 'summarize', 'logs'])

export interface BoundOptions {
  /** The bound (ms) of each call. */
  ms: number
  /** Its `closed()` names a client closed under tollbooth as the cause. */
  storage: Pick<Storage, 'closed'>
  /** The bound of a method that may wait on purpose (ms, the whole call), from its arguments. */
  longer?: Record<string, (...args: unknown[]) => number>
  /** Methods left as they are (one that bounds its own steps). */
  skip?: ReadonlySet<string>
}

/** Each bounded service: what it bounds, and how (see {@link throughBound}). */
const bounds = new WeakMap<object, { target: object; name: string; o: BoundOptions }>()

/**
 * `service` whose async methods answer within their bound. `name` is the service's name on the
 * instance (`keys`), for the messages. Each method runs on `service` itself (its private
 * fields work).
 */
export function boundCalls<T extends object>(service: T, name: string, o: BoundOptions): T {
  const methods = new Map<PropertyKey, unknown>()
  const bounded = new Proxy(service, {
    get(target, prop) {
      const value: unknown = Reflect.get(target, prop, target)
      if (typeof value !== 'function' || typeof prop !== 'string' || o.skip?.has(prop)) return value
      let method = methods.get(prop)
      if (!method) {
        const call = `tb.${name}.${prop}`
        const longer = o.longer?.[prop]
        const writes = !READS.has(prop)
        method = (...args: unknown[]) => {
          const r: unknown = value.apply(target, args)
          if (!isThenable(r)) return r
          const ms = longer ? longer(...args) : o.ms
          return within(Promise.resolve(r), ms, call, writes, o.storage)
        }
        methods.set(prop, method)
      }
      return method
    },
  })
  bounds.set(bounded, { target: service, name, o })
  return bounded
}

/**
 * `make(service)` bounded as `service` is: for the internal entries of a service that reach its
 * private fields (`parsedKeyEntries`), given the service from the instance.
 */
export function throughBound<S extends object, R extends object>(
  service: S,
  make: (target: S) => R,
): R {
  const b = bounds.get(service)
  return b ? boundCalls(make(b.target as S), b.name, b.o) : make(service)
}

/**
 * `p`, or a StorageUnavailableError once `ms` have passed (`p` goes on); any failure but
 * tollbooth's own as a StorageUnavailableError naming `call`.
 */
export function within<T>(
  p: Promise<T>,
  ms: number,
  call: string,
  writes: boolean,
  storage: Pick<Storage, 'closed'>,
): Promise<T> {
  return withTimeout(p, ms, {
    message: `Storage did not answer within ${ms} ms (${call})${writes ? ': its outcome is unknown (the call goes on and may still apply); read before retrying' : ''}`,
    failed(err) {
      if (isTollboothError(err)) return err
      const why = storage.closed?.()
      return new StorageUnavailableError(
        `Storage unavailable (${call}): ${why === undefined ? `the store failed${errorCode(err)}` : closedMessage(why)}`,
        { cause: err },
      )
    },
  })
}

function isThenable(v: unknown): v is PromiseLike<unknown> {
  return typeof (v as { then?: unknown } | null)?.then === 'function'
}

/**
 * The store error's code (`ECONNREFUSED`, PostgreSQL's `57P01`) or class name, never its
 * message: messages go to API clients, a store's own words stay in `cause`.
 */
function errorCode(err: unknown): string {
  const { code, name } = (err ?? {}) as { code?: unknown; name?: unknown }
  if (typeof code === 'string' && /^[A-Z0-9_]{1,32}$/.test(code)) return ` (${code})`
  return typeof name === 'string' && name !== 'Error' && /^\w{1,64}$/.test(name) ? ` (${name})` : ''
}

/**
 * The service behind a bounded one (`service` itself when it is not): for billing, whose
 * change must run to its end once the store answers (a Stripe event's lease waits for it)
 * rather than stop at the first step the store is slow on, and be applied again half-done.
 */
export function unbounded<S extends object>(service: S): S {
  return (bounds.get(service)?.target as S | undefined) ?? service
}
