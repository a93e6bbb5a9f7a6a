/**
 * @module tollbooth
 *
 * The public surface of the core. Adapters import from here only.
 */

export {
  applyBillingChanges,
  BILLING_STATE_KEY,
  type BillingState,
} from './billing/apply.js'
export { createMarkers, MARKER_TTL_MS, type Markers, markerKey } from './billing/markers.js'
export {
  createMeterOutbox,
  type MeterFlushResult,
  type MeterOutbox,
  type MeterOutboxOptions,
  type MeterSink,
} from './billing/meter-outbox.js'
export {
  type OverageReconciliation,
  type OverageTotals,
  overageEvents,
  reconcileOverage,
} from './billing/reconcile.js'
export {
  type AppliedChange,
  type BillingChange,
  type BillingProvider,
  type CheckoutInput,
  type CheckoutResult,
  type HeaderBag,
  headerOf,
  type PortalInput,
  type PortalResult,
  type WebhookInput,
  type WebhookResult,
} from './billing/types.js'
export { DEFAULT_PROVIDERS } from './byok/providers.js'
export type { ProviderKeyView, ProviderVerifier } from './byok/service.js'
export { type Clock, type ManualClock, manualClock, systemClock } from './clock.js'
export { Admission, type ApiKeyInfo, type Decision, type Denial, type Report } from './decision.js'
export { type DenialName, denialAnswer } from './denials.js'
export {
  type AnyTollboothError,
  BillingUnavailableError,
  ConfigError,
  ConflictError,
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
export {
  ACCOUNT_METADATA_MAX_BYTES,
  METADATA_MAX_BYTES,
  METADATA_MAX_DEPTH,
  metadataProblems,
  metadataSchema,
  ownValue,
  text,
  textProblem,
  type ValueProblem,
} from './input.js'
export { isWellFormedKey } from './keys/format.js'
export type { CreatedKey, CreateKeyInput, KeyView, UpdateKeyInput } from './keys/manager.js'
export { type NameRule, nameTaken } from './keys/unique-names.js'
export { QUOTA_WINDOWS } from './limits/admission.js'
export {
  admitKeys,
  admitStep,
  type CounterState,
  type CounterStep,
  type CounterWrite,
  type CurrentValues,
  claimStep,
  counterKind,
  type StoredCounter,
  settleKeys,
  settleStep,
} from './limits/counters.js'
export { type GcraVerdict, gcra, gcraAdd } from './limits/gcra.js'
export { type HoldVerdict, hold, release } from './limits/hold.js'
export { missingResult } from './limits/rebuild.js'
export { gcraRemove, undrained, windowRemove } from './limits/revert.js'
export { rollingWindow, type WindowVerdict, windowAdd } from './limits/rolling-window.js'
export { type AccountView, checkAccountId } from './metering/accounts.js'
export { type Period, parseMonth, periodOf } from './metering/periods.js'
export type { LogEntry, UsageReport } from './metering/usage.js'
export {
  addToSummary,
  countsInSummary,
  splitUsageRange,
  USAGE_DAY_MS,
  USAGE_HOUR_MS,
  type UsageRangeParts,
  usageBuckets,
  usageCategory,
} from './metering/usage-buckets.js'
export type {
  Plan,
  ResolvedOptions,
  ResolvedRoute,
  RouteOptions,
  TollboothOptions,
} from './options.js'
export { headersFollowHandler, parseConfig, trustProxySchema } from './options.js'
export {
  clientIp,
  type HeaderSource,
  isForwarded,
  type KeySource,
  readHeader,
  type TollboothRequest,
  type TrustProxy,
} from './request.js'
export {
  ABORTED_STATUS,
  beginWork,
  clientGone,
  endWork,
  handlerFailed,
  keepAlive,
  responseEnded,
  responseStarted,
  type Settler,
  watchBody,
} from './response-end.js'
export type { ChargeInfo, ChargeWhen, Outcome, ResponseOutcome } from './settle.js'
// Internal: for the adapters (the settle state of an admission, and the refusals table).
export { type Settlement, settlementOf } from './settle.js'
export type { SettleQueueStats } from './settle-queue.js'
export {
  decodeLogCursor,
  encodeLogCursor,
  type MemoryCounterStore,
  type MemoryStorageOptions,
  memoryStorage,
} from './storage/memory.js'
export {
  type CounterBackend,
  countersFromState,
} from './storage/state-counters.js'
export type * from './storage/types.js'
export { createTollbooth, type IpBlocks, isRoute, type Tollbooth } from './tollbooth.js'
