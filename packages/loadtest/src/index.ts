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
