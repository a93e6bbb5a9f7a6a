/**
 * @module test/storage/map-store.test
 *
 * The conformance suite on `mapStorage()` (see `map-store.ts`): a store written against
 * `countersFromState` passes it with no counting rule of its own.
 */

import { describeStorageConformance } from '../../adapters/testing/index.js'
import { mapStorage } from './map-store.js'

describeStorageConformance('a Map behind a mutex, through countersFromState', async () => ({
  storage: mapStorage(),
}))
