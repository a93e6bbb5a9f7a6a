/**
 * @module postgres/migrations
 *
 * Every migration of the PostgreSQL schema, in order: what `migrate()` applies, and what a
 * storage compares the schema's version with when a statement no longer fits it.
 */

import { INIT_SQL } from './0001-init.js'
import { IP_BLOCKS_SQL } from './0002-ip-blocks.js'
import { USAGE_AGGREGATES_SQL } from './0003-usage-aggregates.js'
import { USAGE_KEY_CATEGORY_SQL } from './0004-usage-key-category.js'
import { COUNTERS_APPLY_SQL } from './0005-counters-apply.js'
import { ACCOUNT_CLOSED_PERIODS_SQL } from './0006-account-closed-periods.js'
import { JSON_AS_GIVEN_SQL } from './0007-json-as-given.js'
import { TOPUPS_SQL } from './0008-topups.js'

/** One versioned step of the schema. Ids only grow; a released migration never changes. */
export interface Migration {
  id: number
  name: string
  sql: string
}

/** Every migration, in order. */
export const MIGRATIONS: ReadonlyArray<Migration> = [
  { id: 1, name: '0001-init', sql: INIT_SQL },
  { id: 2, name: '0002-ip-blocks', sql: IP_BLOCKS_SQL },
  { id: 3, name: '0003-usage-aggregates', sql: USAGE_AGGREGATES_SQL },
  { id: 4, name: '0004-usage-key-category', sql: USAGE_KEY_CATEGORY_SQL },
  { id: 5, name: '0005-counters-apply', sql: COUNTERS_APPLY_SQL },
  { id: 6, name: '0006-account-closed-periods', sql: ACCOUNT_CLOSED_PERIODS_SQL },
  { id: 7, name: '0007-json-as-given', sql: JSON_AS_GIVEN_SQL },
  { id: 8, name: '0008-topups', sql: TOPUPS_SQL },
]
