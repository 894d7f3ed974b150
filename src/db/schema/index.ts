export * from './github.ts';
export * from './patches.ts';
export * from './runs.ts';
export * from './usage.ts';
export * from './users.ts';
export * from './keys.ts';
export * from './sessions.ts';
export * from './comments.ts';
