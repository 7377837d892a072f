// Errors, time, events, logging
export * from './errors.js';
export * from './clock.js';
export * from './events.js';
export * from './logger.js';
export { parseOptions, describe as describeValue } from './options/validate.js';
export { parseDuration, durationSchema } from './options/duration.js';
export { stableKey, stableStringify } from './util/stable-key.js';
export { seededRandom } from './util/seeded-random.js';

// Engine and options
export { Amas, createAmas, isAmas, resolveAmas, type SharedAmasOptions, type LocalAmasOptions } from './amas.js';
export type { AmasOptions, RouteOptions, HttpOptions } from './options/schema.js';
export { amasOptionsSchema, routeOptionsSchema } from './options/schema.js';

// Policies
export * from './policies/policy.js';
export * from './policies/circuit-breaker.js';
export * from './policies/breaker-registry.js';
export * from './policies/retry.js';
export * from './policies/retry-after.js';
export * from './policies/timeout.js';
export * from './policies/bulkhead.js';
export * from './policies/single-flight.js';
export * from './policies/compose.js';
export * from './policies/limit-decision.js';
export * from './policies/in-memory-limiter.js';
export * from './policies/token-bucket.js';
export * from './policies/sliding-window.js';
export * from './policies/limiters.js';
export * from './policies/limit-check.js';
export * from './policies/store-limiter.js';
export * from './policies/shared-single-flight.js';
export * from './policies/shared-breaker.js';

// Stores: where state shared between replicas lives
export * from './stores/store.js';
export { MemoryKeyspace } from './stores/memory-keyspace.js';
export { MemoryStore, type MemoryStoreOptions } from './stores/memory-store.js';
export { RedisStore, type RedisStoreOptions } from './stores/redis-store.js';
export { STORE_LATENCY_BUCKETS_MS } from './stores/store-latency.js';
export { DEFAULT_STORE_PREFIX } from './stores/store-key.js';
export * from './stores/lease-scripts.js';
export * from './stores/limiter-scripts.js';

// Tiered cache
export * from './cache/cache-level.js';
export * from './cache/cache-record.js';
export * from './cache/cache-schema.js';
export * from './cache/value-codec.js';
export { MemoryLru, type L1Entry, type MemoryLruOptions } from './cache/memory-lru.js';
export { RedisLevel } from './cache/redis-level.js';
export { PostgresLevel } from './cache/postgres-level.js';
export { FileLevel } from './cache/file-level.js';
export { TieredCache, CacheView, type CacheFactory, type FactoryContext, type TieredCacheStats, type LevelStats } from './cache/tiered-cache.js';
export type { TieredCacheOptions, CacheCallOptions, CacheSetOptions, GetOrSetOptions } from './cache/tiered-cache-options.js';
export { getOrSetOptionsSchema, tieredCacheOptionsSchema } from './cache/tiered-cache-options.js';
export { cached, Cached, setDefaultCache, type CachedOptions, type CachedFunction } from './cache/cached.js';
export { warmUp, type WarmUpItem, type WarmUpOptions, type WarmUpReport } from './cache/warm-up.js';

// HTTP pipeline (used by adapters)
export * from './http/neutral-request.js';
export * from './http/identity.js';
export * from './http/rate-limit-headers.js';
export * from './http/rejection.js';
export { HttpPipeline, RequestTicket, PER_RESPONSE_HEADERS } from './http/pipeline.js';
export type { Admission, CompiledRoute, Outcome, ResponseStep, SharedResponse, ResolvedHttpOptions } from './http/pipeline.js';
export * from './http/node-response.js';
export { ResponseLayer, ResponsePlan, type CacheStatus, type CompiledResponseOptions, type FinalResponse } from './http/response-layer.js';
export type { ResponseCacheOption, CompressionOption, FieldsOption, SemanticCacheOption } from './http/response-options.js';
export * from './http/field-filter.js';
export * from './http/content-encoding.js';
export * from './http/cache-control.js';
export * from './http/etag.js';
export * from './http/request-cache-key.js';

// Metrics
export { AmasMetrics, type MetricsOptions } from './metrics/amas-metrics.js';
// Semantic cache (issue 5, in progress): embedders, the near-miss guard, vector indexes, the cache
export { cosine, normalize, EmbeddingInputError, EmbeddingFailedError, type Embedder, type EmbedOptions, type EmbeddingFailureReason } from './semantic/embedder.js';
export { UniversalSentenceEncoderEmbedder, USE_DIMENSIONS, type UniversalSentenceEncoderEmbedderOptions, type UseEmbedderStats } from './semantic/use-embedder.js';
export { CachedEmbedder, type CachedEmbedderOptions, type CachedEmbedderStats } from './semantic/embedding-cache.js';
export { TransformersEmbedder, type TransformersEmbedderOptions } from './semantic/transformers-embedder.js';
export { EndpointEmbedder, type EndpointEmbedderOptions, type EndpointEmbedderStats, type EndpointEmbedderRoute } from './semantic/endpoint-embedder.js';
export * from './semantic/near-miss-guard.js';
export { createVectorIndex, AutoVectorIndex, DEFAULT_AUTO_THRESHOLD, type AutoVectorIndexOptions, type VectorIndex, type VectorIndexKind, type VectorIndexOptions, type VectorSearchResult } from './semantic/vector-index.js';
export { ExactVectorIndex, type ExactVectorIndexOptions } from './semantic/exact-index.js';
export { HnswVectorIndex, type HnswVectorIndexOptions } from './semantic/hnsw-index.js';
export { SemanticCache, DEFAULT_SEMANTIC_THRESHOLD, type SemanticCacheOptions, type SemanticCacheStats, type SemanticHit, type SemanticSetOptions, type SemanticGetOptions, type SimilarEntry } from './semantic/semantic-cache.js';
export { semanticCached, type SemanticCachedOptions } from './semantic/semantic-cached.js';
export { answerFromJson, answerFromStream, completionJson, completionStream, type ChatCompletionAnswer } from './http/chat-completion-answer.js';
export type { SemanticStatus } from './http/semantic-response.js';
export { chatPartition, samplingBucket, messageText, type ChatRequestLike, type ChatMessageLike } from './semantic/chat-partition.js';

// AI provider layer: the pooled client, routing across endpoints, tokens, prices, cost and budgets.
export * from './ai/provider-types.js';
export { ProviderClient, providerClientOptionsSchema, endpointId, upstreamUrl, type ProviderClientOptions, type ProviderCallOptions, type CloseOptions, type OriginStats, type LatencyStats } from './ai/provider-client.js';
export { ModelRouter, isRetryableUpstreamError, matchesFallback, routeAttemptsOf, type RouteAttempt, type RouteResult, type RouteCallOptions, type ChatCallOptions, type RouterEndpointStats, type RouterModelStats, type ModelRouterEvents } from './ai/model-router.js';
export { resolveRouterOptions, DEFAULT_FALLBACK_ON, FALLBACK_CONDITION_NAMES, endpointConfigSchema, modelRouteSettingsSchema, routerRetryOptionsSchema, type ModelRouterOptions, type ModelRouteOptions, type ModelRouteSettings, type RouterRetryOptions, type RouterBreakerOptions, type BreakerFactory, type FallbackCondition } from './ai/router-options.js';
export { BALANCING_STRATEGIES, createBalancer, RoundRobinBalancer, WeightedBalancer, LeastOutstandingBalancer, LatencyAwareBalancer, LatencyEwma, type Balancer, type BalancerCandidate, type BalancerOptions, type BalancingStrategy, type LatencyEwmaOptions } from './ai/balancer.js';
export { HealthChecker, healthCheckOptionsSchema, type HealthCheckOptions, type HealthCheckerOptions, type HealthProbe, type HealthStatus, type HealthEvents, type CheckedEndpoint } from './ai/health-checker.js';
export { OutlierDetector, isOutlierError, outlierDetectionOptionsSchema, type OutlierDetectionOptions, type OutlierEvents, type OutlierEndpointStats, type EjectionReason } from './ai/outlier-detector.js';
export { watchStreamUsage, type StreamOutcome, type StreamUsageOptions } from './ai/stream-usage.js';
export { countTextTokens, countChatTokens, estimateRequestTokens, requestKind, usageFromResponse, usageFromStreamChunks, StreamUsageCounter, imageTokens, imageSizeFromDataUrl, modelTokenizer, preloadEncodings, loadedEncodings, normalizeModelId, type TokenCount, type ChatCountOptions, type TextCountOptions, type Estimator, type ImageSize, type RequestKind, type RequestEstimate, type RequestEstimateOptions, type StreamUsage, type StreamCountOptions, type EncodingName, type ModelTokenizer } from './ai/token-counter.js';
export { PriceTable, createPriceTable, costOf, blended, priceTableOptionsSchema, DEFAULT_PRICES, DEFAULT_ALIASES, DEFAULT_GROUPS, PRICE_TABLE_AS_OF, PRICE_SOURCES, type PriceTableOptions, type PriceOverride, type PriceEntry, type ResolvedPrice } from './ai/pricing.js';
export * from './policies/micro-batcher.js';
export { CostTracker, type CostTrackerOptions, type TrackRequestInput, type ReserveInput, type SummaryQuery, type ListRecordsQuery, type CostTrackerEvents, type CostTrackerStats } from './ai/cost-tracker.js';
export { Budgets, periodOf, type BudgetScope, type BudgetPeriod, type BudgetScopeKind, type BudgetReservation, type ReservedBudget, type BudgetStatus, type BudgetAlert, type BudgetExceededEvent, type BudgetSettlement, type BudgetsEvents, type BudgetsStats, type PeriodWindow } from './ai/budgets.js';
export type { BudgetLimits, BudgetRules, BudgetsOptions, BudgetAlertOptions, RecordBatchingOptions, MemoryUsageRecordsOptions, RedisUsageRecordsOptions, PostgresUsageRecordsOptions, PgQueryable, RecommendationOptions, DayInput } from './ai/cost-options.js';
export { MemoryUsageRecords, RecordBuffer, summarize, type UsageRecord, type UsageRecordStore, type UsageRecordStats, type UsageSummary, type UsageTotals, type UsageScope, type DayRange, type DailyUsage, type PromptStat, type RecordQuery, type RecordBatch } from './ai/usage-records.js';
export { RedisUsageRecords } from './ai/usage-records-redis.js';
export { PostgresUsageRecords } from './ai/usage-records-postgres.js';
export { getRecommendations, recommend, type Recommendation, type CheaperModelRecommendation, type RepeatedPromptsRecommendation, type TruncatedRecommendation, type ErrorsRecommendation, type UsageFacts } from './ai/recommendations.js';
export { AiService, type AiOptions, type AiCallOptions, type AiCallResult, type AiStreamResult, type AiServiceDeps } from './ai/ai-service.js';
export { EmbeddingBatcher, type EmbeddingBatchOptions, type EmbeddingAnswer } from './ai/embedding-batcher.js';
export { serveAi, serveAiRequest, serveAiUsage, callerOf, checkAiEndpoint, type AiEndpoint, type AiHost, type ServeAiOptions } from './http/ai-handler.js';
export { AiMetrics } from './metrics/ai-metrics.js';
// Health: liveness and readiness of the engine, for probes
export { checkHealth, healthResponse, healthStatusCode, serveHealth, parseHealthOptions, checkHealthOptionsSchema, type CheckHealthOptions, type HealthCheckResult, type HealthHttpResponse, type HealthKind, type HealthReport, type HealthState } from './health/health.js';
// Scaling metrics: autoscaling events, their effectiveness, and a receiver for Kubernetes events
export { ScalingMetrics, SCALING_ACTIONS, scalingEventInputSchema, scalingDeploymentSchema, replicasAfter, type ScalingAction, type ScalingEvent, type ScalingEventInput, type ScalingMetadata, type ScalingTime, type ScalingWindow, type RecordScalingResult, type RequestRateReader, type EffectivenessOptions, type ScalingEffectiveness, type ScalingMetricsOptions } from './scaling/scaling-metrics.js';
export { scalingEventFromKubernetes, receiveScalingEvents, serveScalingWebhook, type KubernetesEventOptions, type ReceiveScalingOptions, type ReceiveScalingReport } from './scaling/scaling-events.js';
export { prometheusRequestRate, type PrometheusRequestRateOptions } from './scaling/request-rate.js';
