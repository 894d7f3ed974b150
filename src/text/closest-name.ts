/**
 * Returns the largest edit distance at which `candidate` is suggested for `name`: a third of the
 * longer name, at least 1. A flat limit would pair short unrelated names, such as `port` and
 * `role` at 3 edits.
 */
export function maxSuggestionDistance(name: string, candidate: string): number {
  return Math.max(1, Math.floor(Math.max(name.length, candidate.length) / 3));
}

/**
 * Returns the candidate closest to `name` by edit distance, for a "Did you mean" hint, or null
 * when none is within maxSuggestionDistance. `name` is compared in lower case, so candidates
 * should be too.
 */
export function closestName(name: string, candidates: readonly string[]): string | null {
  const lowerName = name.toLowerCase();
  let best: string | null = null;
  let bestDistance = Infinity;
  for (const candidate of candidates) {
    const distance = editDistance(lowerName, candidate);
    if (distance > maxSuggestionDistance(lowerName, candidate)) continue;
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best;
}

/**
 * Returns the candidates at the least edit distance from `name`, compared without regard to
 * case and within maxSuggestionDistance, at most `limit` of them in the order given. Returns
 * an empty array when none is close.
 */
export function closestNames(name: string, candidates: readonly string[], limit: number): string[] {
  const lowerName = name.toLowerCase();
  let best: string[] = [];
  let bestDistance = Infinity;
  for (const candidate of candidates) {
    const distance = editDistance(lowerName, candidate.toLowerCase());
    if (distance > maxSuggestionDistance(lowerName, candidate) || distance > bestDistance) continue;
    if (distance < bestDistance) {
      best = [];
      bestDistance = distance;
    }
    if (best.length < limit) best.push(candidate);
  }
  return best;
}

/**
 * Optimal string alignment distance: the fewest insertions, deletions, substitutions and swaps
 * of two adjacent characters from `a` to `b`. A swap counts as one edit, so the common typo
 * `plna` is 1 edit from `plan`, where Levenshtein distance counts 2.
 */
function editDistance(a: string, b: string): number {
  let beforePrevious: number[] = [];
  let previous = Array.from({ length: b.length + 1 }, (_, index) => index);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1);
      let distance = Math.min(previous[j]! + 1, current[j - 1]! + 1, substitution);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        distance = Math.min(distance, beforePrevious[j - 2]! + 1);
      }
      current.push(distance);
    }
    beforePrevious = previous;
    previous = current;
  }
  return previous[b.length]!;
}
