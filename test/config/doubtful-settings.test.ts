import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeDoubtfulSettings } from '../../src/config/doubtful-settings.ts';
import { loadConfig } from '../../src/config/env.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { startServiceProcess } from '../helpers/service.ts';

const shortSecret =
  'WEBHOOK_SECRET has 10 characters, fewer than 16: whoever guesses it can post webhooks that ' +
  "Fixwright takes for GitHub's. Set a long random string, such as the output of \"openssl " +
  'rand -hex 32", on the GitHub App and in WEBHOOK_SECRET.';

const unsetAdminLogins =
  'ADMIN_LOGINS is unset while dashboard sign-in is configured (GITHUB_CLIENT_ID and ' +
  'GITHUB_CLIENT_SECRET), so the first GitHub account to sign in while no admin exists ' +
  'becomes admin, whoever it is. Set ADMIN_LOGINS to the GitHub logins of the admins, ' +
  'separated by commas, and restart.';

const signIn = { GITHUB_CLIENT_ID: 'Iv1.0123456789abcdef', GITHUB_CLIENT_SECRET: 'client-secret-value' };

describe('describeDoubtfulSettings', () => {
  it('accepts the defaults and a long secret', () => {
    const config = loadConfig({ WEBHOOK_SECRET: 'a'.repeat(16) });
    expect(describeDoubtfulSettings(config)).toEqual([]);
  });

  it('warns about a short WEBHOOK_SECRET', () => {
    const config = loadConfig({ WEBHOOK_SECRET: 'dev-secret' });
    expect(describeDoubtfulSettings(config)).toEqual([shortSecret]);
  });

  it('counts the secret in characters', () => {
    // 15 characters of 2 UTF-16 code units each.
    const config = loadConfig({ WEBHOOK_SECRET: '😀'.repeat(15) });
    expect(describeDoubtfulSettings(config)[0]).toMatch(/^WEBHOOK_SECRET has 15 characters, fewer than 16:/);
  });

  it('warns about a GitHub request time limit that outlasts a job', () => {
    const within = loadConfig({ WEBHOOK_SECRET: 'a'.repeat(16), GITHUB_REQUEST_TOTAL_TIMEOUT_SECONDS: '71' });
    expect(describeDoubtfulSettings(within)).toEqual([]);
    const beyond = loadConfig({ WEBHOOK_SECRET: 'a'.repeat(16), GITHUB_REQUEST_TOTAL_TIMEOUT_SECONDS: '72' });
    expect(describeDoubtfulSettings(beyond, { http: false })).toEqual([
      'GITHUB_REQUEST_TOTAL_TIMEOUT_SECONDS is 72, so one GitHub call with its 3 retries can ' +
        'outlast the 5-minute time limit of the shortest jobs, and pg-boss then ends such a job ' +
        'as expired and runs it again. Set at most 71 unless GitHub\'s responses need longer.',
    ]);
  });

  it('leaves WEBHOOK_SECRET to processes with HTTP', () => {
    const config = loadConfig({ WEBHOOK_SECRET: 'dev-secret' });
    expect(describeDoubtfulSettings(config, { http: false })).toEqual([]);
  });

  it('warns about sign-in without ADMIN_LOGINS', () => {
    const config = loadConfig({ ...signIn, WEBHOOK_SECRET: 'a'.repeat(16) });

    const lines = describeDoubtfulSettings(config);

    expect(lines).toEqual([unsetAdminLogins]);
    expect(lines.join('\n')).not.toContain(signIn.GITHUB_CLIENT_SECRET);
  });

  it('accepts sign-in with ADMIN_LOGINS', () => {
    const config = loadConfig({ ...signIn, ADMIN_LOGINS: 'octocat', WEBHOOK_SECRET: 'a'.repeat(16) });
    expect(describeDoubtfulSettings(config)).toEqual([]);
  });

  it('skips ADMIN_LOGINS without sign-in', () => {
    const clientIdOnly = loadConfig({ GITHUB_CLIENT_ID: signIn.GITHUB_CLIENT_ID });
    const clientSecretOnly = loadConfig({ GITHUB_CLIENT_SECRET: signIn.GITHUB_CLIENT_SECRET });
    expect(describeDoubtfulSettings(clientIdOnly)).toEqual([]);
    expect(describeDoubtfulSettings(clientSecretOnly)).toEqual([]);
  });

  it('leaves ADMIN_LOGINS to processes with HTTP', () => {
    const config = loadConfig(signIn);
    expect(describeDoubtfulSettings(config, { http: false })).toEqual([]);
  });

  it('warns when free gets more tokens than pro', () => {
    const config = loadConfig({ PLAN_FREE_TOKENS: '200000' });
    expect(describeDoubtfulSettings(config)).toEqual([
      'PLAN_FREE_TOKENS (200000 tokens) is more than PLAN_PRO_TOKENS (100000 tokens), so a user ' +
        'who moves up to the pro plan gets fewer tokens than on the free plan. Check the two values.',
    ]);
  });

  it('counts -1 as unlimited', () => {
    const unlimitedFree = loadConfig({ PLAN_FREE_TOKENS: '-1' });
    const limitedEnterprise = loadConfig({ PLAN_ENTERPRISE_TOKENS: '50000' });
    const allUnlimited = loadConfig({ PLAN_FREE_TOKENS: '-1', PLAN_PRO_TOKENS: '-1' });

    expect(describeDoubtfulSettings(unlimitedFree)).toEqual([
      'PLAN_FREE_TOKENS (unlimited, -1) is more than PLAN_PRO_TOKENS (100000 tokens), so a user ' +
        'who moves up to the pro plan gets fewer tokens than on the free plan. Check the two values.',
    ]);
    expect(describeDoubtfulSettings(limitedEnterprise)).toEqual([
      'PLAN_PRO_TOKENS (100000 tokens) is more than PLAN_ENTERPRISE_TOKENS (50000 tokens), so a ' +
        'user who moves up to the enterprise plan gets fewer tokens than on the pro plan. Check ' +
        'the two values.',
    ]);
    expect(describeDoubtfulSettings(allUnlimited)).toEqual([]);
  });

  it('accepts equal limits', () => {
    const config = loadConfig({ PLAN_FREE_TOKENS: '100000' });
    expect(describeDoubtfulSettings(config)).toEqual([]);
  });
});

describe('doubtful settings at start', () => {
  let database: TestDatabase;

  beforeAll(async () => {
    database = await createTestDatabase();
  });

  afterAll(async () => {
    await database?.close();
  });

  it('logs each warning once without stopping', async () => {
    const service = await startServiceProcess({
      DATABASE_URL: database.url,
      WEBHOOK_SECRET: 'dev-secret',
      PLAN_FREE_TOKENS: '200000',
      ...signIn,
    });
    try {
      expect((await fetch(`${service.url}/healthz`)).status).toBe(200);
      const warnings = service
        .output()
        .split('\n')
        .filter((line) => line.includes('"event":"config.doubtful"'))
        .map((line) => JSON.parse(line) as { level: number; msg: string });
      expect(warnings.map((line) => line.level)).toEqual([40, 40, 40]);
      expect(warnings[0]!.msg).toBe(shortSecret);
      expect(warnings[1]!.msg).toBe(unsetAdminLogins);
      expect(warnings[2]!.msg).toMatch(/^PLAN_FREE_TOKENS \(200000 tokens\) is more than PLAN_PRO_TOKENS/);
      expect(service.output()).not.toContain('dev-secret');
      expect(service.output()).not.toContain(signIn.GITHUB_CLIENT_SECRET);
    } finally {
      await service.stop();
    }
    expect(service.process.exitCode).toBe(0);
  }, 60_000);
});
