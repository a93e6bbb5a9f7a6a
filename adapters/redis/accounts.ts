/**
 * @module tollbooth/redis/accounts
 *
 * Accounts and sealed provider keys on Redis, one Redis key each, so nothing here spans
 * slots. An account is a HASH of its JSON (`j`, without the balance) and its balance (`b`):
 * `addBalance` is one Lua step in double arithmetic, and `update` a compare-and-set of the
 * JSON, so a period rollover (`ifPeriodStart`) lands once among concurrent callers, its
 * overage (`addToBalance`) taken in the same step. `topUp` keeps the account's record of a key
 * as a field of the account's HASH, so its one Lua step adds and keeps it in the account's
 * slot (Redis Cluster).
 * Provider keys are one HASH per account, provider -> record JSON.
 */

import type {
  AccountPatch,
  AccountRecord,
  AccountStore,
  ProviderKeyRecord,
  SecretStore,
} from '../../src/internal.js'
import { type Ctx, casLoop, dec, enc, RETRY } from './store.js'

function split(a: AccountRecord): [json: string, balance: string] {
  const { balance, ...rest } = a
  return [JSON.stringify(rest), enc(balance)]
}

function join(json: string, balance: string): AccountRecord {
  return { ...(JSON.parse(json) as Omit<AccountRecord, 'balance'>), balance: dec(balance) }
}

export function redisAccounts({ client, prefix }: Ctx): AccountStore {
  const key = (id: string) => `${prefix}account:${id}`
  return {
    async get(id) {
      const [json, balance] = await client.hmget(key(id), 'j', 'b')
      return json && balance ? join(json, balance) : null
    },
    async ensure(defaults) {
      const [json, balance] = split(defaults)
      const r = await client.tollboothAccountEnsure(1, key(defaults.id), json, balance)
      return join(r[0], r[1])
    },
    update(id, patch: AccountPatch, ifPeriodStart) {
      return casLoop(async () => {
        const [json, balance] = await client.hmget(key(id), 'j', 'b')
        if (!json || !balance) return null
        const current = join(json, balance)
        if (ifPeriodStart !== undefined && current.periodStart !== ifPeriodStart) return null
        const { addToBalance, ...fields } = patch
        const [nextJson] = split({ ...current, ...fields, id })
        const nextBalance = fields.balance === undefined ? '' : enc(fields.balance)
        const add = addToBalance === undefined ? '' : enc(addToBalance)
        const r = await client.tollboothAccountCas(1, key(id), json, nextJson, nextBalance, add)
        if (r[0] === -1) return null
        return r[0] === 1 ? join(String(r[1]), String(r[2])) : RETRY
      })
    },
    async addBalance(id, amount) {
      const r = await client.tollboothAccountAdd(1, key(id), enc(amount))
      return r ? join(r[0], r[1]) : null
    },
    async topUp(id, t) {
      const r = await client.tollboothTopUpApply(
        1,
        key(id),
        t.key,
        enc(t.amount),
        enc(t.now),
        enc(t.expiresAt),
      )
      return r === null ? null : { applied: r[0] === 1, amount: dec(String(r[1])) }
    },
  }
}

export function redisSecrets({ client, prefix }: Ctx): SecretStore {
  const key = (accountId: string) => `${prefix}secrets:${accountId}`
  return {
    async put(r) {
      await client.hset(key(r.accountId), r.provider, JSON.stringify(r))
    },
    async get(accountId, provider) {
      const json = await client.hget(key(accountId), provider)
      return json ? (JSON.parse(json) as ProviderKeyRecord) : null
    },
    async list(accountId) {
      const all = await client.hvals(key(accountId))
      return all
        .map((json) => JSON.parse(json) as ProviderKeyRecord)
        .sort((a, b) => (a.provider < b.provider ? -1 : 1))
    },
    async delete(accountId, provider) {
      return (await client.hdel(key(accountId), provider)) === 1
    },
  }
}
