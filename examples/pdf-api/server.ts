/**
 * @module examples/pdf-api/server
 *
 * `npm run example:pdf`: starts the PDF API on PORT (default 3000) on SQLite
 * (`data/tollbooth.db`, or under `DATA_DIR`), or on Redis / PostgreSQL when `REDIS_URL` / `DATABASE_URL` are set, creates an account on
 * the pro plan with an API key and a session token for the account routes and the developer
 * portal at `/portal`, and prints them.
 */

import type { AddressInfo } from 'node:net'
import { signSession } from '../shared/session.js'
import { drainHttp, stopOnSignals } from '../shared/shutdown.js'
import { exampleSecrets, listenFailed } from '../shared/start.js'
import { demoAccountId, storageFromEnv } from '../shared/storage.js'
import { createPdfApi } from './app.js'

const { secret, sessionSecret } = exampleSecrets()
const port = Number(process.env.PORT ?? 3000)
const host = process.env.HOST ?? '127.0.0.1'

const opened = await storageFromEnv()
const { app, tb } = createPdfApi({ secret, sessionSecret, storage: opened.storage })

const accountId = demoAccountId('user_demo', opened)
await tb.accounts.setTier(accountId, 'pro')
const consumption = await tb.keys.create({
  accountId,
  name: 'CI Pipeline',
  metadata: { label: 'CI Pipeline' },
})
const session = await signSession(sessionSecret, accountId)

const server = app.listen(port, host, (err) => {
  if (err) listenFailed(err, port, host)
  const url = `http://${host}:${(server.address() as AddressInfo).port}`
  console.log(`pdf-api listening on ${url} (storage: ${opened.label})`)
  if (opened.file) console.log(`data: ${opened.file}`)
  console.log(`account: ${accountId}`)
  console.log(`consumption key: ${consumption.key}`)
  console.log(`session token: ${session}`)
  console.log(`portal: ${url}/portal/ (sign in with the session token)`)
  console.log(
    `try: curl -X POST ${url}/api/v1/compress -H "Authorization: Bearer ${consumption.key}" -H "Content-Type: application/json" -d '{"file":"https://example.com/report.pdf"}'`,
  )
})

// SIGTERM / SIGINT: stop accepting, finish the requests in flight, write their usage, exit.
stopOnSignals({
  drain: () => drainHttp(server),
  close: async () => {
    await tb.close()
    await opened.close()
  },
})
