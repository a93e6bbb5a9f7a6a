/**
 * @module test/package/express-consumer
 *
 * An Express app as a `tsc --strict` user writes it with `tollbooth/express`, compiled against
 * both majors of Express's types: `@types/express` 5 by `tsconfig.json` (with the rest of the
 * tests) and 4 by `tsconfig.express4.json` (which maps `express` to the `@types/express4`
 * alias, and `express-serve-static-core` to that alias's own copy, 4 as in an Express 4 project:
 * `req.apiKey`'s augmentation must reach the Request of the types in use), both in `npm run
 * typecheck`. Never run: a type that breaks either major fails the typecheck.
 */

import express, {
  type ErrorRequestHandler,
  type NextFunction,
  type Request,
  type RequestHandler,
  type Response,
  Router,
} from 'express'
import { expectTypeOf } from 'vitest'
import {
  type ExpressRouteOptions,
  mountFetch,
  requireApiKey,
} from '../../adapters/express/index.js'
import { managementApi } from '../../adapters/management/index.js'
import { type Admission, createTollbooth } from '../../src/index.js'

/** The app: guarded routes, a guarded router, the management API, an error handler. */
export function expressApp(): express.Express {
  const tb = createTollbooth({ secret: 'express-consumer-secret-0123456789abcdef' })
  const app = express()
  app.use(express.json())

  // The README's quick start.
  app.post('/v1/chat', requireApiKey(tb, { cost: 10, category: 'llm' }), (req, res) => {
    expectTypeOf(req.apiKey).toEqualTypeOf<Admission>()
    req.apiKey.report({ cost: 8, tokens: 1234, provider: 'openai' })
    res.json({ account: req.apiKey.accountId })
  })

  // A guard kept in a variable, options typed apart, handlers with annotated parameters.
  const options: ExpressRouteOptions = { scopes: ['tts'], cost: 2 }
  const guard = requireApiKey(tb, options)
  expectTypeOf(guard).toEqualTypeOf<RequestHandler>()
  const router = Router()
  router.use(guard)
  router.get('/voices', (req: Request, res: Response, next: NextFunction) => {
    req.apiKey.charge(1)
    // Express 4 ignores a handler's promise: its errors are passed on by hand.
    Promise.resolve(req.apiKey.key.id)
      .then((id) => res.send(id))
      .catch(next)
  })
  app.use('/v1', router)

  // The management API behind the same app (its bridge and body-error handler).
  app.use('/manage', mountFetch(managementApi(tb).fetch))
  app.use('/manage2', ...mountFetch(managementApi(tb).fetch))

  const onError: ErrorRequestHandler = (err, _req, res, _next) => {
    res.status(500).json({ error: String(err) })
  }
  app.use(onError)
  return app
}
