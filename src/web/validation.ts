import { z } from 'zod';
import { formatCount, joinWithAnd, pickForm } from '../text/plural.ts';
import { quoteValue } from '../text/quote-value.ts';
import { AppError } from './errors.ts';

/** Source of a request's input, named when the whole input is invalid. */
export type InputSource = 'query' | 'body';

export interface InputContext {
  where: InputSource;
  /** The input as the client sent it, so messages can quote the rejected value. */
  input: unknown;
  /** The schema that failed. The `.describe()` text of a field states what a valid value is. */
  schema: z.ZodType;
  /** A valid JSON body such as `{"findingIds": ["…"]}`, quoted when a body field is missing. */
  example?: string;
  /** Never quotes the sent values, for input that may carry a secret such as a provider key. */
  secret?: boolean;
}

/** Problems a message lists before it only counts the rest, so a bad list of 1,000 stays short. */
const maxSentences = 5;
/** Failing fields listed in the error's `fields` detail. */
const maxFields = 20;

/** Longest quoted value, in characters, before a message shortens it with an ellipsis. */
const maxQuotedLength = 80;

/**
 * Parses `input` with `schema` and returns the result, or raises the 400 that fromZodError
 * builds. `example` is a valid JSON body, quoted when a body field is missing.
 */
export function parseInput<T extends z.ZodType>(
  schema: T,
  input: unknown,
  where: InputSource,
  example?: string,
  options: { secret?: boolean } = {},
): z.output<T> {
  const parsed = schema.safeParse(input);
  if (!parsed.success) {
    throw fromZodError(parsed.error, { where, input, schema, example, secret: options.secret });
  }
  return parsed.data;
}

/**
 * Raises a 400 naming each parameter in `names` that the query string repeats, as in
 * `?pr=7&pr=8`. The route would read only the first value, while a proxy or log on the way may
 * go by another one.
 */
export function rejectRepeatedQuery(queries: Record<string, string[]>, names: readonly string[]): void {
  const repeated = names.filter((name) => (queries[name]?.length ?? 0) > 1);
  if (repeated.length === 0) return;
  const counts = repeated.map((name, index) => {
    const times = formatCount(queries[name]!.length, 'time');
    return index === 0 ? `${name} is sent ${times}` : `${name} ${times}`;
  });
  throw new AppError(
    'bad_request',
    `Invalid query: ${joinWithAnd(counts)}; send each parameter once.`,
    { fields: repeated },
  );
}

/**
 * Turns a zod failure into a 400 whose message has one sentence per invalid field, each naming
 * the field, the value sent and what to send, e.g. `Invalid pr "abc": expected a pull request
 * number such as 12.` The `fields` detail lists the failing fields.
 */
export function fromZodError(error: z.ZodError, context: InputContext): AppError {
  const issuesByField = new Map<string, z.core.$ZodIssue[]>();
  for (const issue of error.issues) {
    const field = fieldName(issue.path, context.where);
    const fieldIssues = issuesByField.get(field);
    if (fieldIssues) fieldIssues.push(issue);
    else issuesByField.set(field, [issue]);
  }
  const fields = [...issuesByField.keys()];
  const issues = [...issuesByField.values()].map(mainIssue);
  const sentences = [...new Set(issues.map((issue) => describeIssue(issue, context)))];
  const listed = sentences.slice(0, maxSentences);
  if (sentences.length > maxSentences) {
    const rest = sentences.length - maxSentences;
    listed.push(`${formatCount(rest, 'more problem')} ${pickForm(rest, 'is', 'are')} not listed.`);
  }
  return new AppError('bad_request', listed.join(' '), { fields: fields.slice(0, maxFields) });
}

/**
 * Picks the issue that a field's one sentence describes. A value can fail several checks, such
 * as a 5,000-character repository that is both too long and not OWNER/NAME. A check of the
 * value's form names what to send, so it comes first, and among size checks the strictest
 * bound: a pull request number over 2^53 fails both the safe integer and the column range.
 */
function mainIssue(issues: z.core.$ZodIssue[]): z.core.$ZodIssue {
  const formIssue = issues.find((issue) => issue.code !== 'too_big' && issue.code !== 'too_small');
  if (formIssue) return formIssue;
  return issues.reduce((strictest, issue) => (isStricter(issue, strictest) ? issue : strictest));
}

/** True when `issue` is a size issue whose bound is tighter than that of `other`. */
function isStricter(issue: z.core.$ZodIssue, other: z.core.$ZodIssue): boolean {
  if (issue.code === 'too_big' && other.code === 'too_big') return issue.maximum < other.maximum;
  if (issue.code === 'too_small' && other.code === 'too_small') return issue.minimum > other.minimum;
  return false;
}

function describeIssue(issue: z.core.$ZodIssue, context: InputContext): string {
  const field = fieldName(issue.path, context.where);
  const value = valueAt(context.input, issue.path);
  const description = descriptionAt(context.schema, issue.path);
  if (value === undefined && issue.path.length > 0) {
    const hint =
      context.where === 'body' && context.example
        ? `send a JSON body like ${context.example}`
        : `expected ${description ?? expectedOf(issue)}`;
    return `Missing ${field}: ${hint}.`;
  }
  const sent = context.secret ? '' : ` ${quoteValue(value, maxQuotedLength)}`;
  if (issue.path.length === 0 && context.example && issue.code === 'invalid_type') {
    return `Invalid ${field}${sent}: expected a JSON object like ${context.example}.`;
  }
  return `Invalid ${field}${sent}: expected ${expectation(issue, description)}.`;
}

/**
 * Returns what a valid value is: the field's description, the broken size limit of an array or a
 * string, or the description followed by a numeric bound that the description does not state.
 */
function expectation(issue: z.core.$ZodIssue, description: string | undefined): string {
  if (issue.code === 'custom') return issue.message;
  if (!description) return expectedOf(issue);
  if (issue.code !== 'too_small' && issue.code !== 'too_big') return description;
  // zod reports `int` for the safe integer range of .int(), a numeric bound like any other.
  if (issue.origin !== 'number' && issue.origin !== 'int') return expectedOf(issue);
  const limit = issue.code === 'too_small' ? issue.minimum : issue.maximum;
  if (description.includes(String(limit))) return description;
  const bound =
    issue.code === 'too_small'
      ? issue.inclusive ? 'at least' : 'more than'
      : issue.inclusive ? 'at most' : 'less than';
  return `${description}, ${bound} ${limit}`;
}

/** Builds the expectation from the issue alone, for fields without a description. */
function expectedOf(issue: z.core.$ZodIssue): string {
  switch (issue.code) {
    case 'invalid_type':
      return withArticle(issue.expected);
    case 'invalid_value':
      return `one of ${issue.values.map((value) => JSON.stringify(value)).join(', ')}`;
    case 'invalid_format':
      return `a valid ${issue.format}`;
    case 'too_small':
      return sizeLimit(issue.origin, issue.inclusive ? 'at least' : 'more than', issue.minimum);
    case 'too_big':
      return sizeLimit(issue.origin, issue.inclusive ? 'at most' : 'less than', issue.maximum);
    case 'not_multiple_of':
      return `a multiple of ${issue.divisor}`;
    case 'custom':
      return issue.message;
    default:
      return 'a valid value';
  }
}

function sizeLimit(origin: string, bound: string, limit: number | bigint): string {
  const count = Number(limit);
  switch (origin) {
    case 'array':
    case 'set':
      return `${bound} ${count} ${count === 1 ? 'item' : 'items'}`;
    case 'string':
      return `${bound} ${count} ${count === 1 ? 'character' : 'characters'}`;
    default:
      return `a number ${bound} ${limit}`;
  }
}

function withArticle(noun: string): string {
  return `${/^[aeiou]/.test(noun) ? 'an' : 'a'} ${noun}`;
}

/** Names a field as a client writes it: `findingIds[0]`, `options.mode`, or the input source. */
function fieldName(path: readonly PropertyKey[], where: InputSource): string {
  if (path.length === 0) return where;
  return path
    .map((key, index) => {
      if (typeof key === 'number') return `[${key}]`;
      return index === 0 ? String(key) : `.${String(key)}`;
    })
    .join('');
}

function valueAt(input: unknown, path: readonly PropertyKey[]): unknown {
  let value = input;
  for (const key of path) {
    if (value === null || typeof value !== 'object') return undefined;
    value = (value as Record<PropertyKey, unknown>)[key];
  }
  return value;
}

/** Finds the `.describe()` text of the schema at `path`, looking through wrappers and pipes. */
function descriptionAt(schema: z.ZodType, path: readonly PropertyKey[]): string | undefined {
  let node: z.ZodType | undefined = schema;
  for (const key of path) {
    node = node && childOf(innermost(node), key);
  }
  while (node) {
    if (node.description) return node.description;
    node = wrappedOf(node);
  }
  return undefined;
}

/** Returns the schema that an optional, nullable, default or transform pipe wraps, if any. */
function wrappedOf(node: z.ZodType): z.ZodType | undefined {
  const def = node._zod.def as { innerType?: z.ZodType; in?: z.ZodType };
  return def.innerType ?? def.in;
}

function innermost(node: z.ZodType): z.ZodType {
  let current = node;
  for (let inner = wrappedOf(current); inner; inner = wrappedOf(current)) current = inner;
  return current;
}

function childOf(node: z.ZodType, key: PropertyKey): z.ZodType | undefined {
  if (node instanceof z.ZodObject) return (node.shape as Record<PropertyKey, z.ZodType>)[key];
  if (node instanceof z.ZodArray && typeof key === 'number') return node.element as z.ZodType;
  return undefined;
}
