import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { planSwitchCommand } from '../cli/usage.ts';
import { estimatePromptTokens, estimateTextTokens } from '../llm/prompt.ts';
import { childEnvironment, ignoredVariables } from './environment.ts';
import { addFakeOAuth } from './fakes/github-oauth.ts';
import { generateAppKeyPair, startFakeGitHub, type FakeGitHub } from './fakes/github.ts';
import { postWebhook } from './fakes/github/webhooks.ts';
import { startFakeGemini, type FakeGemini, type GeminiTextReply } from './fakes/gemini.ts';
import { startFakeGroq, type FakeGroq, type GroqTextReply } from './fakes/groq.ts';
import { createGitRepository, headBranch, type GitRepository } from './git-repository.ts';
import {
  answerFixPrompt,
  demoAccount,
  demoBaseFiles,
  demoFilePath,
  demoHeadFiles,
  demoInstallationId,
  demoPullRequestNumber,
  demoPullRequestTitle,
  demoRepository,
  fixWithAiPayload,
  installationCreatedPayload,
  pullRequestOpenedPayload,
} from './scenario.ts';
import {
  bundledPostgresPid,
  findFreePort,
  processesUsingFolder,
  runCli,
  packageRoot,
  spawnService,
  stopLeftoverPostgres,
  type DemoService,
} from './service-process.ts';

/** Raised by `Demo.start` when `Demo.stop` was called before the start finished. */
export class DemoStoppedError extends Error {
  override name = 'DemoStoppedError';
}

/** Time limits of the steps, in ms. The first start of the bundled PostgreSQL runs initdb. */
const serviceStartTimeoutMs = 120_000;
const runTimeoutMs = 60_000;
const reportTimeoutMs = 30_000;
const previewTimeoutMs = 60_000;
/** How long `stop` waits for the step of `start` under way to end, in ms. */
const startStopTimeoutMs = 30_000;

/** Any fixed number works: the fake GitHub accepts JWTs of this app id only. */
const appId = '424242';
const fullName = `${demoRepository.owner}/${demoRepository.repo}`;

interface Finding {
  id: string;
  rule: string;
  severity: string;
  path: string;
  line: number;
  message: string;
}

interface PreviewFile {
  path: string;
  status: string;
  diff: string | null;
  error: string | null;
}

interface Preview {
  id: string;
  status: string;
  error: string | null;
  totalTokens: number;
  files: PreviewFile[];
}

/** Polls `probe` every 200 ms until it returns a value, and returns that value. */
async function poll<T>(
  description: string,
  timeoutMs: number,
  probe: () => Promise<T | undefined>,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`Timed out after ${timeoutMs} ms waiting for ${description}.`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/**
 * `npm run demo`: runs Fixwright against local fakes of GitHub, Groq and Gemini on 127.0.0.1,
 * opens a pull request, previews a fix and prints each step. `start` sets everything up and
 * returns while the service keeps running. `stop` stops and removes all that `start` created.
 */
export class Demo {
  private stopping = false;
  private stopped: Promise<void> | undefined;
  /** The flow that `start` runs, kept so that `stop` can wait for its current step. */
  private starting: Promise<void> | undefined;
  private folder: string | undefined;
  private dataDir: string | undefined;
  private repository: GitRepository | undefined;
  private github: FakeGitHub | undefined;
  private groq: FakeGroq | undefined;
  private gemini: FakeGemini | undefined;
  private service: DemoService | undefined;
  /** Environment of the service, also used for `fixwright users` commands against it. */
  private serviceEnv: NodeJS.ProcessEnv = {};

  constructor(
    private readonly env: NodeJS.ProcessEnv,
    private readonly print: (line: string) => void,
  ) {}

  /** Resolves with the reason when the service exits. Never resolves before `start` spawned it. */
  serviceExited(): Promise<string> {
    return this.service?.exited ?? new Promise(() => {});
  }

  /** Returns the last lines of service output, for error messages. */
  serviceOutput(): string {
    return this.service?.recentOutput() ?? '';
  }

  stop(): Promise<void> {
    this.stopping = true;
    this.stopped ??= this.stopEverything();
    return this.stopped;
  }

  start(): Promise<void> {
    this.starting = this.runFlow();
    return this.starting;
  }

  private async runFlow(): Promise<void> {
    const ignored = ignoredVariables(this.env);
    if (ignored.length > 0) {
      this.print(
        `Ignoring ${ignored.join(', ')} from the environment: the demo passes only its own ` +
          'settings to the service, so it never reaches a real GitHub, model provider or database.',
      );
    }
    this.folder = await mkdtemp(path.join(os.tmpdir(), 'fixwright-demo-'));
    // Under root the bundled PostgreSQL runs as the "postgres" user, which must enter this folder.
    await chmod(this.folder, 0o755);
    this.dataDir = path.join(this.folder, 'data');
    this.print(
      `Demo folder: ${this.folder} (DATA_DIR of the bundled PostgreSQL in data/ and the ` +
        'git repository; removed on exit)',
    );

    const secrets = {
      webhookSecret: randomBytes(32).toString('hex'),
      clientId: `Iv1.demo${randomBytes(6).toString('hex')}`,
      clientSecret: randomBytes(20).toString('hex'),
      groqKey: `gsk_demo_${randomBytes(16).toString('hex')}`,
    };
    const keys = generateAppKeyPair();
    this.print(`Generated a throwaway GitHub App private key and webhook secret (app id ${appId})`);

    const commits = await this.startFakes(keys.publicKeyPem, secrets);
    const service = await this.startService(keys.privateKeyPem, secrets);
    const token = await this.openPullRequest(service, secrets.webhookSecret, commits);
    const api = (route: string, init: RequestInit = {}) =>
      fetch(`${service.url}${route}`, {
        ...init,
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      });

    const { runId, findings } = await this.waitForFindings(api);
    const checkRunId = await this.waitForReport(commits.headSha);
    const preview = await this.previewFix(api, runId, findings);
    await this.printUsage(api);
    this.printModelCall();
    const fixWithAiFile = path.join(this.folder, 'fix-with-ai.json');
    await writeFile(fixWithAiFile, JSON.stringify(fixWithAiPayload(checkRunId, commits.headSha)));
    this.printHowToContinue(service, token, preview.id);
    this.printFixWithAi(service, secrets.webhookSecret, fixWithAiFile);
    this.printProcesses(service);
  }

  private checkNotStopping(): void {
    if (this.stopping) throw new DemoStoppedError('The demo was stopped before it finished starting.');
  }

  private async startFakes(
    publicKeyPem: string,
    secrets: { clientId: string; clientSecret: string },
  ): Promise<{ baseSha: string; headSha: string }> {
    this.checkNotStopping();
    this.github = await startFakeGitHub({ appId, publicKeyPem });
    this.github.setInstallation({ id: demoInstallationId, account: demoAccount });
    const oauth = addFakeOAuth(this.github, secrets);
    oauth.signInAs({ id: demoAccount.id, login: demoAccount.login, name: demoAccount.login });
    this.print(`Started the fake GitHub at ${this.github.url} (REST API and OAuth sign-in)`);

    this.checkNotStopping();
    this.groq = await startFakeGroq();
    this.groq.setHandler((request): GroqTextReply => {
      const user = request.messages.find((message) => message.role === 'user')?.content ?? '';
      return this.answerFix('Groq', user);
    });
    this.print(`Started the fake Groq at ${this.groq.url}`);
    this.checkNotStopping();
    this.gemini = await startFakeGemini();
    this.gemini.setHandler((request): GeminiTextReply => this.answerFix('Gemini', request.userText));
    this.print(`Started the fake Gemini at ${this.gemini.url} (for own keys stored on the dashboard)`);

    this.checkNotStopping();
    this.repository = await createGitRepository({
      base: demoBaseFiles,
      head: demoHeadFiles,
      parentDir: this.folder,
    });
    this.github.addRepository({ ...demoRepository, gitDir: this.repository.dir });
    this.github.addPullRequest({
      owner: demoRepository.owner,
      repo: demoRepository.repo,
      number: demoPullRequestNumber,
      baseSha: this.repository.baseSha,
      headSha: this.repository.headSha,
      headRef: headBranch,
      title: demoPullRequestTitle,
      user: demoAccount.login,
    });
    this.print(
      `Created repository ${fullName} with pull request #${demoPullRequestNumber}, which adds ` +
        `${demoFilePath}`,
    );
    return { baseSha: this.repository.baseSha, headSha: this.repository.headSha };
  }

  /**
   * Returns the fixed file for a fix prompt. When the prompt cannot be read, returns an empty
   * response, which the service reports as a failed call.
   */
  private answerFix(provider: string, user: string): { text: string } {
    try {
      return answerFixPrompt(user);
    } catch (error) {
      this.print(`The fake ${provider} could not read a fix prompt: ${(error as Error).message}`);
      return { text: '' };
    }
  }

  private async startService(
    privateKeyPem: string,
    secrets: { webhookSecret: string; clientId: string; clientSecret: string; groqKey: string },
  ): Promise<DemoService> {
    const port = await findFreePort();
    const url = `http://127.0.0.1:${port}`;
    const env = childEnvironment(this.env, {
      HOST: '127.0.0.1',
      PORT: String(port),
      PUBLIC_URL: url,
      DATA_DIR: this.dataDir!,
      LOG_LEVEL: 'info',
      APP_ID: appId,
      PRIVATE_KEY: privateKeyPem,
      WEBHOOK_SECRET: secrets.webhookSecret,
      GITHUB_API_URL: this.github!.url,
      GITHUB_URL: this.github!.url,
      GITHUB_CLIENT_ID: secrets.clientId,
      GITHUB_CLIENT_SECRET: secrets.clientSecret,
      GROQ_API_KEY: secrets.groqKey,
      GROQ_BASE_URL: this.groq!.url,
      GEMINI_BASE_URL: this.gemini!.url,
    });
    this.serviceEnv = env;

    this.checkNotStopping();
    this.print('Starting the service with the bundled PostgreSQL (the first start takes a few seconds)');
    const logPath = path.join(this.folder!, 'service.log');
    const service = spawnService(env, url, logPath);
    this.service = service;
    let exitReason: string | undefined;
    void service.exited.then((reason) => (exitReason = reason));
    try {
      await poll('the service to answer /healthz', serviceStartTimeoutMs, async () => {
        if (exitReason !== undefined) throw new Error(`The service exited during start-up (${exitReason}).`);
        this.checkNotStopping();
        const response = await fetch(`${url}/healthz`).catch(() => undefined);
        return response?.ok ? true : undefined;
      });
    } catch (error) {
      if (error instanceof DemoStoppedError) throw error;
      throw new Error(`${(error as Error).message}\nLast service output:\n${service.recentOutput()}`);
    }
    const postgresPid = bundledPostgresPid(this.dataDir!);
    this.print(
      `Service is up at ${url} (pid ${service.pid}); bundled PostgreSQL pid ${postgresPid ?? 'unknown'}`,
    );
    this.print(`Service log: ${logPath} (JSON lines, which tail -f follows while the demo runs)`);
    return service;
  }

  /** Delivers the installation and pull request webhooks and returns an API token. */
  private async openPullRequest(
    service: DemoService,
    webhookSecret: string,
    commits: { baseSha: string; headSha: string },
  ): Promise<string> {
    const target = { url: `${service.url}/webhooks/github`, secret: webhookSecret };
    const deliver = async (event: string, action: string, payload: Record<string, unknown>) => {
      const id = `demo-${event}-${randomBytes(8).toString('hex')}`;
      const response = await postWebhook(target, { id, event, payload });
      if (response.status !== 202) {
        throw new Error(`The ${event}.${action} webhook got HTTP ${response.status}: ${await response.text()}`);
      }
      this.print(`Delivered a signed ${event}.${action} webhook (HTTP ${response.status})`);
    };
    await deliver('installation', 'created', installationCreatedPayload());
    await deliver(
      'pull_request',
      'opened',
      pullRequestOpenedPayload({ ...commits, headRef: headBranch }),
    );
    // From now on the fake GitHub sends pull_request.synchronize itself when an apply commits
    // to the pull request's branch, so the service analyzes the new head as it would on GitHub.
    this.github!.setWebhookTarget(target);

    this.checkNotStopping();
    // The dashboard's tokens page lists the token by this label, so the line names it.
    const label = 'demo';
    const args = ['users', 'token', '--login', demoAccount.login, '--name', label];
    const token = (await runCli(args, this.serviceEnv)).trim();
    this.print(
      `Created a personal access token labelled "${label}" for ${demoAccount.login} with ` +
        `"npx fixwright ${args.join(' ')}"`,
    );
    return token;
  }

  private async waitForFindings(
    api: (route: string, init?: RequestInit) => Promise<Response>,
  ): Promise<{ runId: string; findings: Finding[] }> {
    const query = `repository=${encodeURIComponent(fullName)}&pr=${demoPullRequestNumber}`;
    const run = await poll('the run to finish', runTimeoutMs, async () => {
      this.checkNotStopping();
      const { runs } = (await (await api(`/api/runs?${query}`)).json()) as {
        runs: { id: string; status: string; error: string | null }[];
      };
      const latest = runs[0];
      if (latest?.status === 'failed') throw new Error(`Run ${latest.id} failed: ${latest.error}`);
      return latest?.status === 'completed' ? latest : undefined;
    });
    const detail = (await (await api(`/api/runs/${run.id}`)).json()) as { findings: Finding[] };
    this.print(`Run ${run.id} completed with ${detail.findings.length} findings:`);
    for (const finding of detail.findings) {
      const place = `${finding.path}:${finding.line}`;
      this.print(`  finding ${place} ${finding.severity} ${finding.rule}: ${finding.message}`);
    }
    return { runId: run.id, findings: detail.findings };
  }

  /**
   * Waits for the check run and the summary comment that the run posts on the fake GitHub, and
   * returns the check run's id.
   */
  private async waitForReport(headSha: string): Promise<number> {
    const github = this.github!;
    const { checkRun, comment } = await poll('the report on GitHub', reportTimeoutMs, async () => {
      this.checkNotStopping();
      const checkRun = github.checkRuns.find(
        (candidate) => candidate.headSha === headSha && candidate.status === 'completed',
      );
      const comment = github.issueComments.find(
        (candidate) => candidate.issueNumber === demoPullRequestNumber,
      );
      return checkRun && comment ? { checkRun, comment } : undefined;
    });
    this.print(
      `Report: check run "${checkRun.name}" on ${headSha.slice(0, 7)} concluded ` +
        `${checkRun.conclusion} with ${checkRun.annotations.length} annotations, and a summary ` +
        `comment (${comment.body.length} characters) is on ${fullName}#${demoPullRequestNumber}`,
    );
    return checkRun.id;
  }

  /**
   * Previews a fix of the hard-coded credential alone, as a client of the API chooses findings.
   * "Fix with AI" previews every finding that fits (see `printFixWithAi`).
   */
  private async previewFix(
    api: (route: string, init?: RequestInit) => Promise<Response>,
    runId: string,
    findings: Finding[],
  ): Promise<Preview> {
    const chosen = findings.find((finding) => finding.rule === 'secret/hardcoded-credential');
    if (!chosen) throw new Error('The run reported no secret/hardcoded-credential finding.');
    const created = await api(`/api/runs/${runId}/patch-requests`, {
      method: 'POST',
      body: JSON.stringify({ findingIds: [chosen.id] }),
    });
    if (created.status !== 202) {
      throw new Error(`Requesting a preview got HTTP ${created.status}: ${await created.text()}`);
    }
    const { id } = (await created.json()) as { id: string };
    this.print(`Requested a fix preview of ${chosen.path}:${chosen.line} ${chosen.rule} (patch request ${id})`);

    const preview = await poll('the preview to finish', previewTimeoutMs, async () => {
      this.checkNotStopping();
      const body = (await (await api(`/api/patch-requests/${id}`)).json()) as Preview;
      return ['ready', 'partially_ready', 'failed'].includes(body.status) ? body : undefined;
    });
    if (preview.status !== 'ready') {
      const reasons = preview.files.map((file) => `${file.path}: ${file.error}`).join('; ');
      throw new Error(`Preview ${id} ended ${preview.status}: ${preview.error ?? reasons}`);
    }
    this.print(`Preview ${id} is ready (${preview.totalTokens} tokens). Diff:`);
    for (const file of preview.files) {
      for (const line of (file.diff ?? '').trimEnd().split('\n')) this.print(`  ${line}`);
    }
    return preview;
  }

  private async printUsage(api: (route: string) => Promise<Response>): Promise<void> {
    const usage = (await (await api('/api/user/usage')).json()) as {
      plan: string;
      limit: number;
      used: number;
      remaining: number;
    };
    this.print(
      `Usage: plan ${usage.plan}, used ${usage.used}, remaining ${usage.remaining} ` +
        `of ${usage.limit} tokens`,
    );
  }

  /** Prints what the preview's model call cost, by the service's estimate and by the fake Groq. */
  private printModelCall(): void {
    const call = this.groq!.requests.find((request) => request.path.startsWith('/openai/v1/chat/completions'));
    const body = call?.body as
      | { messages: { role: string; content: string }[]; max_tokens?: number; max_completion_tokens?: number }
      | undefined;
    const usage = call?.reply?.usage;
    if (!body || !usage) return;
    const system = body.messages.find((message) => message.role === 'system')?.content ?? '';
    const user = body.messages.find((message) => message.role === 'user')?.content ?? '';
    const outputCap = body.max_completion_tokens ?? body.max_tokens ?? 0;
    const promptEstimate = estimatePromptTokens({ system, user });
    this.print(
      `Model call: the system prompt alone is ${estimateTextTokens(system)} tokens by ` +
        `Fixwright's estimate; the call reserved ${promptEstimate + outputCap} tokens (prompt ` +
        `estimate ${promptEstimate} + output cap ${outputCap}) and the fake Groq reported ` +
        `${usage.total_tokens} (prompt ${usage.prompt_tokens} + completion ` +
        `${usage.completion_tokens}, one token per 4 characters)`,
    );
  }

  private printHowToContinue(service: DemoService, token: string, patchRequestId: string): void {
    const curl = `curl -H "Authorization: Bearer ${token}"`;
    const lines = [
      `Dashboard: ${service.url}/`,
      'Sign in: open the dashboard and press "Sign in with GitHub". The fake GitHub signs you in ' +
        `as ${demoAccount.login} at once, without a password.`,
      `API token: ${token}`,
      `  ${curl} "${service.url}/api/user/usage"`,
      `Apply the preview: press Apply on ${service.url}/patch-requests/${patchRequestId}, or`,
      `  ${curl} -H "content-type: application/json" -d '{"mode":"commit"}' ` +
        `${service.url}/api/patch-requests/${patchRequestId}/apply`,
      `The commit mode adds a commit to ${headBranch}, so the fake GitHub sends ` +
        'pull_request.synchronize as GitHub does and the service starts a run for the new head.',
      `More tokens: cd ${packageRoot} && env -u DATABASE_URL DATA_DIR=${this.dataDir} ` +
        planSwitchCommand(demoAccount.login, 'pro'),
    ];
    for (const line of lines) this.print(line);
  }

  /**
   * Prints the command that sends the webhook GitHub sends when the check run's "Fix with AI"
   * button is pressed, since the fake GitHub has no web page with the button.
   */
  private printFixWithAi(service: DemoService, webhookSecret: string, payloadFile: string): void {
    const lines = [
      'Fix with AI: this command sends the webhook that pressing the check run\'s button sends. ' +
        'Run the plan command above first, because the tokens left on the free plan fit no ' +
        'finding, and run it before applying, because a commit supersedes the check run:',
      `  cd ${packageRoot} && env WEBHOOK_SECRET=${webhookSecret} npx fixwright receive ` +
        `--event check_run --payload ${payloadFile} --url ${service.url}/webhooks/github`,
    ];
    for (const line of lines) this.print(line);
  }

  private printProcesses(service: DemoService): void {
    this.print(
      `Processes: demo pid ${process.pid}, service pid ${service.pid}, ` +
        `PostgreSQL pid ${bundledPostgresPid(this.dataDir!) ?? 'unknown'}`,
    );
    this.print('Press Ctrl-C to stop the demo, its service, PostgreSQL and the fakes.');
  }

  /** Returns whether the flow of `start` ended, by success or failure, within `timeoutMs`. */
  private async flowEnded(timeoutMs: number): Promise<boolean> {
    if (!this.starting) return true;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), timeoutMs);
    });
    const ended = this.starting.then(
      () => true,
      () => true,
    );
    try {
      return await Promise.race([ended, timedOut]);
    } finally {
      clearTimeout(timer);
    }
  }

  private async stopEverything(): Promise<void> {
    const problems: string[] = [];
    if (this.service) {
      this.print(`Stopping the service (pid ${this.service.pid}) and its bundled PostgreSQL`);
      await this.service.stop();
    }
    // The service stops its PostgreSQL, unless it crashed or was killed after the time limit.
    if (this.dataDir && !(await stopLeftoverPostgres(this.dataDir))) {
      problems.push(`the bundled PostgreSQL in ${this.dataDir} did not stop`);
    }
    // A step of the flow still under way (creating the folder, the git repository or a fake)
    // would otherwise add to what is removed below. It ends at its next check of `stopping`,
    // or fails at once now that the service is gone.
    if (!(await this.flowEnded(startStopTimeoutMs))) {
      problems.push(`the demo's start did not end within ${startStopTimeoutMs} ms`);
    }
    const closing = [this.github?.close(), this.groq?.close(), this.gemini?.close()];
    for (const result of await Promise.allSettled(closing)) {
      if (result.status === 'rejected') problems.push(`a fake server failed to close: ${result.reason}`);
    }
    if (this.folder) {
      const remaining = await poll('processes using the demo folder to exit', 30_000, async () => {
        const pids = processesUsingFolder(this.folder!);
        return pids.length === 0 ? [] : undefined;
      }).catch(() => processesUsingFolder(this.folder!));
      if (remaining.length > 0) {
        problems.push(`processes ${remaining.join(', ')} still use ${this.folder}`);
      }
    }
    await this.repository?.cleanup();
    if (this.folder && problems.length === 0) await rm(this.folder, { recursive: true, force: true });
    if (problems.length > 0) {
      throw new Error(`Stopping the demo failed: ${problems.join('; ')}. ${this.folder} is kept.`);
    }
    this.print(`Stopped everything the demo started${this.folder ? ` and removed ${this.folder}` : ''}`);
  }
}
