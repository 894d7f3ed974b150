import type { TestContext } from 'vitest';

declare module 'vitest' {
  interface TaskMeta {
    /** Reason the test skipped itself, which `npm test` prints after the test's name. */
    skipReason?: string;
  }
}

/**
 * Skips the running test with `reason`. vitest's JSON report, which `npm test` reads, does not
 * contain the note of `skip`, so the reason is also stored in the test's meta.
 */
export function skipWithReason(test: TestContext, reason: string): never {
  test.task.meta.skipReason = reason;
  return test.skip(reason);
}
