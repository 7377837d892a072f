export * from './errors.js';
export * from './clock.js';
export * from './events.js';
export * from './policies/policy.js';
export { parseOptions, describe as describeValue } from './options/validate.js';
