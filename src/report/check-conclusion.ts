import type { Severity } from '../analysis/analyze.ts';

export type CheckConclusion = 'failure' | 'neutral' | 'success';
export type AnnotationLevel = 'failure' | 'warning' | 'notice';

/**
 * Maps the worst finding of a run to the check run's conclusion: an error fails the check, a
 * warning makes it neutral, and notices or no findings let it succeed.
 */
export function checkConclusion(worst: Severity | undefined): CheckConclusion {
  if (worst === 'error') return 'failure';
  if (worst === 'warning') return 'neutral';
  return 'success';
}

/** Maps a finding's severity to the annotation level the checks API accepts. */
export function annotationLevel(severity: Severity): AnnotationLevel {
  if (severity === 'error') return 'failure';
  return severity;
}
