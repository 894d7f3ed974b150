import { sign } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  generateAppKeyPair,
  startFakeGitHub,
  type AppKeyPair,
  type FakeGitHub,
} from '../../src/demo/fakes/github.ts';
import { createGitRepository, type GitRepository } from '../../src/demo/git-repository.ts';

const appId = '777';
const installationId = 31;
const owner = 'octo-org';
const repo = 'gadgets';
const repositoryId = 5150;

let keys: AppKeyPair;
let fake: FakeGitHub;
let repository: GitRepository;
let token: string;

function makeJwt(
  claims: Record<string, unknown>,
  options: { privateKeyPem?: string; alg?: string } = {},
): string {
  const header = Buffer.from(JSON.stringify({ alg: options.alg ?? 'RS256', typ: 'JWT' }));
  const payload = Buffer.from(JSON.stringify(claims));
  const signingInput = `${header.toString('base64url')}.${payload.toString('base64url')}`;
  const signature = sign(
    'RSA-SHA256',
    Buffer.from(signingInput),
    options.privateKeyPem ?? keys.privateKeyPem,
  );
  return `${signingInput}.${signature.toString('base64url')}`;
}

function validClaims(): Record<string, unknown> {
  const now = Math.floor(Date.now() / 1000);
  return { iat: now - 30, exp: now + 540, iss: Number(appId) };
}

async function requestToken(authorization?: string): Promise<Response> {
  const headers: Record<string, string> = { accept: 'application/vnd.github+json' };
  if (authorization !== undefined) {
    headers.authorization = authorization;
  }
  return fetch(`${fake.url}/app/installations/${installationId}/access_tokens`, {
    method: 'POST',
    headers,
  });
}

async function get(path: string, authorization = `token ${token}`): Promise<Response> {
  return fetch(`${fake.url}${path}`, { headers: { authorization } });
}

beforeAll(async () => {
  keys = generateAppKeyPair();
  fake = await startFakeGitHub({ appId, publicKeyPem: keys.publicKeyPem });
  const added: Record<string, string> = {};
  for (let index = 0; index < 45; index += 1) {
    added[`added-${String(index).padStart(2, '0')}.txt`] = `line ${index}\n`;
  }
  repository = await createGitRepository({
    base: {
      'README.md': '# Gadgets\n',
      'src/main.ts': 'export {};\n',
      'wide.txt': 'x'.repeat(100),
    },
    head: added,
  });
  fake.setInstallation({ id: installationId, account: { login: owner } });
  fake.addRepository({ owner, repo, id: repositoryId, gitDir: repository.dir });
  fake.addPullRequest({
    owner,
    repo,
    number: 3,
    baseSha: repository.baseSha,
    headSha: repository.headSha,
    headRef: 'feature',
    title: 'Add files',
  });
  const response = await requestToken(`Bearer ${makeJwt(validClaims())}`);
  token = ((await response.json()) as { token: string }).token;
});

afterAll(async () => {
  await fake?.close();
  await repository?.cleanup();
});

describe('fake GitHub server', () => {
  it('listens on loopback', () => {
    expect(fake.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
  });

  it('issues a token for a valid JWT', async () => {
    const response = await requestToken(`Bearer ${makeJwt(validClaims())}`);
    const body = (await response.json()) as Record<string, unknown>;
    expect(response.status).toBe(201);
    expect(body.token).toMatch(/^ghs_[A-Za-z0-9]{24}$/);
    expect(body.repository_selection).toBe('all');
    expect(body.permissions).toEqual({
      checks: 'write',
      contents: 'write',
      metadata: 'read',
      pull_requests: 'write',
    });
    const expiresInMs = Date.parse(String(body.expires_at)) - Date.now();
    expect(expiresInMs).toBeGreaterThan(59 * 60 * 1000);
    expect(expiresInMs).toBeLessThanOrEqual(60 * 60 * 1000);
    expect(String(body.expires_at)).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  });

  it('accepts the app id as a string issuer', async () => {
    const response = await requestToken(`Bearer ${makeJwt({ ...validClaims(), iss: appId })}`);
    expect(response.status).toBe(201);
  });

  const rejectedJwts: Array<[string, () => string | undefined, string]> = [
    ['a missing header', () => undefined, 'Requires authentication'],
    ['a token scheme', () => `token ${makeJwt(validClaims())}`, 'could not be decoded'],
    ['garbage', () => 'Bearer not-a-jwt', 'could not be decoded'],
    [
      'another key',
      () => {
        const otherKey = generateAppKeyPair().privateKeyPem;
        return `Bearer ${makeJwt(validClaims(), { privateKeyPem: otherKey })}`;
      },
      'could not be decoded',
    ],
    ['HS256', () => `Bearer ${makeJwt(validClaims(), { alg: 'HS256' })}`, 'could not be decoded'],
    ['another issuer', () => `Bearer ${makeJwt({ ...validClaims(), iss: 778 })}`, 'Issuer'],
    [
      'an expired JWT',
      () => `Bearer ${makeJwt({ ...validClaims(), iat: 1_000_000, exp: 1_000_600 })}`,
      'Expiration time',
    ],
    [
      'a lifetime over ten minutes',
      () => `Bearer ${makeJwt({ ...validClaims(), exp: Math.floor(Date.now() / 1000) + 3600 })}`,
      'too far in the future',
    ],
  ];

  it.each(rejectedJwts)('rejects %s with 401', async (_name, authorization, message) => {
    const issuedBefore = fake.issuedTokens.length;
    const response = await requestToken(authorization());
    const body = (await response.json()) as Record<string, unknown>;
    expect(response.status).toBe(401);
    expect(String(body.message)).toContain(message);
    expect(body.status).toBe('401');
    expect(fake.issuedTokens).toHaveLength(issuedBefore);
  });

  it('returns 404 for an unknown installation', async () => {
    const response = await fetch(`${fake.url}/app/installations/999/access_tokens`, {
      method: 'POST',
      headers: { authorization: `Bearer ${makeJwt(validClaims())}` },
    });
    expect(response.status).toBe(404);
  });

  it('rejects an unknown installation token', async () => {
    const response = await get(`/repos/${owner}/${repo}/contents/README.md`, 'token ghs_unknown');
    expect(response.status).toBe(401);
    expect(await response.json()).toEqual({
      message: 'Bad credentials',
      documentation_url: 'https://docs.github.com/rest',
      status: '401',
    });
  });

  it('rejects the JWT on installation endpoints', async () => {
    const response = await get(
      `/repos/${owner}/${repo}/contents/README.md`,
      `Bearer ${makeJwt(validClaims())}`,
    );
    expect(response.status).toBe(401);
  });

  it('hides repositories of other accounts', async () => {
    fake.addRepository({ owner: 'someone-else', repo, id: 9, gitDir: repository.dir });
    const response = await get(`/repos/someone-else/${repo}/contents/README.md`);
    expect(response.status).toBe(404);
  });

  it('records requests with their headers', async () => {
    await get(`/repos/${owner}/${repo}/contents/README.md?ref=main`);
    const recorded = fake.requests.at(-1);
    expect(recorded?.method).toBe('GET');
    expect(recorded?.path).toBe(`/repos/${owner}/${repo}/contents/README.md`);
    expect(recorded?.query).toEqual({ ref: 'main' });
    expect(recorded?.headers.authorization).toBe(`token ${token}`);
    expect(recorded?.body).toBeUndefined();
  });

  it('answers unknown routes with 404 and records them', async () => {
    const response = await fetch(`${fake.url}/repos/${owner}/${repo}/deployments`, {
      method: 'POST',
      headers: { authorization: `token ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ ref: 'main' }),
    });
    expect(response.status).toBe(404);
    expect(await response.json()).toEqual({
      message: 'Not Found',
      documentation_url: 'https://docs.github.com/rest',
      status: '404',
    });
    const recorded = fake.requests.at(-1);
    expect(recorded?.path).toBe(`/repos/${owner}/${repo}/deployments`);
    expect(recorded?.body).toEqual({ ref: 'main' });
  });

  it('serves routes added later', async () => {
    fake.addRoute({
      method: 'POST',
      pattern: '/repos/:owner/:repo/check-runs',
      auth: 'installation',
      handle: ({ params, request }) => ({
        status: 201,
        body: { id: 1, name: (request.body as { name: string }).name, repo: params.repo },
      }),
    });
    const response = await fetch(`${fake.url}/repos/${owner}/${repo}/check-runs`, {
      method: 'POST',
      headers: { authorization: `token ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'fixwright' }),
    });
    expect(response.status).toBe(201);
    expect(await response.json()).toEqual({ id: 1, name: 'fixwright', repo });
  });

  it('sends GitHub response headers', async () => {
    const response = await get(`/repos/${owner}/${repo}/contents/README.md`);
    expect(response.headers.get('content-type')).toBe('application/json; charset=utf-8');
    expect(response.headers.get('x-github-request-id')).toMatch(/^[0-9A-F:]+$/);
    expect(response.headers.get('x-ratelimit-limit')).toBe('5000');
    expect(Number(response.headers.get('x-ratelimit-remaining'))).toBeLessThan(5000);
    expect(response.headers.get('x-ratelimit-resource')).toBe('core');
  });

  it('uses a queued response once', async () => {
    fake.queueResponse({
      method: 'GET',
      path: /\/contents\/README\.md$/,
      status: 502,
      headers: { 'x-custom': 'yes' },
    });
    const first = await get(`/repos/${owner}/${repo}/contents/README.md`);
    const second = await get(`/repos/${owner}/${repo}/contents/README.md`);
    expect(first.status).toBe(502);
    expect(first.headers.get('x-custom')).toBe('yes');
    expect(((await first.json()) as { message: string }).message).toBe('Server Error');
    expect(second.status).toBe(200);
  });
});

describe('fake contents endpoint', () => {
  it('wraps base64 content every 60 characters', async () => {
    const response = await get(`/repos/${owner}/${repo}/contents/wide.txt`);
    const body = (await response.json()) as Record<string, unknown>;
    const lines = String(body.content).split('\n');
    expect(lines.slice(0, -2).every((line) => line.length === 60)).toBe(true);
    expect(lines.at(-1)).toBe('');
    expect(Buffer.from(String(body.content), 'base64').toString('utf8')).toBe('x'.repeat(100));
    expect(body.encoding).toBe('base64');
    expect(body.size).toBe(100);
  });

  it('returns the fields of a file', async () => {
    const response = await get(`/repos/${owner}/${repo}/contents/src/main.ts?ref=main`);
    const body = (await response.json()) as Record<string, unknown>;
    const base = `${fake.url}/repos/${owner}/${repo}`;
    expect(Object.keys(body)).toEqual([
      'name',
      'path',
      'sha',
      'size',
      'url',
      'html_url',
      'git_url',
      'download_url',
      'type',
      'content',
      'encoding',
      '_links',
    ]);
    expect(body.name).toBe('main.ts');
    expect(body.path).toBe('src/main.ts');
    expect(body.type).toBe('file');
    expect(body.url).toBe(`${base}/contents/src/main.ts?ref=main`);
    expect(body.git_url).toBe(`${base}/git/blobs/${String(body.sha)}`);
    expect(body._links).toEqual({
      self: body.url,
      git: body.git_url,
      html: body.html_url,
    });
  });

  it('lists a directory as an array', async () => {
    const response = await get(`/repos/${owner}/${repo}/contents/`);
    const body = (await response.json()) as Array<Record<string, unknown>>;
    expect(body.map((entry) => [entry.name, entry.type])).toEqual([
      ['README.md', 'file'],
      ['src', 'dir'],
      ['wide.txt', 'file'],
    ]);
    expect(body.find((entry) => entry.name === 'src')?.download_url).toBeNull();
  });

  it('returns 404 for a missing path', async () => {
    const response = await get(`/repos/${owner}/${repo}/contents/nope.txt`);
    expect(response.status).toBe(404);
    expect(((await response.json()) as { message: string }).message).toBe('Not Found');
  });

  it('returns 404 for an unknown ref', async () => {
    const response = await get(`/repos/${owner}/${repo}/contents/README.md?ref=nope`);
    expect(response.status).toBe(404);
    expect(((await response.json()) as { message: string }).message).toBe(
      'No commit found for the ref nope',
    );
  });

  it('serves blobs by sha', async () => {
    const file = (await (await get(`/repos/${owner}/${repo}/contents/README.md`)).json()) as {
      sha: string;
    };
    const response = await get(`/repos/${owner}/${repo}/git/blobs/${file.sha}`);
    const body = (await response.json()) as Record<string, unknown>;
    expect(body.sha).toBe(file.sha);
    expect(body.size).toBe(10);
    expect(body.encoding).toBe('base64');
    expect(body.url).toBe(`${fake.url}/repos/${owner}/${repo}/git/blobs/${file.sha}`);
    expect(Buffer.from(String(body.content), 'base64').toString('utf8')).toBe('# Gadgets\n');
  });

  it('returns 404 for an unknown blob', async () => {
    const response = await get(`/repos/${owner}/${repo}/git/blobs/${'0'.repeat(40)}`);
    expect(response.status).toBe(404);
  });
});

/** Adds pull request `number` with the head of pull request 3, changed by `fields`. */
function addPullRequest(number: number, fields: { headOwner?: string; headRepo?: string } = {}) {
  fake.addPullRequest({
    owner,
    repo,
    number,
    baseSha: repository.baseSha,
    headSha: repository.headSha,
    headRef: 'feature',
    title: `Pull request ${number}`,
    ...fields,
  });
}

async function readPullRequest(number: number): Promise<Record<string, any>> {
  const response = await get(`/repos/${owner}/${repo}/pulls/${number}`);
  expect(response.status).toBe(200);
  return (await response.json()) as Record<string, any>;
}

describe('fake pull request endpoints', () => {
  it('returns the pull request', async () => {
    const response = await get(`/repos/${owner}/${repo}/pulls/3`);
    const body = (await response.json()) as Record<string, any>;
    expect(body.number).toBe(3);
    expect(body.title).toBe('Add files');
    expect(body.state).toBe('open');
    expect(body.head.ref).toBe('feature');
    expect(body.head.sha).toBe(repository.headSha);
    expect(body.head.repo.full_name).toBe(`${owner}/${repo}`);
    expect(body.base.ref).toBe('main');
    expect(body.base.sha).toBe(repository.baseSha);
    expect(body.base.repo.id).toBe(repositoryId);
    expect(body.changed_files).toBe(45);
    expect(body.additions).toBe(45);
    expect(body.commits).toBe(1);
  });

  it('reports an open pull request as unmerged', async () => {
    const response = await get(`/repos/${owner}/${repo}/pulls/3`);
    const body = (await response.json()) as Record<string, any>;
    expect(body.closed_at).toBeNull();
    expect(body.merged_at).toBeNull();
    expect(body.merged).toBe(false);
    expect(body.merged_by).toBeNull();
    expect(body.head.label).toBe(`${owner}:feature`);
    expect(body.head.user.login).toBe(owner);
  });

  it('reports a closed pull request', async () => {
    addPullRequest(5);
    fake.updatePullRequest(
      { owner, repo, number: 5 },
      { state: 'closed', closedAt: '2024-02-03T04:05:06Z' },
    );
    const body = await readPullRequest(5);
    expect(body.state).toBe('closed');
    expect(body.closed_at).toBe('2024-02-03T04:05:06Z');
    expect(body.updated_at).toBe('2024-02-03T04:05:06Z');
    expect(body.merged_at).toBeNull();
    expect(body.merged).toBe(false);
  });

  it('reports a merged pull request', async () => {
    addPullRequest(6);
    const mergedAt = '2024-02-03T04:05:06Z';
    fake.updatePullRequest(
      { owner, repo, number: 6 },
      { state: 'closed', closedAt: mergedAt, mergedAt },
    );
    const body = await readPullRequest(6);
    expect(body.state).toBe('closed');
    expect(body.closed_at).toBe(mergedAt);
    expect(body.merged_at).toBe(mergedAt);
    expect(body.merged).toBe(true);
    expect(body.merged_by.login).toBe(owner);
  });

  it('rejects a merged pull request left open', () => {
    addPullRequest(7);
    expect(() =>
      fake.updatePullRequest({ owner, repo, number: 7 }, { mergedAt: '2024-02-03T04:05:06Z' }),
    ).toThrow(`Pull request ${owner}/${repo}#7 has mergedAt, so its state must be closed.`);
  });

  it('reports a head in a fork', async () => {
    addPullRequest(8, { headOwner: 'forker', headRepo: 'gadgets-fork' });
    const body = await readPullRequest(8);
    expect(body.head.label).toBe('forker:feature');
    expect(body.head.user.login).toBe('forker');
    expect(body.head.repo.full_name).toBe('forker/gadgets-fork');
    expect(body.head.repo.fork).toBe(true);
    expect(body.head.repo.id).not.toBe(repositoryId);
    expect(body.base.repo.full_name).toBe(`${owner}/${repo}`);
  });

  it('reports a deleted head repository as null', async () => {
    addPullRequest(9, { headOwner: 'forker', headRepo: 'gadgets-fork' });
    fake.updatePullRequest({ owner, repo, number: 9 }, { headRepo: null });
    const body = await readPullRequest(9);
    expect(body.head.repo).toBeNull();
    expect(body.head.label).toBe('forker:feature');
    expect(body.head.user.login).toBe('forker');
    expect(body.head.ref).toBe('feature');
    expect(body.head.sha).toBe(repository.headSha);
    expect(body.base.repo.full_name).toBe(`${owner}/${repo}`);
  });

  it('reports a moved head', async () => {
    addPullRequest(10);
    fake.updatePullRequest({ owner, repo, number: 10 }, { headSha: repository.baseSha });
    const body = await readPullRequest(10);
    expect(body.head.sha).toBe(repository.baseSha);
  });

  it('throws when updating an unknown pull request', () => {
    expect(() => fake.updatePullRequest({ owner, repo, number: 99 }, { state: 'closed' })).toThrow(
      `The fake GitHub has no pull request ${owner}/${repo}#99.`,
    );
  });

  it('returns 404 for an unknown pull request', async () => {
    const response = await get(`/repos/${owner}/${repo}/pulls/4`);
    expect(response.status).toBe(404);
  });

  it('pages files with 30 per page by default', async () => {
    const response = await get(`/repos/${owner}/${repo}/pulls/3/files`);
    const body = (await response.json()) as unknown[];
    const next = `${fake.url}/repositories/${repositoryId}/pulls/3/files?page=2`;
    expect(body).toHaveLength(30);
    expect(response.headers.get('link')).toBe(`<${next}>; rel="next", <${next}>; rel="last"`);
  });

  it('builds middle page links like GitHub', async () => {
    const response = await get(`/repos/${owner}/${repo}/pulls/3/files?per_page=10&page=3`);
    const body = (await response.json()) as Array<{ filename: string }>;
    const link = (page: number) =>
      `<${fake.url}/repositories/${repositoryId}/pulls/3/files?per_page=10&page=${page}>`;
    expect(body.map((file) => file.filename)[0]).toBe('added-20.txt');
    expect(response.headers.get('link')).toBe(
      `${link(2)}; rel="prev", ${link(4)}; rel="next", ${link(5)}; rel="last", ` +
        `${link(1)}; rel="first"`,
    );
  });

  it('builds last page links like GitHub', async () => {
    const response = await get(`/repositories/${repositoryId}/pulls/3/files?per_page=10&page=5`);
    const body = (await response.json()) as unknown[];
    const link = (page: number) =>
      `<${fake.url}/repositories/${repositoryId}/pulls/3/files?per_page=10&page=${page}>`;
    expect(body).toHaveLength(5);
    expect(response.headers.get('link')).toBe(`${link(4)}; rel="prev", ${link(1)}; rel="first"`);
  });

  it('caps per_page at 100 and omits the link on one page', async () => {
    const response = await get(`/repos/${owner}/${repo}/pulls/3/files?per_page=500`);
    const body = (await response.json()) as unknown[];
    expect(body).toHaveLength(45);
    expect(response.headers.get('link')).toBeNull();
  });

  it('matches queued responses on repository id paths', async () => {
    fake.queueResponse({
      method: 'GET',
      path: '/repos/:owner/:repo/pulls/:pull_number/files',
      status: 500,
    });
    const response = await get(`/repositories/${repositoryId}/pulls/3/files?page=2`);
    expect(response.status).toBe(500);
  });

  it('returns diff entry fields', async () => {
    const response = await get(`/repos/${owner}/${repo}/pulls/3/files?per_page=1`);
    const [entry] = (await response.json()) as Array<Record<string, unknown>>;
    const encoded = 'added-00.txt';
    const contentsUrl = `${fake.url}/repos/${owner}/${repo}/contents/${encoded}`;
    expect(entry).toEqual({
      sha: expect.stringMatching(/^[0-9a-f]{40}$/),
      filename: encoded,
      status: 'added',
      additions: 1,
      deletions: 0,
      changes: 1,
      blob_url: `${fake.url}/${owner}/${repo}/blob/${repository.headSha}/${encoded}`,
      raw_url: `${fake.url}/${owner}/${repo}/raw/${repository.headSha}/${encoded}`,
      contents_url: `${contentsUrl}?ref=${repository.headSha}`,
      patch: '@@ -0,0 +1 @@\n+line 0',
    });
  });

  it('reports no handler errors', () => {
    expect(fake.handlerErrors).toEqual([]);
  });
});

describe('fake listing endpoints', () => {
  const listed = 'listed';
  const listedId = 5160;

  /** Adds repository `listed` of `owner` with pull requests 1 to `count`, all open. */
  function addListedRepository(count: number) {
    fake.addRepository({ owner, repo: listed, id: listedId, gitDir: repository.dir });
    for (let number = 1; number <= count; number += 1) {
      fake.addPullRequest({
        owner,
        repo: listed,
        number,
        baseSha: repository.baseSha,
        headSha: repository.headSha,
        headRef: 'feature',
        title: `Listed ${number}`,
      });
    }
  }

  it("lists the installation's repositories", async () => {
    addListedRepository(5);
    fake.addRepository({ owner: 'another-org', repo: 'hidden', id: 5170, gitDir: repository.dir });
    const response = await get('/installation/repositories');
    const body = (await response.json()) as Record<string, any>;
    expect(response.status).toBe(200);
    expect(body.total_count).toBe(2);
    expect(body.repository_selection).toBe('all');
    expect(body.repositories.map((item: { full_name: string }) => item.full_name)).toEqual([
      `${owner}/${repo}`,
      `${owner}/${listed}`,
    ]);
    expect(body.repositories[1].id).toBe(listedId);
    expect(body.repositories[1].owner.login).toBe(owner);
    expect(response.headers.get('link')).toBeNull();
  });

  it('pages repositories like GitHub', async () => {
    const response = await get('/installation/repositories?per_page=1');
    const body = (await response.json()) as Record<string, any>;
    const next = `${fake.url}/installation/repositories?per_page=1&page=2`;
    expect(body.total_count).toBe(2);
    expect(body.repositories).toHaveLength(1);
    expect(response.headers.get('link')).toBe(`<${next}>; rel="next", <${next}>; rel="last"`);
  });

  it('rejects the JWT on the repository listing', async () => {
    const response = await get('/installation/repositories', `Bearer ${makeJwt(validClaims())}`);
    expect(response.status).toBe(401);
  });

  it('lists open pull requests newest first', async () => {
    fake.updatePullRequest({ owner, repo: listed, number: 4 }, { state: 'closed' });
    const response = await get(`/repos/${owner}/${listed}/pulls`);
    const body = (await response.json()) as Array<Record<string, any>>;
    expect(response.status).toBe(200);
    expect(body.map((item) => item.number)).toEqual([5, 3, 2, 1]);
    expect(body.every((item) => item.state === 'open')).toBe(true);
    expect(body[0]!.base.repo.id).toBe(listedId);
    expect(body[0]!.base.repo.full_name).toBe(`${owner}/${listed}`);
    expect(body[0]!.head.sha).toBe(repository.headSha);
    // The list has the fields of pull-request-simple, without the merge state and counts.
    expect(body[0]!).not.toHaveProperty('merged');
    expect(body[0]!).not.toHaveProperty('changed_files');
    expect(body[0]!.draft).toBe(false);
  });

  it('filters pull requests by state', async () => {
    const closed = (await (await get(`/repos/${owner}/${listed}/pulls?state=closed`)).json()) as Array<{ number: number }>;
    const all = (await (await get(`/repos/${owner}/${listed}/pulls?state=all`)).json()) as Array<{ number: number }>;
    const invalid = await get(`/repos/${owner}/${listed}/pulls?state=merged`);
    expect(closed.map((item) => item.number)).toEqual([4]);
    expect(all.map((item) => item.number)).toEqual([5, 4, 3, 2, 1]);
    expect(invalid.status).toBe(422);
  });

  it('pages pull requests on repository id links', async () => {
    const response = await get(`/repos/${owner}/${listed}/pulls?per_page=3`);
    const body = (await response.json()) as Array<{ number: number }>;
    const next = `${fake.url}/repositories/${listedId}/pulls?per_page=3&page=2`;
    expect(body.map((item) => item.number)).toEqual([5, 3, 2]);
    expect(response.headers.get('link')).toBe(`<${next}>; rel="next", <${next}>; rel="last"`);
    const second = await get(`/repositories/${listedId}/pulls?per_page=3&page=2`);
    expect(((await second.json()) as Array<{ number: number }>).map((item) => item.number)).toEqual([1]);
  });

  it('hides pull requests of other accounts', async () => {
    const response = await get('/repos/another-org/hidden/pulls');
    expect(response.status).toBe(404);
  });

  it('sorts pull requests as requested', async () => {
    fake.addPullRequest({
      owner,
      repo: listed,
      number: 6,
      baseSha: repository.baseSha,
      headSha: repository.headSha,
      headRef: 'feature',
      title: 'Listed 6',
      createdAt: '2023-12-31T00:00:00Z',
    });
    fake.updatePullRequest({ owner, repo: listed, number: 2 }, { updatedAt: '2024-03-01T00:00:00Z' });
    const numbers = async (query: string) =>
      ((await (await get(`/repos/${owner}/${listed}/pulls?${query}`)).json()) as Array<{ number: number }>).map(
        (item) => item.number,
      );

    // Pull requests of the same time are ordered by number.
    expect(await numbers('sort=created&direction=asc')).toEqual([6, 1, 2, 3, 5]);
    expect(await numbers('sort=created')).toEqual([5, 3, 2, 1, 6]);
    expect(await numbers('sort=updated')).toEqual([6, 1, 3, 5, 2]);
    expect(await numbers('sort=updated&direction=desc')).toEqual([2, 5, 3, 1, 6]);
    const [oldest] = (await (await get(`/repos/${owner}/${listed}/pulls?direction=asc`)).json()) as Array<
      Record<string, any>
    >;
    expect(oldest!.created_at).toBe('2023-12-31T00:00:00Z');
    expect(oldest!.updated_at).toBe('2023-12-31T00:00:00Z');
    expect((await get(`/repos/${owner}/${listed}/pulls?sort=newest`)).status).toBe(422);
    expect((await get(`/repos/${owner}/${listed}/pulls?direction=up`)).status).toBe(422);
  });

  it('marks an archived repository', async () => {
    fake.setRepositoryArchived({ owner, repo: listed }, true);
    const repositories = (await (await get('/installation/repositories')).json()) as Record<string, any>;
    const pullRequest = (await (await get(`/repos/${owner}/${listed}/pulls/1`)).json()) as Record<string, any>;
    fake.setRepositoryArchived({ owner, repo: listed }, false);
    const unarchived = (await (await get('/installation/repositories')).json()) as Record<string, any>;

    expect(repositories.repositories.map((item: { archived: boolean }) => item.archived)).toEqual([false, true]);
    expect(pullRequest.base.repo.archived).toBe(true);
    expect(unarchived.repositories.map((item: { archived: boolean }) => item.archived)).toEqual([false, false]);
  });

  it('removes a repository', async () => {
    fake.removeRepository({ owner, repo: listed });
    const body = (await (await get('/installation/repositories')).json()) as Record<string, any>;

    expect(body.total_count).toBe(1);
    expect(body.repositories.map((item: { full_name: string }) => item.full_name)).toEqual([`${owner}/${repo}`]);
    expect((await get(`/repos/${owner}/${listed}/pulls`)).status).toBe(404);
    expect(() => fake.removeRepository({ owner, repo: listed })).toThrow(
      `The fake GitHub has no repository ${owner}/${listed}.`,
    );
  });

  it('reports no handler errors', () => {
    expect(fake.handlerErrors).toEqual([]);
  });
});
