/**
 * @module tollbooth
 *
 * The public surface of the core: what a user calls, and the types of what they write (a
 * storage, a billing provider, route options). Adapters share the building blocks through
 * `src/internal.ts`, which package.json does not export.
 */

export { applyBillingChanges, type BillingState, type CurrentState } from './billing/apply.js'
export type { MeterSink } from './billing/meter-outbox.js'
export type {
  AppliedChange,
  BillingChange,
  BillingProvider,
  CheckoutInput,
  CheckoutResult,
  HeaderBag,
  PortalInput,
  PortalResult,
  WebhookInput,
  WebhookResult,
} from './billing/types.js'
export type { ProviderKeyView, ProviderVerifier } from './byok/service.js'
export {
  type HttpVerifierOptions,
  providerVerifiers,
  type VerifierEndpoint,
} from './byok/verifiers.js'
export type { FeedFigures } from './change-feed.js'
export type { Clock, ManualClock } from './clock.js'
export type { Admission, ApiKeyInfo, Decision, Denial, Report } from './decision.js'
export {
  type AnyTollboothError,
  BillingUnavailableError,
  ConfigError,
  ConflictError,
  type ErrorBody,
  type ErrorCode,
  type InvalidField,
  InvalidRequestError,
  isTollboothError,
  NotFoundError,
  NotImplementedError,
  StorageUnavailableError,
  TollboothError,
} from './errors.js'
export type { HeaderFamilies } from './headers.js'
export type {
  CreatedKey,
  CreateKeyInput,
  KeyCreationRule,
  KeyDraft,
  KeyView,
  UpdateKeyInput,
} from './keys/manager.js'
export type { AccountView } from './metering/accounts.js'
export type { Period } from './metering/periods.js'
export type { LogEntry, UsageGroupBy, UsageReport } from './metering/usage.js'
export type {
  Plan,
  ResolvedOptions,
  ResolvedRoute,
  RouteOptions,
  TollboothOptions,
} from './options.js'
export {
  type HeaderSource,
  type KeySource,
  readHeader,
  type TollboothRequest,
  type TrustProxy,
} from './request.js'
export type { RetryStats, SettleQueueStats } from './retry-queue.js'
export type { ChargeInfo, ChargeWhen, Outcome, ResponseOutcome } from './settle.js'
export {
  type MemoryCounterStore,
  type MemoryStorageOptions,
  memoryStorage,
} from './storage/memory.js'
export {
  type CounterBackend,
  countersFromState,
} from './storage/state-counters.js'
export type * from './storage/types.js'
export { createTollbooth, type IpBlocks, type LeaseFigures, type Tollbooth } from './tollbooth.js'
