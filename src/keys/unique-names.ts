/**
 * @module keys/unique-names
 *
 * Key names as aliases, unique per account: `tb.keys.create(input, { uniqueName: true })` and
 * the same on `update` refuse a name another live key of the account and kind already wears,
 * compared trimmed and without case (409 `conflict`, naming `name`). The rule sits where keys
 * are written, so every caller (the portal, the management API with `uniqueKeyNames`, an
 * example's own routes) gets it whatever path reached it.
 *
 * Checks of one account run one at a time in this process, and across instances each check
 * and write holds a marker of the name in the counter store (`claim`, atomic on every store:
 * of concurrent claims on any instance exactly one wins): two instances creating the same name
 * at the same instant get one key and one 409, not two keys. The marker is cleared once the
 * write is done (a later claim then finds the key in the list); one left by a process that
 * died mid-write expires after {@link NAME_CLAIM_MS}. A claim lost to a write in progress
 * elsewhere answers the 409 at once (that write is about to wear the name). One more store
 * call each way for a create or rename with the rule, none on the request path.
 */

import { sha256 } from '@noble/hashes/sha2.js'
import { bytesToHex, utf8ToBytes } from '@noble/hashes/utils.js'
import { ConflictError } from '../errors.js'
import type { KeyKind, Storage } from '../storage/types.js'

/** How long a name's marker lives at most (a process that died mid-write leaves one). */
export const NAME_CLAIM_MS = 10_000

/** Rules a caller adds to a create or a rename. */
export interface NameRule {
  /**
   * Refuse (409 `conflict`, naming `name`) a name that another live key of the same account
   * and kind already wears, compared trimmed and without case. The portal sets it: there the
   * name is an alias, unique per account.
   */
  uniqueName?: boolean
}

/** The message of a name already taken under {@link NameRule.uniqueName}. */
export const nameTaken = (name: string): string =>
  `An API key with the alias "${name}" already exists; choose another alias`

const norm = (s: string) => s.trim().toLowerCase()

/** What a unique-name write needs: whose keys, which kind, the name, and the key renamed. */
export interface NameClaim {
  accountId: string
  kind: KeyKind
  name: string
  /** The key being renamed (its own name does not count), or null for a create. */
  exceptId: string | null
}

/**
 * Runs writes that claim a name, one at a time per account: `claim(c, write)` throws the 409
 * when the name is taken, else runs `write` before the next claim of the account is checked.
 */
export function createNameGuard(storage: Storage, now: () => number) {
  const queues = new Map<string, Promise<unknown>>()

  /** Runs `task` after every earlier claim of `accountId` has finished. */
  const serial = <T>(accountId: string, task: () => Promise<T>): Promise<T> => {
    const prev = queues.get(accountId) ?? Promise.resolve()
    const run = prev.then(task, task)
    const tail = run.catch(() => {})
    queues.set(accountId, tail)
    void tail.then(() => {
      if (queues.get(accountId) === tail) queues.delete(accountId)
    })
    return run
  }

  const taken = (c: NameClaim) =>
    new ConflictError(nameTaken(c.name.trim()), [
      { path: 'name', message: 'is already used by another key of this account' },
    ])

  const refuseTaken = async (c: NameClaim): Promise<void> => {
    const want = norm(c.name)
    let cursor: string | null = null
    do {
      const page = await storage.keys.list(c.accountId, {
        limit: 100,
        cursor,
        kind: c.kind,
        includeRevoked: false,
      })
      if (page.data.some((k) => k.id !== c.exceptId && norm(k.name) === want)) throw taken(c)
      cursor = page.nextCursor
    } while (cursor)
  }

  return {
    claim<T>(c: NameClaim, write: () => Promise<T>): Promise<T> {
      return serial(c.accountId, async () => {
        // The account's id as the hash tag (Redis Cluster), the name hashed: any length and
        // any character make a key of one short form.
        const marker = `{${c.accountId}}:name:${c.kind}:${bytesToHex(sha256(utf8ToBytes(norm(c.name))))}`
        if (!(await storage.counters.claim(marker, NAME_CLAIM_MS, now()))) throw taken(c)
        try {
          await refuseTaken(c)
          return await write()
        } finally {
          await storage.counters.unclaim(marker).catch(() => {})
        }
      })
    },
  }
}
