import { emptyFileMarker } from '../llm/empty-file-marker.ts';
import { fixAction } from '../report/publish-check-run.ts';
import { githubTimestamp } from './fakes/github/route-helpers.ts';
import { examplePayload } from './fakes/github/webhooks.ts';

/**
 * The pull request that `npm run demo` opens: the repository, pull request and installation of
 * the `installation.created` and `pull_request.opened` examples in @octokit/webhooks-examples,
 * with one small file whose new lines the built-in rules report three times.
 */

export const demoAccount = { login: 'Codertocat', id: 21031067, type: 'User' as const };
export const demoRepository = { owner: 'Codertocat', repo: 'Hello-World', id: 186853002 };
export const demoPullRequestNumber = 2;
export const demoInstallationId = 957387;
export const demoFilePath = 'src/notify.ts';
export const demoPullRequestTitle = `Add ${demoFilePath}`;

export const demoBaseFiles: Record<string, string> = {
  'README.md': '# Hello-World\n',
  [demoFilePath]: `export function notify(user: string) {
  return send(user);
}
`,
};

/** The head commit adds a hard-coded credential, a console.log and a debugger statement. */
export const demoHeadFiles: Record<string, string> = {
  [demoFilePath]: `const apiKey = "sk_live_51HqLyjWDarjtT1zdp7dc";

export function notify(user: string) {
  console.log('notify', user);
  debugger;
  return send(user, apiKey);
}
`,
};

/** Returns the `installation.created` example, whose sender becomes the installation's owner. */
export function installationCreatedPayload(): Record<string, any> {
  const payload = examplePayload('installation', 'created');
  payload.installation.id = demoInstallationId;
  return payload;
}

/**
 * Returns the `pull_request.opened` example, pointed at the demo repository's commits. The
 * service orders a pull request's events by `pull_request.updated_at`, so `updatedAt` replaces
 * the example's time of 2019: a payload written now is then newer than the runs that a service
 * stored from earlier payloads and from an apply's commits.
 */
export function pullRequestOpenedPayload(commits: {
  baseSha: string;
  headSha: string;
  headRef: string;
  updatedAt?: Date;
}): Record<string, any> {
  const payload = examplePayload('pull_request', 'opened');
  if (commits.updatedAt) payload.pull_request.updated_at = githubTimestamp(commits.updatedAt);
  payload.installation = { id: demoInstallationId };
  payload.number = demoPullRequestNumber;
  payload.pull_request.number = demoPullRequestNumber;
  payload.pull_request.title = demoPullRequestTitle;
  payload.pull_request.head.sha = commits.headSha;
  payload.pull_request.head.ref = commits.headRef;
  payload.pull_request.base.sha = commits.baseSha;
  payload.pull_request.base.ref = 'main';
  return payload;
}

/**
 * Returns the `check_run.requested_action` example as GitHub sends it when `Codertocat` presses
 * "Fix with AI" on the demo pull request's check run `checkRunId` of `headSha`.
 */
export function fixWithAiPayload(checkRunId: number, headSha: string): Record<string, any> {
  const payload = examplePayload('check_run', 'requested_action');
  payload.installation = { id: demoInstallationId };
  payload.check_run.id = checkRunId;
  payload.check_run.head_sha = headSha;
  payload.repository.id = demoRepository.id;
  payload.repository.name = demoRepository.repo;
  payload.repository.full_name = `${demoRepository.owner}/${demoRepository.repo}`;
  payload.repository.owner.login = demoAccount.login;
  payload.repository.owner.id = demoAccount.id;
  payload.sender.login = demoAccount.login;
  payload.sender.id = demoAccount.id;
  payload.requested_action = { identifier: fixAction.identifier };
  return payload;
}

interface PromptFinding {
  ruleId: string;
  line: number;
  /** Left out of the prompt when it equals `line`. */
  endLine?: number;
}

/** Reads the findings, one JSON object per line, and the file text from a fix prompt's user message. */
function parseFixPrompt(user: string): { findings: PromptFinding[]; content: string } {
  const findingsMatch = /<findings>\n([\s\S]*?)<\/findings>/.exec(user);
  const fileMatch = /<(file(?:-[0-9a-f]{16})?)[^>]*>\n([\s\S]*)\n<\/\1>$/.exec(user);
  if (!findingsMatch || !fileMatch) {
    throw new Error('The fix prompt has no findings block or no file block.');
  }
  const lines = findingsMatch[1]!.split('\n').filter((line) => line !== '');
  return { findings: lines.map((line) => JSON.parse(line) as PromptFinding), content: fileMatch[2]! };
}

/**
 * Returns the fixed file for the user message of a fix prompt, as the system prompt requests
 * of a model: only the listed findings are fixed. A hard-coded credential becomes
 * `process.env.DEMO_API_KEY`, and the lines of debug statements are removed. Other lines stay
 * as they are. A fixed file with nothing but white space left is returned as the file's
 * empty-file marker. The demo's fake Groq and fake Gemini both reply with it.
 */
export function answerFixPrompt(user: string): { text: string } {
  const { findings, content } = parseFixPrompt(user);
  const lines = content.split('\n');
  const removed = new Set<number>();
  for (const finding of findings) {
    const index = finding.line - 1;
    if (finding.ruleId === 'secret/hardcoded-credential') {
      lines[index] = lines[index]!.replace(/(["'`])[^"'`]*\1/, 'process.env.DEMO_API_KEY');
    } else if (finding.ruleId.startsWith('debug/')) {
      const endLine = finding.endLine ?? finding.line;
      for (let line = finding.line; line <= endLine; line += 1) removed.add(line - 1);
    }
  }
  const text = lines.filter((_, index) => !removed.has(index)).join('\n');
  return { text: text.trim() === '' ? emptyFileMarker(content) : text };
}
