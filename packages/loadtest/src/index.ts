export { startMockProvider, MOCK_MODELS } from './mock-provider/server.js';
export type {
  MockProvider,
  MockProviderOptions,
  MockProviderStats,
  MockOutageWindow,
  MockLatency,
  MockChatMessage,
} from './mock-provider/types.js';
export { estimateTokens, promptTokens, contentText, defaultReply } from './mock-provider/text.js';
export { mockEmbedding } from './mock-provider/embedding.js';

// Load testing: scenarios, the autocannon-based runner, SLO checks, baselines and reports (the `amas-load` CLI).
export { runScenario, applyRunOptions, checkReachable, DEFAULT_TARGET, type RunOptions, type RunProgress } from './load/run.js';
export {
  scenarioSchema,
  validateScenario,
  loadScenario,
  listScenarios,
  readScenarioFile,
  bundledScenariosDir,
  LoadConfigError,
  type Scenario,
  type ScenarioInput,
  type MixEntry,
  type ScenarioListing,
} from './load/scenario.js';
export { createRequestMix, userNames, type PlannedRequest } from './load/request-mix.js';
export {
  evaluateSlos,
  baselineOf,
  parseBaseline,
  readBaseline,
  writeBaseline,
  compareWithBaseline,
  REGRESSION_FLOOR,
  type LoadReport,
  type LatencySummary,
  type CacheSummary,
  type EntryReport,
  type TimelinePoint,
  type SloCheck,
  type SloId,
  type Baseline,
  type BaselineComparison,
  type RegressionCheck,
  type OutageReport,
} from './load/report.js';
export { renderSummary, renderProgress, verdictLine, failureSummary } from './load/render-text.js';
export { renderHtml, latencyChartSvg, throughputChartSvg } from './load/render-html.js';
