/**
 * @module test/storage/memory
 *
 * The storage conformance suite on `memoryStorage()`, the reference every other adapter is
 * compared with.
 */

import { describeStorageConformance } from '../../adapters/testing/index.js'
import { memoryStorage } from '../../src/index.js'

describeStorageConformance('memory', async () => ({ storage: memoryStorage() }))
