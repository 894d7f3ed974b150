import { appSummary } from './app.ts';
import { resolveCommit } from './git.ts';
import { nodeId } from './payloads.ts';
import { FakeGitHubError, type FakeResponse, type Route } from './router.ts';
import {
  githubTimestamp,
  json,
  paginate,
  param,
  requireRepository,
  type Context,
} from './route-helpers.ts';
import type {
  AnnotationRecord,
  CheckRunActionRecord,
  CheckRunRecord,
  FakeState,
} from './state.ts';

/**
 * Check runs of the fake: create, update, get, list for a ref and list annotations. Limits
 * follow GitHub's REST documentation for checks. A request takes at most 50 annotations and
 * three actions, with a label of 20, an identifier of 20 and a description of 40 characters.
 * The summary and the text are at most 65535 characters each. The wording of the 422 messages
 * is the fake's own.
 */

const checksDocs = 'https://docs.github.com/rest/checks/runs';
const statuses = ['queued', 'in_progress', 'completed'];
const conclusions = [
  'action_required',
  'cancelled',
  'failure',
  'neutral',
  'success',
  'skipped',
  'stale',
  'timed_out',
];
const annotationLevels = ['notice', 'warning', 'failure'];

/** Maximum annotations that one create or update request may carry. */
export const maxAnnotationsPerRequest = 50;

function invalid(message: string): FakeGitHubError {
  return new FakeGitHubError(422, message, checksDocs);
}

function readBody(context: Context): Record<string, unknown> {
  const body = context.request.body;
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw invalid('Invalid request.\n\nThe body must be a JSON object.');
  }
  return body as Record<string, unknown>;
}

function validateAnnotations(value: unknown): AnnotationRecord[] {
  if (value === undefined) {
    return [];
  }
  if (!Array.isArray(value)) {
    throw invalid('Invalid request.\n\nFor "annotations", the value must be an array.');
  }
  if (value.length > maxAnnotationsPerRequest) {
    throw invalid(
      `Invalid request.\n\nOnly ${maxAnnotationsPerRequest} annotations are allowed per ` +
        `request, got ${value.length}.`,
    );
  }
  return value.map((entry: Record<string, unknown>, index) => {
    const required = ['path', 'start_line', 'end_line', 'annotation_level', 'message'];
    for (const key of required) {
      if (entry[key] === undefined) {
        throw invalid(`Invalid request.\n\n"${key}" wasn't supplied in annotations[${index}].`);
      }
    }
    if (!annotationLevels.includes(String(entry.annotation_level))) {
      throw invalid(`Invalid request.\n\nannotations[${index}].annotation_level is invalid.`);
    }
    const startLine = Number(entry.start_line);
    const endLine = Number(entry.end_line);
    if (!Number.isInteger(startLine) || startLine < 1 || endLine < startLine) {
      throw invalid(`Invalid request.\n\nannotations[${index}] has an invalid line range.`);
    }
    const annotation: AnnotationRecord = {
      path: String(entry.path),
      start_line: startLine,
      end_line: endLine,
      annotation_level: entry.annotation_level as AnnotationRecord['annotation_level'],
      message: String(entry.message),
    };
    if (entry.title !== undefined) annotation.title = String(entry.title);
    if (entry.raw_details !== undefined) annotation.raw_details = String(entry.raw_details);
    return annotation;
  });
}

function validateActions(value: unknown): CheckRunActionRecord[] | undefined {
  if (value === undefined) {
    return undefined;
  }
  if (!Array.isArray(value) || value.length > 3) {
    throw invalid('Invalid request.\n\n"actions" must be an array of at most 3 actions.');
  }
  return value.map((entry: Record<string, unknown>, index) => {
    const label = String(entry.label ?? '');
    const description = String(entry.description ?? '');
    const identifier = String(entry.identifier ?? '');
    const limits: [string, string, number][] = [
      ['label', label, 20],
      ['description', description, 40],
      ['identifier', identifier, 20],
    ];
    for (const [name, text, max] of limits) {
      if (text.length === 0 || text.length > max) {
        throw invalid(
          `Invalid request.\n\nactions[${index}].${name} must be 1 to ${max} characters.`,
        );
      }
    }
    return { label, description, identifier };
  });
}

/** Applies `output` of a create or update body; the annotations are appended. */
function applyOutput(record: CheckRunRecord, value: unknown): void {
  if (value === undefined) {
    return;
  }
  const output = value as Record<string, unknown>;
  if (typeof output.title !== 'string' || typeof output.summary !== 'string') {
    throw invalid('Invalid request.\n\n"title" and "summary" are required in "output".');
  }
  if (output.summary.length > 65535) {
    throw invalid('Invalid request.\n\noutput.summary is longer than 65535 characters.');
  }
  if (typeof output.text === 'string' && output.text.length > 65535) {
    throw invalid('Invalid request.\n\noutput.text is longer than 65535 characters.');
  }
  const annotations = validateAnnotations(output.annotations);
  record.output = {
    title: output.title,
    summary: output.summary,
    text: typeof output.text === 'string' ? output.text : null,
  };
  record.annotations.push(...annotations);
}

/** Applies status, conclusion and their timestamps of a create or update body. */
function applyStatus(record: CheckRunRecord, body: Record<string, unknown>): void {
  if (body.status !== undefined) {
    if (!statuses.includes(String(body.status))) {
      throw invalid(`Invalid request.\n\n${JSON.stringify(body.status)} is not a valid status.`);
    }
    record.status = body.status as CheckRunRecord['status'];
  }
  if (body.conclusion !== undefined) {
    if (!conclusions.includes(String(body.conclusion))) {
      throw invalid(
        `Invalid request.\n\n${JSON.stringify(body.conclusion)} is not a valid conclusion.`,
      );
    }
    record.conclusion = String(body.conclusion);
    record.status = 'completed';
  }
  if (record.status === 'completed') {
    if (record.conclusion === null) {
      throw invalid('Invalid request.\n\n"conclusion" is required when "status" is "completed".');
    }
    record.completedAt ??= String(body.completed_at ?? githubTimestamp(new Date()));
  }
}

export function checkRunPayload(state: FakeState, record: CheckRunRecord) {
  const apiBase = `${state.baseUrl}/repos/${record.owner}/${record.repo}`;
  const url = `${apiBase}/check-runs/${record.id}`;
  return {
    id: record.id,
    head_sha: record.headSha,
    node_id: nodeId('CheckRun', String(record.id)),
    external_id: record.externalId,
    url,
    html_url: `${state.baseUrl}/${record.owner}/${record.repo}/runs/${record.id}`,
    details_url: record.detailsUrl,
    status: record.status,
    conclusion: record.conclusion,
    started_at: record.startedAt,
    completed_at: record.completedAt,
    output: {
      ...record.output,
      annotations_count: record.annotations.length,
      annotations_url: `${url}/annotations`,
    },
    name: record.name,
    check_suite: { id: record.id * 10 },
    app: record.app,
    pull_requests: [],
  };
}

function installationOf(context: Context): number | null {
  return context.credential.kind === 'installation' ? context.credential.installationId : null;
}

async function createCheckRun(context: Context): Promise<FakeResponse> {
  const repository = requireRepository(context);
  const body = readBody(context);
  if (typeof body.name !== 'string' || body.name === '') {
    throw invalid('Invalid request.\n\n"name" wasn\'t supplied.');
  }
  const headSha = typeof body.head_sha === 'string' ? body.head_sha : '';
  const commit = await resolveCommit(repository.gitDir, headSha);
  if (!/^[0-9a-f]{40}$/.test(headSha) || commit !== headSha) {
    throw invalid(`No commit found for SHA: ${headSha}`);
  }
  const record: CheckRunRecord = {
    id: context.state.nextId(),
    owner: repository.owner,
    repo: repository.repo,
    name: body.name,
    headSha,
    externalId: typeof body.external_id === 'string' ? body.external_id : '',
    status: 'queued',
    conclusion: null,
    detailsUrl: typeof body.details_url === 'string' ? body.details_url : null,
    startedAt: String(body.started_at ?? githubTimestamp(new Date())),
    completedAt: null,
    output: { title: null, summary: null, text: null },
    annotations: [],
    actions: validateActions(body.actions) ?? [],
    installationId: installationOf(context),
    app: appSummary(context.state),
  };
  applyStatus(record, body);
  applyOutput(record, body.output);
  context.state.checkRuns.set(record.id, record);
  return json(201, checkRunPayload(context.state, record));
}

function requireCheckRun(context: Context): CheckRunRecord {
  const repository = requireRepository(context);
  const record = context.state.checkRuns.get(Number(param(context, 'check_run_id')));
  const sameRepository =
    record !== undefined &&
    record.owner.toLowerCase() === repository.owner.toLowerCase() &&
    record.repo.toLowerCase() === repository.repo.toLowerCase();
  if (!record || !sameRepository) {
    throw new FakeGitHubError(404, 'Not Found', checksDocs);
  }
  return record;
}

function updateCheckRun(context: Context): FakeResponse {
  const record = requireCheckRun(context);
  const body = readBody(context);
  if (typeof body.name === 'string') record.name = body.name;
  if (typeof body.external_id === 'string') record.externalId = body.external_id;
  if (typeof body.details_url === 'string') record.detailsUrl = body.details_url;
  const actions = validateActions(body.actions);
  if (actions) record.actions = actions;
  applyStatus(record, body);
  applyOutput(record, body.output);
  return json(200, checkRunPayload(context.state, record));
}

function getCheckRun(context: Context): FakeResponse {
  return json(200, checkRunPayload(context.state, requireCheckRun(context)));
}

async function listCheckRunsForRef(context: Context): Promise<FakeResponse> {
  const repository = requireRepository(context);
  const ref = param(context, 'ref');
  const sha = await resolveCommit(repository.gitDir, ref);
  if (!sha) {
    throw new FakeGitHubError(422, `No commit found for SHA: ${ref}`, checksDocs);
  }
  const checkName = context.url.searchParams.get('check_name');
  const appId = context.url.searchParams.get('app_id');
  const matching = [...context.state.checkRuns.values()].filter(
    (record) =>
      record.headSha === sha &&
      record.owner.toLowerCase() === repository.owner.toLowerCase() &&
      record.repo.toLowerCase() === repository.repo.toLowerCase() &&
      (checkName === null || record.name === checkName) &&
      (appId === null || String(record.app.id) === appId),
  );
  // Newest first, as GitHub lists them.
  const payloads = matching.reverse().map((record) => checkRunPayload(context.state, record));
  const linkPath = `/repositories/${repository.id}/commits/${ref}/check-runs`;
  const { page, link } = paginate(payloads, context.url, context.state.baseUrl, linkPath);
  const body = { total_count: payloads.length, check_runs: page };
  return json(200, body, link ? { link } : undefined);
}

function listAnnotations(context: Context): FakeResponse {
  const record = requireCheckRun(context);
  const repository = requireRepository(context);
  const linkPath = `/repositories/${repository.id}/check-runs/${record.id}/annotations`;
  const { page, link } = paginate(
    record.annotations,
    context.url,
    context.state.baseUrl,
    linkPath,
  );
  return json(200, page, link ? { link } : undefined);
}

export const checkRoutes: Route<FakeState>[] = [
  {
    method: 'POST',
    pattern: '/repos/:owner/:repo/check-runs',
    auth: 'installation',
    handle: createCheckRun,
  },
  {
    method: 'PATCH',
    pattern: '/repos/:owner/:repo/check-runs/:check_run_id',
    auth: 'installation',
    handle: updateCheckRun,
  },
  {
    method: 'GET',
    pattern: '/repos/:owner/:repo/check-runs/:check_run_id',
    auth: 'installation',
    handle: getCheckRun,
  },
  {
    method: 'GET',
    pattern: '/repos/:owner/:repo/check-runs/:check_run_id/annotations',
    auth: 'installation',
    handle: listAnnotations,
  },
  {
    method: 'GET',
    pattern: '/repos/:owner/:repo/commits/:ref/check-runs',
    auth: 'installation',
    handle: listCheckRunsForRef,
  },
];
