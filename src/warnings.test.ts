import { afterEach, describe, expect, it } from 'vitest'
import { clusterWorker } from './warnings.js'

describe('clusterWorker', () => {
  const before = process.env['NODE_APP_INSTANCE']
  afterEach(() => {
    if (before === undefined) delete process.env['NODE_APP_INSTANCE']
    else process.env['NODE_APP_INSTANCE'] = before
  })

  it('is undefined in a process of its own (the cluster case: test/multi-instance/cluster-warning)', () => {
    delete process.env['NODE_APP_INSTANCE']
    expect(clusterWorker()).toBeUndefined()
  })

  it('names a PM2 instance other than the first', () => {
    process.env['NODE_APP_INSTANCE'] = '0'
    expect(clusterWorker()).toBeUndefined()
    process.env['NODE_APP_INSTANCE'] = '3'
    expect(clusterWorker()).toBe('PM2 instance 3')
  })
})
