/**
 * @module test/regressions/hold-renewal-child
 *
 * A process that admits one request and never settles it, as one killed mid-response: on the
 * SQLite file `TB_FILE`, with both hold TTLs at `TB_TTL_MS`, it admits `TB_KEY`'s request,
 * prints `admitted`, and stays alive (renewing its holds) until it is killed.
 */

import { sqliteStorage } from '../../adapters/sqlite/index.js'
import { createTollbooth } from '../../src/index.js'
import { req, SECRET } from '../metering/helpers.js'

const ttl = Number(process.env['TB_TTL_MS'])
const tb = createTollbooth({
  secret: SECRET,
  storage: sqliteStorage({ path: process.env['TB_FILE']! }),
  leaseTtlMs: ttl,
  reservationTtlMs: ttl,
})
const d = await tb.authenticate(req(process.env['TB_KEY']!), tb.route({ cost: 0 }))
process.stdout.write(d.allowed ? 'admitted\n' : `refused ${d.status}\n`)
// Kept alive: the renewal timer is unref'd, as it must not hold a process that is done.
setInterval(() => {}, 1000)
