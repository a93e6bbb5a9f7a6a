/**
 * @module storage/closed
 *
 * A storage whose client the user closed under tollbooth (`redis.quit()`, `pool.end()`,
 * `db.close()` before `tb.close()`, told by `Storage.closed()`) fails every call from then on,
 * for good. Each timer that calls it (the usage out-box's flush, lease pushes, hold renewals,
 * the failed-auth guard's rechecks, the change feed's retries, the meter out-box) would report
 * its own failure each period for as long as the process lives; {@link reportClosedOnce} says
 * it once, naming the cause and the order to close in.
 */

import { StorageUnavailableError } from '../errors.js'
import type { Storage } from './types.js'

/** What tollbooth says of a storage whose client was closed under it (`why`: `closed()`). */
export function closedMessage(why: string): string {
  return `${why} while tollbooth still uses it: call \`await tb.close()\` first, then close the storage's client`
}

/** The storages whose closed client was told already: once, whoever reports it. */
const told = new WeakSet<object>()

/**
 * `report` that tells of a storage whose client was closed under tollbooth once (a
 * `StorageUnavailableError` whose cause is the first failure) and drops every failure reported
 * after it while the storage says it is closed: once per storage, through whichever of the
 * reporters sharing it (the instance, the management API, the meter out-box) hears it first.
 * A storage without `closed()` is reported as before: every failure. `closedFirst` says the
 * instance was closed while the client was still open (the right order, then a call on the
 * instance afterwards): the report then does not tell to close tollbooth first.
 */
export function reportClosedOnce(
  storage: Pick<Storage, 'closed'>,
  report: (err: unknown) => void,
  closedFirst: () => boolean = () => false,
): (err: unknown) => void {
  if (!storage.closed) return report
  return (err: unknown) => {
    const why = storage.closed?.()
    if (why === undefined) return report(err)
    if (told.has(storage)) return
    told.add(storage)
    report(
      new StorageUnavailableError(
        closedFirst()
          ? `${why} after tb.close() (the right order), and the instance was called since: requests are answered 503 and calls to tb.keys, tb.accounts and the like reject; call nothing on a tollbooth instance once its storage's client is closed`
          : `${closedMessage(why)}; until then requests are answered 503 and usage events stay queued (tb.close() rejects naming them)`,
        { cause: err },
      ),
    )
  }
}
