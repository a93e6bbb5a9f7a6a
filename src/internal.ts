/**
 * @module internal
 *
 * What the adapters share with the core beyond the public surface: everything `tollbooth`
 * exports plus the building blocks (limit arithmetic, markers, cursors, option schemas,
 * request helpers) that users never call. Adapters import from here; package.json `exports`
 * has no entry for it, so the bundler inlines it into the shared chunk.
 */

export { BILLING_STATE_KEY } from './billing/apply.js'
export { createMarkers, MARKER_TTL_MS, type Markers, markerKey } from './billing/markers.js'
export {
  createMeterHealer,
  HEAL_SETTLE_MS,
  METER_JOURNAL_ID,
  type MeterHealer,
  type MeterHealResult,
} from './billing/meter-heal.js'
export {
  createMeterOutbox,
  type MeterFlushResult,
  type MeterOutbox,
  type MeterOutboxOptions,
} from './billing/meter-outbox.js'
export {
  type OverageReconciliation,
  type OverageTotals,
  overageEvents,
  reconcileOverage,
} from './billing/reconcile.js'
export { headerOf } from './billing/types.js'
export {
  BodyTooLargeError,
  markReparsedBody,
  readBodyBounded,
  reparsedBody,
  reparsedWebhookMessage,
  WEBHOOK_BODY_MAX_BYTES,
} from './body.js'
export { DEFAULT_PROVIDERS } from './byok/providers.js'
export { providerKeyBody, storeParsedProviderKey } from './byok/service.js'
export { httpVerifier, PROVIDER_ENDPOINTS } from './byok/verifiers.js'
export { manualClock, systemClock } from './clock.js'
export { withTimeout } from './context.js'
export { Admission } from './decision.js'
export { type DenialName, denialAnswer } from './denials.js'
export { ERROR_CODES } from './errors.js'
export { setBypassHeaders, setDefaultHeaders, setUsageHeaders, wireName } from './headers.js'
export * from './index.js'
export {
  ACCOUNT_METADATA_MAX_BYTES,
  categoryText,
  METADATA_MAX_BYTES,
  METADATA_MAX_DEPTH,
  metadataProblems,
  metadataSchema,
  ownValue,
  pageSize,
  text,
  textProblem,
  type ValueProblem,
} from './input.js'
export {
  createKeyBody,
  createManagementKeyBody,
  KEY_PATCH_FIELDS,
  patchFields,
  rotateKeySchema,
  updateKeyBody,
} from './keys/fields.js'
export { isWellFormedKey } from './keys/format.js'
export { type ParsedKeyEntries, parsedKeyEntries } from './keys/manager.js'
export { type NameRule, nameTaken } from './keys/unique-names.js'
export { QUOTA_WINDOWS } from './limits/admission.js'
export { roundAmount, roundAmountSql } from './limits/amount.js'
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
export { ipAddressSchema, ipBlocksListSchema } from './limits/ip-block.js'
export { missingResult } from './limits/rebuild.js'
export { gcraRemove, undrained, windowRemove } from './limits/revert.js'
export { rollingWindow, type WindowVerdict, windowAdd } from './limits/rolling-window.js'
export { authenticatedAccount, checkAccountId, isAccountId } from './metering/accounts.js'
export { monthSchema, parseMonth, periodOf, periodOfMonth } from './metering/periods.js'
export { filterOf, usageQuerySchema } from './metering/usage.js'
export {
  addToSummary,
  countsInSummary,
  emptySummary,
  splitUsageRange,
  UNCATEGORIZED,
  USAGE_DAY_MS,
  USAGE_HOUR_MS,
  type UsageRangeParts,
  usageBuckets,
  usageCategory,
  usageKeyCategory,
} from './metering/usage-buckets.js'
export {
  argumentError,
  checkTollboothArg,
  fnOption,
  headersFollowHandler,
  integer,
  objectOption,
  optionError,
  parseInput,
  parseOptions,
  trustProxySchema,
} from './options.js'
export { clientIp, isForwarded } from './request.js'
export {
  ABORTED_STATUS,
  beginWork,
  clientGone,
  drainBody,
  endWork,
  guardedTwice,
  handlerFailed,
  headSent,
  keepAlive,
  responseEnded,
  responseStarted,
  type Settler,
  watchBody,
} from './response-end.js'
export { type Settlement, settlementOf } from './settle.js'
export { reportClosedOnce } from './storage/closed.js'
export { isInProcess, markInProcess } from './storage/in-process.js'
export { decodeLogCursor, encodeLogCursor } from './storage/memory.js'
export {
  ACCOUNT_COLUMNS,
  type AccountRow,
  accountFromRow,
  type Cells,
  EVENT_COLUMNS,
  EVENT_FIELDS,
  type EventRow,
  eventFromRow,
  KEY_COLUMNS,
  type KeyRow,
  keyFromRow,
  keyValues,
  rotation,
  SECRET_COLUMNS,
  type SecretRow,
  secretFromRow,
} from './storage/rows.js'
export { markSendWait } from './storage/send-wait.js'
export {
  type CounterBackend,
  countersFromState,
  type SyncCounterBackend,
  syncCounters,
  syncCountersFromState,
} from './storage/state-counters.js'
export { isRoute } from './tollbooth.js'
export { warnOnce } from './warnings.js'
