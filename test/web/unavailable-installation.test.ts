import { eq } from 'drizzle-orm';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { patchFiles, patchRequests } from '../../src/db/schema/index.ts';
import { previewQueue } from '../../src/jobs/preview.ts';
import type { TestContext } from '../helpers/context.ts';
import { insertReadyPatchRequest } from '../helpers/github-context.ts';
import {
  createRunWebTestContext,
  type RunWebTestContext,
  type SignedInUser,
} from '../helpers/web.ts';
import { countJobs, examplePayload, postSignedWebhook } from '../helpers/webhooks.ts';

const secret = 'unavailable-installation-web';

let web: RunWebTestContext;
let context: TestContext;
let app: RunWebTestContext['app'];
let user: SignedInUser;
let apiToken: string;
let setup: RunWebTestContext['setup'];
let delivery = 0;

/** Account login of the run's installation: createRunWebTestContext names it after the repository owner. */
function accountOf(): string {
  return setup.run.repository.split('/')[0]!;
}

function suspendedMessage(installationId: number): string {
  return (
    `GitHub App installation ${installationId} on ${accountOf()} is suspended. An owner of ` +
    `${accountOf()} must unsuspend it in the GitHub App settings on GitHub before Fixwright can ` +
    'work there again.'
  );
}

function uninstalledMessage(installationId: number): string {
  return (
    `GitHub App installation ${installationId} on ${accountOf()} no longer exists because the ` +
    `app was uninstalled. Install the app on ${accountOf()} again on GitHub before Fixwright ` +
    'can work there again.'
  );
}

/** Delivers GitHub's example `installation` event with `action` for the run's installation. */
async function deliverInstallation(action: 'suspend' | 'unsuspend' | 'deleted') {
  const response = await postSignedWebhook(app, {
    secret,
    event: 'installation',
    deliveryId: `unavailable-web-${delivery++}`,
    payload: examplePayload('installation', action, setup.installationId),
  });
  expect(response.status).toBe(202);
}

beforeEach(async () => {
  web = await createRunWebTestContext({ webhookSecret: secret, login: 'unavailable-owner' });
  ({ context, app, user, apiToken, setup } = web);
});

afterEach(async () => {
  await context?.close();
});

describe('patch request API', () => {
  it('rejects a suspended installation', async () => {
    await deliverInstallation('suspend');

    const response = await web.postPatchRequest();

    expect(response.status).toBe(409);
    const body = (await response.json()) as { error: Record<string, unknown> };
    expect(body.error.code).toBe('conflict');
    expect(body.error.message).toBe(suspendedMessage(setup.installationId));
    expect(body.error.installationId).toBe(setup.installationId);
    expect(body.error.account).toBe(accountOf());
    expect(body.error.reason).toBe('suspended');
    expect(body.error.requestId).toEqual(expect.any(String));
    expect(await web.countPatchRequests()).toBe(0);
    expect(await countJobs(context, previewQueue)).toBe(0);
  });

  it('rejects a deleted installation', async () => {
    await deliverInstallation('deleted');

    const response = await web.postPatchRequest();

    expect(response.status).toBe(409);
    const body = (await response.json()) as { error: Record<string, unknown> };
    expect(body.error.code).toBe('conflict');
    expect(body.error.message).toBe(uninstalledMessage(setup.installationId));
    expect(body.error.account).toBe(accountOf());
    expect(body.error.reason).toBe('uninstalled');
    expect(await web.countPatchRequests()).toBe(0);
    expect(await countJobs(context, previewQueue)).toBe(0);
  });

  it('accepts work again after unsuspend', async () => {
    await deliverInstallation('suspend');
    expect((await web.postPatchRequest()).status).toBe(409);

    await deliverInstallation('unsuspend');
    const response = await web.postPatchRequest();

    expect(response.status).toBe(202);
    const { id } = (await response.json()) as { id: string };
    expect(await web.countPatchRequests()).toBe(1);
    expect(await countJobs(context, previewQueue)).toBe(1);
    const [stored] = await context.db.select().from(patchRequests).where(eq(patchRequests.id, id));
    expect(stored!.status).toBe('queued');
    const job = await context.boss.getJobById(previewQueue, stored!.previewJobId!);
    expect(job?.state).toBe('created');
  });
});

describe('home page', () => {
  it('lists no deleted installation', async () => {
    await deliverInstallation('deleted');
    const response = await app.request('/', { headers: { cookie: user.cookie } });
    const html = await response.text();

    expect(response.status).toBe(200);
    expect(html).not.toContain(`installation ${setup.installationId}`);
    // The user had an installation, so the page must not say there is none yet.
    expect(html).not.toContain('No installations yet');
    expect(html).toContain('Installations that were uninstalled are not listed');
    expect(html).toContain(`/runs/${setup.run.id}`);
  });
});

describe('run listings', () => {
  /** GETs an API route with the user's token and returns the parsed body. */
  async function getJson(path: string): Promise<any> {
    const response = await app.request(path, { headers: { authorization: `Bearer ${apiToken}` } });
    expect(response.status).toBe(200);
    return response.json();
  }

  /** Returns the home page's table row of the run. */
  async function homeRunRow(): Promise<string> {
    const html = await (await app.request('/', { headers: { cookie: user.cookie } })).text();
    const rows = html.split('<tr>').filter((row) => row.includes(`/runs/${setup.run.id}`));
    expect(rows).toHaveLength(1);
    return rows[0]!;
  }

  it('reports an active installation', async () => {
    const run = await getJson(`/api/runs/${setup.run.id}`);
    const { runs } = await getJson('/api/runs');

    expect(run.installation).toEqual({
      id: setup.installationId,
      account: accountOf(),
      state: 'active',
      suspendedAt: null,
      uninstalledAt: null,
    });
    expect(runs[0].id).toBe(setup.run.id);
    expect(runs[0].installation).toEqual(run.installation);
    const row = await homeRunRow();
    expect(row).not.toContain('status-suspended');
    expect(row).not.toContain('status-uninstalled');
  });

  it('reports a suspended installation', async () => {
    await deliverInstallation('suspend');

    const run = await getJson(`/api/runs/${setup.run.id}`);
    const { runs } = await getJson('/api/runs');

    expect(run.installation.id).toBe(setup.installationId);
    expect(run.installation.account).toBe(accountOf());
    expect(run.installation.state).toBe('suspended');
    expect(Date.parse(run.installation.suspendedAt)).not.toBeNaN();
    expect(run.installation.uninstalledAt).toBeNull();
    // The fields that were there before are still there.
    expect(run.status).toBe('completed');
    expect(run.findings).toHaveLength(2);
    expect(runs[0].installation).toEqual(run.installation);
    const row = await homeRunRow();
    expect(row).toContain('<span class="badge status-suspended"');
    expect(row).toContain('installation suspended');
  });

  it('reports an uninstalled app', async () => {
    await deliverInstallation('suspend');
    await deliverInstallation('deleted');

    const run = await getJson(`/api/runs/${setup.run.id}`);
    const { runs } = await getJson(`/api/runs?repository=${setup.run.repository}`);

    // An uninstall outranks the suspension that came before it, which keeps its mark.
    expect(run.installation.state).toBe('uninstalled');
    expect(Date.parse(run.installation.uninstalledAt)).not.toBeNaN();
    expect(Date.parse(run.installation.suspendedAt)).not.toBeNaN();
    expect(runs).toHaveLength(1);
    expect(runs[0].installation.state).toBe('uninstalled');
    const row = await homeRunRow();
    expect(row).toContain('<span class="badge status-uninstalled"');
    expect(row).toContain('app uninstalled');
    expect(row).not.toContain('installation suspended');
  });

  it('reports the installation of a preview', async () => {
    const request = await insertReadyPatchRequest(context, {
      runId: setup.run.id,
      userId: user.userId,
      files: [{ path: 'src/a.ts', originalText: 'a\n', proposedText: 'b\n' }],
    });
    const before = await getJson(`/api/patch-requests/${request.id}`);
    await deliverInstallation('suspend');

    const after = await getJson(`/api/patch-requests/${request.id}`);

    expect(before.installation.state).toBe('active');
    expect(before.installation.account).toBe(accountOf());
    expect(after.installation.id).toBe(setup.installationId);
    expect(after.installation.state).toBe('suspended');
    expect(after.status).toBe('ready');
    expect(after.files[0].path).toBe('src/a.ts');
  });
});

describe('Preview fix form', () => {
  it('shows the message in the htmx target', async () => {
    await deliverInstallation('suspend');
    const findingIds = setup.findings.map((finding) => finding.id);

    const response = await web.postForm(`/runs/${setup.run.id}/patch-requests`, { findingIds }, true);

    expect(response.status).toBe(409);
    const html = await response.text();
    expect(html).toMatch(/^<div class="error" role="alert">/);
    expect(html).toContain('<strong>Error 409: </strong>');
    expect(html).toContain(suspendedMessage(setup.installationId));
    expect(await web.countPatchRequests()).toBe(0);
    expect(await countJobs(context, previewQueue)).toBe(0);
  });

  it('shows the message on the run page without htmx', async () => {
    await deliverInstallation('deleted');
    const findingIds = setup.findings.map((finding) => finding.id);

    const response = await web.postForm(`/runs/${setup.run.id}/patch-requests`, { findingIds }, false);

    expect(response.status).toBe(409);
    const html = await response.text();
    expect(html).not.toContain('Something went wrong');
    expect(html).toContain('<p class="notice installation-uninstalled">');
    expect(html).toContain(
      '<div id="preview-progress" aria-live="polite"><p class="error" role="alert">' +
        `${uninstalledMessage(setup.installationId)}</p></div>`,
    );
    expect(await web.countPatchRequests()).toBe(0);
  });
});

describe('regenerate file', () => {
  it('rejects a suspended installation', async () => {
    const request = await insertReadyPatchRequest(context, {
      runId: setup.run.id,
      userId: user.userId,
      files: [{ path: 'src/a.ts', originalText: 'a\n', proposedText: 'b\n' }],
    });
    const [file] = await context.db
      .select()
      .from(patchFiles)
      .where(eq(patchFiles.patchRequestId, request.id));
    await deliverInstallation('suspend');

    const path = `/patch-requests/${request.id}/files/${file!.id}/regenerate`;
    const response = await web.postForm(path, {}, true);

    expect(response.status).toBe(409);
    expect(await response.text()).toContain(suspendedMessage(setup.installationId));
    const [storedFile] = await context.db
      .select()
      .from(patchFiles)
      .where(eq(patchFiles.id, file!.id));
    expect(storedFile!.status).toBe('ready');
    expect(storedFile!.generation).toBe(file!.generation);
    expect(storedFile!.proposedText).toBe('b\n');
    const [storedRequest] = await context.db
      .select()
      .from(patchRequests)
      .where(eq(patchRequests.id, request.id));
    expect(storedRequest!.status).toBe('ready');
    expect(storedRequest!.previewJobId).toBeNull();
    expect(await countJobs(context, previewQueue)).toBe(0);
  });
});

describe('apply', () => {
  it('rejects a suspended installation before claiming', async () => {
    const request = await insertReadyPatchRequest(context, {
      runId: setup.run.id,
      userId: user.userId,
      files: [{ path: 'src/a.ts', originalText: 'a\n', proposedText: 'b\n' }],
    });
    await deliverInstallation('suspend');

    // The context has no GitHub App, so a check after requireGitHubApp would return 503.
    const response = await app.request(`/api/patch-requests/${request.id}/apply`, {
      method: 'POST',
      headers: { authorization: `Bearer ${apiToken}` },
    });

    expect(response.status).toBe(409);
    const body = (await response.json()) as { error: Record<string, unknown> };
    expect(body.error.code).toBe('conflict');
    expect(body.error.message).toBe(suspendedMessage(setup.installationId));
    expect(body.error.installationId).toBe(setup.installationId);
    expect(body.error.account).toBe(accountOf());
    expect(body.error.reason).toBe('suspended');
    const [stored] = await context.db
      .select()
      .from(patchRequests)
      .where(eq(patchRequests.id, request.id));
    expect(stored!.applyStartedAt).toBeNull();
    expect(stored!.appliedAt).toBeNull();
  });
});

describe('dashboard', () => {
  function suspendedNotice(): string {
    return (
      `The GitHub App installation on ${accountOf()} is suspended. An owner of ${accountOf()} must ` +
      'unsuspend it in the GitHub App settings on GitHub to request or apply fixes.'
    );
  }

  function uninstalledNotice(): string {
    return (
      `The GitHub App was uninstalled from ${accountOf()}. Install it on ${accountOf()} again on ` +
      'GitHub to request or apply fixes.'
    );
  }

  function getPage(path: string, htmx = false) {
    const headers: Record<string, string> = { cookie: user.cookie };
    if (htmx) headers['hx-request'] = 'true';
    return app.request(path, { headers });
  }

  async function readyPreview() {
    return insertReadyPatchRequest(context, {
      runId: setup.run.id,
      userId: user.userId,
      files: [{ path: 'src/a.ts', originalText: 'a\n', proposedText: 'b\n' }],
      withFindings: true,
    });
  }

  const cases = [
    { action: 'suspend', label: 'installation suspended', badgeClass: 'status-suspended', notice: suspendedNotice },
    { action: 'deleted', label: 'app uninstalled', badgeClass: 'status-uninstalled', notice: uninstalledNotice },
  ] as const;

  for (const { action, label, badgeClass, notice } of cases) {
    it(`hides Preview fix after ${action}`, async () => {
      await deliverInstallation(action);

      const response = await getPage(`/runs/${setup.run.id}`);
      const html = await response.text();

      expect(response.status).toBe(200);
      expect(html).toContain(`<span class="badge ${badgeClass}"`);
      expect(html).toContain(label);
      expect(html).toContain(notice());
      expect(html).not.toContain('Preview fix</button>');
    });

    it(`disables Apply and Regenerate after ${action}`, async () => {
      const request = await readyPreview();
      await deliverInstallation(action);

      const response = await getPage(`/patch-requests/${request.id}`);
      const html = await response.text();

      expect(response.status).toBe(200);
      expect(html).toContain(`<span class="badge ${badgeClass}"`);
      expect(html).toContain(notice());
      expect(html).not.toContain('Regenerate this file');
      expect(html).toMatch(/<button type="submit" class="primary" disabled="">\s*Apply/);
    });

    it(`hides Regenerate in the files fragment after ${action}`, async () => {
      const request = await readyPreview();
      await deliverInstallation(action);

      const response = await getPage(`/patch-requests/${request.id}/files`, true);
      const html = await response.text();

      expect(response.status).toBe(200);
      expect(html).toContain('src/a.ts');
      expect(html).not.toContain('Regenerate this file');
    });
  }

  it('shows the fix buttons while active', async () => {
    const request = await readyPreview();

    const runHtml = await (await getPage(`/runs/${setup.run.id}`)).text();
    const previewHtml = await (await getPage(`/patch-requests/${request.id}`)).text();

    expect(runHtml).toContain('Preview fix</button>');
    expect(runHtml).not.toContain(suspendedNotice());
    expect(runHtml).not.toContain(uninstalledNotice());
    expect(previewHtml).toContain('Regenerate this file</button>');
    expect(previewHtml).toMatch(/<button type="submit" class="primary">\s*Apply/);
    expect(previewHtml).not.toContain('status-suspended');
    expect(previewHtml).not.toContain('status-uninstalled');
  });

  it('shows the fix buttons again after unsuspend', async () => {
    await deliverInstallation('suspend');
    await deliverInstallation('unsuspend');

    const html = await (await getPage(`/runs/${setup.run.id}`)).text();

    expect(html).toContain('Preview fix</button>');
    expect(html).not.toContain(suspendedNotice());
    expect(html).not.toContain('status-suspended');
  });
});
